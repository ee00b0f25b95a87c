"""library-loans: the reference solution of this KubeVibe-Bench task.

Develop a library lending service kept in memory. POST /books with JSON {"title", "author"} answers 201 {"id":
<1, 2, ...>, "title", "author", "available": true}; missing fields answer 400. POST /books/<id>/borrow answers
200 with the book (available false), or 409 if it is already borrowed. POST /books/<id>/return answers 200
(available true), or 409 if it was not borrowed. GET /books?author=<name> answers 200 {"books": [<books by
that author, by id>]} (all books without the parameter). Unknown books answer 404. The service listens on port
5000 and answers GET /health with 200 {"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


BOOKS = {}


@app.route("/books", methods=["POST"])
def add_book():
    data = request.get_json(silent=True) or {}
    title, author = data.get("title"), data.get("author")
    if not (isinstance(title, str) and title and isinstance(author, str) and author):
        return jsonify(error="title and author are required"), 400
    book = {"id": len(BOOKS) + 1, "title": title, "author": author, "available": True}
    BOOKS[book["id"]] = book
    return jsonify(book), 201


@app.route("/books", methods=["GET"])
def list_books():
    author = request.args.get("author")
    books = [BOOKS[k] for k in sorted(BOOKS) if author is None or BOOKS[k]["author"] == author]
    return jsonify(books=books)


@app.route("/books/<int:book_id>/<action>", methods=["POST"])
def lend(book_id, action):
    book = BOOKS.get(book_id)
    if book is None or action not in ("borrow", "return"):
        return jsonify(error="not found"), 404
    wanted = action == "return"  # borrowing needs an available book, returning a borrowed one
    if book["available"] == wanted:
        return jsonify(error="the book is " + ("already available" if wanted else "already borrowed")), 409
    book["available"] = wanted
    return jsonify(book)


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
