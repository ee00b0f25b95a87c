"""statistics: the reference solution of this KubeVibe-Bench task.

Develop a statistics microservice. POST /stats with JSON {"numbers": [<numbers>]} answers 200 {"count",
"mean", "median", "min", "max"} of the list (mean and median as floats); an empty list or anything but a list
of numbers answers 400. The service listens on port 5000 and answers GET /health with 200 {"status": "ok"}.
"""

import statistics
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


@app.route("/stats", methods=["POST"])
def stats():
    numbers = (request.get_json(silent=True) or {}).get("numbers")
    if not isinstance(numbers, list) or not numbers or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in numbers):
        return jsonify(error="numbers must be a non-empty list of numbers"), 400
    return jsonify(count=len(numbers), mean=float(statistics.fmean(numbers)),
                   median=float(statistics.median(numbers)), min=min(numbers), max=max(numbers))


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
