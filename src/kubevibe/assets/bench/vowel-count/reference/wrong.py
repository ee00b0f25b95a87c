"""vowel-count: a deliberately WRONG variant of the reference of this KubeVibe-Bench task.

Develop a vowel counting microservice. POST /vowels with JSON {"text": "<string>"} answers 200 {"vowels": <how
many of the letters a, e, i, o, u it contains, upper or lower case>}; without a string "text" it answers 400.
The service listens on port 5000 and answers GET /health with 200 {"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


@app.route("/vowels", methods=["POST"])
def vowels():
    data = request.get_json(silent=True) or {}
    text = data.get("text")
    if not isinstance(text, str):
        return jsonify(error="text must be a string"), 400
    return jsonify(vowels=sum(1 for c in text if c in "aeiou"))


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
