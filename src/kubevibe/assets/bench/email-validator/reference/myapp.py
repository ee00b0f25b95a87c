"""email-validator: the reference solution of this KubeVibe-Bench task.

Develop an email address validation microservice. POST /validate-email with JSON {"email": "<text>"} answers
200 {"email": <the input>, "valid": <true when it has exactly one @, a non-empty local part without spaces,
and a domain with at least one dot and no empty label>}; a missing email answers 400. The service listens on
port 5000 and answers GET /health with 200 {"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


def valid_email(email):
    if email.count("@") != 1 or " " in email:
        return False
    local, domain = email.split("@")
    labels = domain.split(".")
    return bool(local) and len(labels) >= 2 and all(labels)


@app.route("/validate-email", methods=["POST"])
def validate_email():
    data = request.get_json(silent=True) or {}
    email = data.get("email")
    if not isinstance(email, str):
        return jsonify(error="email is required"), 400
    return jsonify(email=email, valid=valid_email(email))


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
