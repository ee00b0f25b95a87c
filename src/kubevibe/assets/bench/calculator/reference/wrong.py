"""calculator: a deliberately WRONG variant of the reference of this KubeVibe-Bench task.

Develop a calculator microservice with four endpoints: POST /add, POST /subtract, POST /multiply and POST
/divide, each with JSON {"a": <number>, "b": <number>}, answering 200 {"result": <a op b>}. A missing or non-
numeric a or b answers 400; dividing by zero answers 400 {"error": "division by zero"}. The service listens on
port 5000 and answers GET /health with 200 {"status": "ok"}.
"""

import operator
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


OPS = {"add": operator.add, "subtract": lambda a, b: b - a, "multiply": operator.mul, "divide": operator.truediv}


def _number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@app.route("/<op>", methods=["POST"])
def calculate(op):
    if op not in OPS:
        return jsonify(error="unknown operation"), 404
    data = request.get_json(silent=True) or {}
    a, b = data.get("a"), data.get("b")
    if not (_number(a) and _number(b)):
        return jsonify(error="a and b must be numbers"), 400
    if op == "divide" and b == 0:
        return jsonify(error="division by zero"), 400
    return jsonify(result=OPS[op](a, b))


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
