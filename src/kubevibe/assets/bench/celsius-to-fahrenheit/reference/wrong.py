"""celsius-to-fahrenheit: a deliberately WRONG variant of the reference of this KubeVibe-Bench task.

Develop a temperature conversion microservice. POST /to-fahrenheit with JSON {"celsius": <number>} answers 200
{"celsius": <the input>, "fahrenheit": <celsius * 9 / 5 + 32, as a float>}; a missing or non-numeric "celsius"
answers 400. The service listens on port 5000 and answers GET /health with 200 {"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


@app.route("/to-fahrenheit", methods=["POST"])
def to_fahrenheit():
    data = request.get_json(silent=True) or {}
    c = data.get("celsius")
    if not isinstance(c, (int, float)) or isinstance(c, bool):
        return jsonify(error="celsius must be a number"), 400
    return jsonify(celsius=c, fahrenheit=(float(c) + 32) * 9 / 5)


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
