"""credit-card: checks credit card numbers with the Luhn checksum.

POST /validate {"card_number": "4539 5787 6362 1486"} -> {"valid": true, "card_number": "4539578763621486", ...}
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


def luhn_valid(number):
    """True when the digit string passes the Luhn checksum."""
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char)
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def card_brand(number):
    if number.startswith("4"):
        return "visa"
    if number[:2] in ("51", "52", "53", "54", "55") or "2221" <= number[:4] <= "2720":
        return "mastercard"
    if number[:2] in ("34", "37"):
        return "amex"
    if number.startswith("6011") or number.startswith("65"):
        return "discover"
    return "unknown"


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


@app.route("/validate", methods=["POST"])
def validate():
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or str(data.get("card_number", "")).strip() == "":
        return jsonify(error="card_number is required"), 400
    number = str(data["card_number"]).replace(" ", "").replace("-", "")
    if not (number.isascii() and number.isdigit()) or not 12 <= len(number) <= 19:
        return jsonify(valid=False, card_number=number, reason="a card number has 12 to 19 digits")
    return jsonify(valid=luhn_valid(number), card_number=number, brand=card_brand(number))


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
