"""todo: a to-do list kept in memory, with create, read, update and delete.

POST /todos {"title": "buy milk"} -> 201 {"id": 1, "title": "buy milk", "done": false}
"""

import threading

from flask import Flask, jsonify, request

app = Flask(__name__)

TODOS = {}  # id -> {"id": int, "title": str, "done": bool}; in memory, lost on restart
LOCK = threading.Lock()
NEXT_ID = [1]


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


@app.route("/todos", methods=["GET"])
def list_todos():
    with LOCK:
        return jsonify(todos=[TODOS[key] for key in sorted(TODOS)])


@app.route("/todos", methods=["POST"])
def create_todo():
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("title"), str) or not data["title"].strip():
        return jsonify(error="title is required"), 400
    with LOCK:
        todo = {"id": NEXT_ID[0], "title": data["title"].strip(), "done": bool(data.get("done", False))}
        TODOS[todo["id"]] = todo
        NEXT_ID[0] += 1
    return jsonify(todo), 201


@app.route("/todos/<int:todo_id>", methods=["GET"])
def get_todo(todo_id):
    with LOCK:
        todo = TODOS.get(todo_id)
    if todo is None:
        return jsonify(error=f"todo {todo_id} not found"), 404
    return jsonify(todo)


@app.route("/todos/<int:todo_id>", methods=["PUT"])
def update_todo(todo_id):
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return jsonify(error="a JSON object is required"), 400
    with LOCK:
        todo = TODOS.get(todo_id)
        if todo is None:
            return jsonify(error=f"todo {todo_id} not found"), 404
        if isinstance(data.get("title"), str) and data["title"].strip():
            todo["title"] = data["title"].strip()
        if "done" in data:
            todo["done"] = bool(data["done"])
        return jsonify(todo)


@app.route("/todos/<int:todo_id>", methods=["DELETE"])
def delete_todo(todo_id):
    with LOCK:
        todo = TODOS.pop(todo_id, None)
    if todo is None:
        return jsonify(error=f"todo {todo_id} not found"), 404
    return jsonify(deleted=True, id=todo_id)


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
