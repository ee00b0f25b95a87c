"""word-count: the reference solution of this KubeVibe-Bench task.

Develop a word counting microservice. POST /count with JSON {"text": "<string>"} answers 200 {"words": <number
of whitespace-separated words>}; without a string "text" it answers 400. The service listens on port 5000 and
answers GET /health with 200 {"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


@app.route("/count", methods=["POST"])
def count():
    data = request.get_json(silent=True) or {}
    text = data.get("text")
    if not isinstance(text, str):
        return jsonify(error="text must be a string"), 400
    return jsonify(words=len(text.split()))


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
