"""factorial: the reference solution of this KubeVibe-Bench task.

Develop a factorial microservice. GET /factorial/<n> for an integer n from 0 to 100 answers 200 {"n": <n>,
"factorial": <n!>}; n above 100 answers 400. The service listens on port 5000 and answers GET /health with 200
{"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


@app.route("/factorial/<int:n>", methods=["GET"])
def factorial(n):
    if n > 100:
        return jsonify(error="n must be at most 100"), 400
    result = 1
    for i in range(2, n + 1):
        result *= i
    return jsonify(n=n, factorial=result)


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
