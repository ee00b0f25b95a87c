"""bmi-calculator: a deliberately WRONG variant of the reference of this KubeVibe-Bench task.

Develop a BMI calculator microservice. POST /bmi with JSON {"weight_kg": <number>, "height_m": <number>}
answers 200 {"bmi": <weight / height squared, rounded to 1 decimal>, "category": "underweight" below 18.5,
"normal" below 25, "overweight" below 30, otherwise "obese"}; missing, non-numeric or non-positive values
answer 400. The service listens on port 5000 and answers GET /health with 200 {"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


def _positive(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0


@app.route("/bmi", methods=["POST"])
def bmi():
    data = request.get_json(silent=True) or {}
    weight, height = data.get("weight_kg"), data.get("height_m")
    if not (_positive(weight) and _positive(height)):
        return jsonify(error="weight_kg and height_m must be positive numbers"), 400
    value = round(weight / (height * height), 1)
    if value < 18.5:
        category = "underweight"
    elif value <= 25:
        category = "normal"
    elif value < 30:
        category = "overweight"
    else:
        category = "obese"
    return jsonify(bmi=value, category=category)


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
