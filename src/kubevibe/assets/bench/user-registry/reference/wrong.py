"""user-registry: a deliberately WRONG variant of the reference of this KubeVibe-Bench task.

Develop a user registry kept in memory. POST /users with JSON {"username": "<3-20 lower-case letters or
digits>", "email": "<text containing @>"} answers 201 {"username", "email"}; an invalid field answers 400 and
a username already taken answers 409. GET /users/<username> answers the user or 404. DELETE /users/<username>
answers 200 {"deleted": <username>} or 404, and frees the name. GET /users answers 200 {"users": [<usernames,
sorted>]}. The service listens on port 5000 and answers GET /health with 200 {"status": "ok"}.
"""

import re
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


USERS = {}
NAME = re.compile(r"[a-z0-9]{3,20}")


@app.route("/users", methods=["POST"])
def register():
    data = request.get_json(silent=True) or {}
    username, email = data.get("username"), data.get("email")
    if not (isinstance(username, str) and NAME.fullmatch(username) and isinstance(email, str) and "@" in email):
        return jsonify(error="invalid username or email"), 400
    USERS[username] = {"username": username, "email": email}
    return jsonify(USERS[username]), 201


@app.route("/users", methods=["GET"])
def list_users():
    return jsonify(users=sorted(USERS))


@app.route("/users/<username>", methods=["GET", "DELETE"])
def user(username):
    if username not in USERS:
        return jsonify(error="no such user"), 404
    if request.method == "DELETE":
        del USERS[username]
        return jsonify(deleted=username)
    return jsonify(USERS[username])


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
