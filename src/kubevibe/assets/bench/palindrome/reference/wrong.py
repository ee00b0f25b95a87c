"""palindrome: a deliberately WRONG variant of the reference of this KubeVibe-Bench task.

Develop a palindrome checker. POST /palindrome with JSON {"text": "<string>"} answers 200 {"palindrome": <true
when the text reads the same backwards, ignoring case and every character that is not a letter or digit>};
without a string "text" it answers 400. The service listens on port 5000 and answers GET /health with 200
{"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


@app.route("/palindrome", methods=["POST"])
def palindrome():
    data = request.get_json(silent=True) or {}
    text = data.get("text")
    if not isinstance(text, str):
        return jsonify(error="text must be a string"), 400
    cleaned = [c.lower() for c in text if not c.isspace()]
    return jsonify(palindrome=cleaned == cleaned[::-1])


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
