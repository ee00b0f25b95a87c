"""calculator: basic arithmetic over HTTP.

POST /calculate {"a": 6, "b": 3, "op": "divide"} -> {"a": 6, "b": 3, "op": "divide", "result": 2.0}
"""

import operator

from flask import Flask, jsonify, request

app = Flask(__name__)

OPERATIONS = {
    "add": operator.add, "+": operator.add,
    "subtract": operator.sub, "-": operator.sub,
    "multiply": operator.mul, "*": operator.mul,
    "divide": operator.truediv, "/": operator.truediv,
    "power": operator.pow, "^": operator.pow,
}


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


@app.route("/calculate", methods=["POST"])
def calculate():
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return jsonify(error='send {"a": number, "b": number, "op": "add|subtract|multiply|divide|power"}'), 400
    a, b, op = data.get("a"), data.get("b"), str(data.get("op", "")).strip().lower()
    if not is_number(a) or not is_number(b):
        return jsonify(error="a and b must be numbers"), 400
    if op not in OPERATIONS:
        return jsonify(error="op must be add, subtract, multiply, divide or power"), 400
    if OPERATIONS[op] is operator.truediv and b == 0:
        return jsonify(error="division by zero"), 400
    if OPERATIONS[op] is operator.pow and abs(b) > 1000:
        return jsonify(error="exponent too large"), 400
    return jsonify(a=a, b=b, op=op, result=OPERATIONS[op](a, b))


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
