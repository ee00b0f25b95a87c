"""temperature-converter: converts temperatures between Celsius, Fahrenheit and Kelvin.

POST /convert {"value": 100, "from": "C", "to": "F"} -> {"value": 100, "from": "C", "to": "F", "result": 212.0}
"""

from flask import Flask, jsonify, request

app = Flask(__name__)

UNITS = ("C", "F", "K")


def to_celsius(value, unit):
    if unit == "F":
        return (value - 32) * 5 / 9
    if unit == "K":
        return value - 273.15
    return value


def from_celsius(value, unit):
    if unit == "F":
        return value * 9 / 5 + 32
    if unit == "K":
        return value + 273.15
    return value


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


@app.route("/convert", methods=["POST"])
def convert():
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return jsonify(error='send {"value": number, "from": "C|F|K", "to": "C|F|K"}'), 400
    value = data.get("value")
    source = str(data.get("from", "")).strip().upper()[:1]
    target = str(data.get("to", "")).strip().upper()[:1]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return jsonify(error="value must be a number"), 400
    if source not in UNITS or target not in UNITS:
        return jsonify(error="from and to must be one of C, F, K"), 400
    result = round(from_celsius(to_celsius(value, source), target), 2)
    return jsonify(value=value, **{"from": source, "to": target}, result=result)


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
