"""roman-numerals: a deliberately WRONG variant of the reference of this KubeVibe-Bench task.

Develop a Roman numeral microservice. POST /to-roman with JSON {"number": <integer 1..3999>} answers 200
{"roman": "<numeral>"}, and 400 for a number outside 1..3999. POST /from-roman with JSON {"roman":
"<numeral>"} answers 200 {"number": <integer>}, and 400 for text that is not a canonical Roman numeral. The
service listens on port 5000 and answers GET /health with 200 {"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


PAIRS = [(1000, "M"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"), (50, "L"), (40, "XL"),
         (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]


def to_roman(n):
    out = []
    for value, letters in PAIRS:
        while n >= value:
            out.append(letters)
            n -= value
    return "".join(out)


@app.route("/to-roman", methods=["POST"])
def to_roman_view():
    n = (request.get_json(silent=True) or {}).get("number")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 3999:
        return jsonify(error="number must be an integer from 1 to 3999"), 400
    return jsonify(roman=to_roman(n))


@app.route("/from-roman", methods=["POST"])
def from_roman_view():
    text = (request.get_json(silent=True) or {}).get("roman")
    if isinstance(text, str):
        for n in range(1, 4000):
            if to_roman(n) == text.upper():
                return jsonify(number=n)
    return jsonify(error="not a Roman numeral"), 400


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
