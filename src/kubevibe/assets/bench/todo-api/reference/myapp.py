"""todo-api: the reference solution of this KubeVibe-Bench task.

Develop a todo list API that keeps tasks in memory. POST /todos with JSON {"title": "<text>"} creates a task
and answers 201 {"id": <1, 2, ... in creation order>, "title": <title>, "done": false}; a missing or empty
title answers 400. GET /todos answers 200 {"todos": [<tasks in id order>]}. GET /todos/<id> answers the task
or 404. PUT /todos/<id> with JSON {"title"?, "done"?} changes it and answers the task, or 404. DELETE
/todos/<id> answers 200 {"deleted": <id>} or 404. The service listens on port 5000 and answers GET /health
with 200 {"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


TODOS = {}
NEXT = [1]


@app.route("/todos", methods=["POST"])
def create():
    title = (request.get_json(silent=True) or {}).get("title")
    if not isinstance(title, str) or not title.strip():
        return jsonify(error="title is required"), 400
    todo = {"id": NEXT[0], "title": title, "done": False}
    TODOS[NEXT[0]] = todo
    NEXT[0] += 1
    return jsonify(todo), 201


@app.route("/todos", methods=["GET"])
def list_todos():
    return jsonify(todos=[TODOS[k] for k in sorted(TODOS)])


@app.route("/todos/<int:todo_id>", methods=["GET", "PUT", "DELETE"])
def one(todo_id):
    todo = TODOS.get(todo_id)
    if todo is None:
        return jsonify(error="not found"), 404
    if request.method == "DELETE":
        del TODOS[todo_id]
        return jsonify(deleted=todo_id)
    if request.method == "PUT":
        data = request.get_json(silent=True) or {}
        if isinstance(data.get("title"), str) and data["title"].strip():
            todo["title"] = data["title"]
        if isinstance(data.get("done"), bool):
            todo["done"] = data["done"]
    return jsonify(todo)


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
