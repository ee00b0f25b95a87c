"""temperature-units: a deliberately WRONG variant of the reference of this KubeVibe-Bench task.

Develop a temperature conversion microservice. GET /convert?value=<number>&from=<unit>&to=<unit>, units C, F
and K, answers 200 {"value": <the converted value rounded to 2 decimals>, "unit": <to>}. An unknown unit or a
value that is not a number answers 400. The service listens on port 5000 and answers GET /health with 200
{"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


TO_C = {"C": lambda v: v, "F": lambda v: (v - 32) * 5 / 9, "K": lambda v: v - 273}
FROM_C = {"C": lambda v: v, "F": lambda v: v * 9 / 5 + 32, "K": lambda v: v + 273.15}


@app.route("/convert", methods=["GET"])
def convert():
    source, target = request.args.get("from", ""), request.args.get("to", "")
    try:
        value = float(request.args.get("value", ""))
    except ValueError:
        return jsonify(error="value must be a number"), 400
    if source not in TO_C or target not in FROM_C:
        return jsonify(error="units are C, F and K"), 400
    return jsonify(value=round(FROM_C[target](TO_C[source](value)), 2), unit=target)


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
