"""is-prime: a deliberately WRONG variant of the reference of this KubeVibe-Bench task.

Develop a prime number checker. POST /prime with JSON {"n": <integer>} answers 200 {"n": <n>, "prime": <true
if n is a prime number, else false>}; a missing or non-integer "n" answers 400. The service listens on port
5000 and answers GET /health with 200 {"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


def is_prime(n):
    if n < 2:
        return False
    i = 2
    while i * i < n:
        if n % i == 0:
            return False
        i += 1
    return True


@app.route("/prime", methods=["POST"])
def prime():
    data = request.get_json(silent=True) or {}
    n = data.get("n")
    if not isinstance(n, int) or isinstance(n, bool):
        return jsonify(error="n must be an integer"), 400
    return jsonify(n=n, prime=is_prime(n))


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
