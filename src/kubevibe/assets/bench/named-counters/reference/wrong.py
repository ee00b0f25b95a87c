"""named-counters: a deliberately WRONG variant of the reference of this KubeVibe-Bench task.

Develop a named counters service kept in memory. POST /counters/<name>/increment with an optional JSON {"by":
<positive integer, default 1>} adds to the counter (created at 0) and answers 200 {"name", "value"}; "by" that
is not a positive integer answers 400. GET /counters/<name> answers 200 {"name", "value"} or 404 for a counter
never incremented. POST /counters/<name>/reset sets it to 0 and answers 200 {"name", "value": 0}, or 404. The
service listens on port 5000 and answers GET /health with 200 {"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


COUNTERS = {}


@app.route("/counters/<name>/increment", methods=["POST"])
def increment(name):
    data = request.get_json(silent=True) or {}
    by = data.get("by", 1)
    if not isinstance(by, int) or isinstance(by, bool) or by < 1:
        return jsonify(error="by must be a positive integer"), 400
    COUNTERS[name] = COUNTERS.get(name, 0) + 1
    return jsonify(name=name, value=COUNTERS[name])


@app.route("/counters/<name>", methods=["GET"])
def get_counter(name):
    if name not in COUNTERS:
        return jsonify(error="not found"), 404
    return jsonify(name=name, value=COUNTERS[name])


@app.route("/counters/<name>/reset", methods=["POST"])
def reset(name):
    if name not in COUNTERS:
        return jsonify(error="not found"), 404
    COUNTERS[name] = 0
    return jsonify(name=name, value=0)


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
