"""reverse-string: a deliberately WRONG variant of the reference of this KubeVibe-Bench task.

Develop a microservice that reverses text. POST /reverse with JSON {"text": "<string>"} answers 200 {"result":
"<the text reversed>"}; a body without a string "text" answers 400 {"error": "<message>"}. The service listens
on port 5000 and answers GET /health with 200 {"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


@app.route("/reverse", methods=["POST"])
def reverse():
    data = request.get_json(silent=True) or {}
    text = data.get("text")
    if not isinstance(text, str):
        return jsonify(error="text must be a string"), 400
    return jsonify(result=text[::-1].lower())


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
