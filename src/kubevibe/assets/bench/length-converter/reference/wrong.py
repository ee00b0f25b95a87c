"""length-converter: a deliberately WRONG variant of the reference of this KubeVibe-Bench task.

Develop a length conversion microservice. POST /convert-length with JSON {"value": <number>, "from": <unit>,
"to": <unit>}, units "mm", "cm", "m", "km", answers 200 {"value": <converted value as a float>, "unit": <to>};
an unknown unit or a non-numeric value answers 400. The service listens on port 5000 and answers GET /health
with 200 {"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


METRES = {"mm": 0.001, "cm": 0.1, "m": 1.0, "km": 1000.0}


@app.route("/convert-length", methods=["POST"])
def convert_length():
    data = request.get_json(silent=True) or {}
    value, source, target = data.get("value"), data.get("from"), data.get("to")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return jsonify(error="value must be a number"), 400
    if source not in METRES or target not in METRES:
        return jsonify(error="units are mm, cm, m and km"), 400
    return jsonify(value=round(value * METRES[source] / METRES[target], 9), unit=target)


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
