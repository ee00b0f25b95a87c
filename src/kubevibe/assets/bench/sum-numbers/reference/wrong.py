"""sum-numbers: a deliberately WRONG variant of the reference of this KubeVibe-Bench task.

Develop a microservice that adds numbers. POST /sum with JSON {"numbers": [<numbers>]} answers 200 {"sum":
<their sum>, "count": <how many>}; when "numbers" is missing or not a list of numbers it answers 400. The
service listens on port 5000 and answers GET /health with 200 {"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


@app.route("/sum", methods=["POST"])
def sum_numbers():
    data = request.get_json(silent=True) or {}
    numbers = data.get("numbers")
    if not isinstance(numbers, list) or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in numbers):
        return jsonify(error="numbers must be a list of numbers"), 400
    return jsonify(sum=sum(abs(x) for x in numbers), count=len(numbers))


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
