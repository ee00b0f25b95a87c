"""kv-store: a key-value store kept in memory, over HTTP.

PUT /kv/color {"value": "blue"} -> {"key": "color", "value": "blue"}; GET /kv/color -> {"key": "color", "value": "blue"}
"""

import threading

from flask import Flask, jsonify, request

app = Flask(__name__)

STORE = {}  # key -> any JSON value; in memory, lost on restart
LOCK = threading.Lock()


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


@app.route("/kv", methods=["GET"])
def list_keys():
    with LOCK:
        return jsonify(keys=sorted(STORE))


@app.route("/kv/<key>", methods=["PUT"])
def put_value(key):
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or "value" not in data:
        return jsonify(error='send {"value": ...}'), 400
    with LOCK:
        STORE[key] = data["value"]
    return jsonify(key=key, value=data["value"])


@app.route("/kv/<key>", methods=["GET"])
def get_value(key):
    with LOCK:
        if key not in STORE:
            return jsonify(error=f"key {key} not found"), 404
        return jsonify(key=key, value=STORE[key])


@app.route("/kv/<key>", methods=["DELETE"])
def delete_value(key):
    with LOCK:
        if key not in STORE:
            return jsonify(error=f"key {key} not found"), 404
        del STORE[key]
    return jsonify(deleted=key)


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
