"""key-value-store: the reference solution of this KubeVibe-Bench task.

Develop an in-memory key-value store. PUT /keys/<key> with JSON {"value": <any JSON value>} stores it and
answers 200 {"key": <key>, "value": <value>}; a body without "value" answers 400. GET /keys/<key> answers 200
{"key", "value"} or 404. DELETE /keys/<key> answers 200 {"deleted": <key>} or 404. GET /keys answers 200
{"keys": [<stored keys, sorted>]}. The service listens on port 5000 and answers GET /health with 200
{"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


STORE = {}


@app.route("/keys", methods=["GET"])
def keys():
    return jsonify(keys=sorted(STORE))


@app.route("/keys/<key>", methods=["GET", "PUT", "DELETE"])
def item(key):
    if request.method == "PUT":
        data = request.get_json(silent=True)
        if not isinstance(data, dict) or "value" not in data:
            return jsonify(error="value is required"), 400
        STORE[key] = data["value"]
        return jsonify(key=key, value=data["value"])
    if key not in STORE:
        return jsonify(error="not found"), 404
    if request.method == "DELETE":
        del STORE[key]
        return jsonify(deleted=key)
    return jsonify(key=key, value=STORE[key])


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
