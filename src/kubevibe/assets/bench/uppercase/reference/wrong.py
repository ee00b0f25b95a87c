"""uppercase: a deliberately WRONG variant of the reference of this KubeVibe-Bench task.

Develop a microservice that upper-cases text. POST /upper with JSON {"text": "<string>"} answers 200 {"text":
"<the text in upper case>", "length": <its number of characters>}; without a string "text" it answers 400. The
service listens on port 5000 and answers GET /health with 200 {"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


@app.route("/upper", methods=["POST"])
def upper():
    data = request.get_json(silent=True) or {}
    text = data.get("text")
    if not isinstance(text, str):
        return jsonify(error="text must be a string"), 400
    return jsonify(text=text.title(), length=len(text))


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
