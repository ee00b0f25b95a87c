"""password-strength: a deliberately WRONG variant of the reference of this KubeVibe-Bench task.

Develop a password strength microservice. POST /strength with JSON {"password": "<text>"} answers 200
{"score": <0..4, one point each for: at least 8 characters, a lower-case letter, an upper-case letter, a
digit>, "strong": <true when the score is 4>}; a missing password answers 400. The service listens on port
5000 and answers GET /health with 200 {"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


@app.route("/strength", methods=["POST"])
def strength():
    password = (request.get_json(silent=True) or {}).get("password")
    if not isinstance(password, str):
        return jsonify(error="password is required"), 400
    score = sum([len(password) > 8, any(c.islower() for c in password), any(c.isupper() for c in password),
                 any(c.isdigit() for c in password)])
    return jsonify(score=score, strong=score == 4)


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
