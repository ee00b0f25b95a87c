"""luhn-validator: a deliberately WRONG variant of the reference of this KubeVibe-Bench task.

Develop a credit card validation microservice. POST /validate with JSON {"card_number": "<digits, spaces
allowed>"} answers 200 {"valid": <true when the digits pass the Luhn checksum and there are 12 to 19 of
them>}; a missing card_number answers 400; a card_number with characters other than digits and spaces answers
400. The service listens on port 5000 and answers GET /health with 200 {"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


def luhn(digits):
    total = 0
    for index, char in enumerate(reversed(digits)):
        d = int(char)
        if index % 2 == 1:
            d *= 2
            if d > 10:
                d -= 9
        total += d
    return total % 10 == 0


@app.route("/validate", methods=["POST"])
def validate():
    data = request.get_json(silent=True) or {}
    number = data.get("card_number")
    if not isinstance(number, str) or not number.strip():
        return jsonify(error="card_number is required"), 400
    digits = number.replace(" ", "")
    if not (digits.isascii() and digits.isdigit()):
        return jsonify(error="card_number may contain only digits and spaces"), 400
    return jsonify(valid=12 <= len(digits) <= 19 and luhn(digits))


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
