"""base64-codec: the reference solution of this KubeVibe-Bench task.

Develop a Base64 microservice. POST /encode with JSON {"text": "<UTF-8 text>"} answers 200 {"encoded":
"<standard Base64 of its UTF-8 bytes>"}; POST /decode with JSON {"encoded": "<Base64>"} answers 200 {"text":
"<decoded UTF-8 text>"}; a missing field or invalid Base64 answers 400. The service listens on port 5000 and
answers GET /health with 200 {"status": "ok"}.
"""

import base64
import binascii
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


@app.route("/encode", methods=["POST"])
def encode():
    text = (request.get_json(silent=True) or {}).get("text")
    if not isinstance(text, str):
        return jsonify(error="text is required"), 400
    return jsonify(encoded=base64.b64encode(text.encode("utf-8")).decode("ascii"))


@app.route("/decode", methods=["POST"])
def decode():
    encoded = (request.get_json(silent=True) or {}).get("encoded")
    if not isinstance(encoded, str):
        return jsonify(error="encoded is required"), 400
    try:
        return jsonify(text=base64.b64decode(encoded, validate=True).decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError):
        return jsonify(error="invalid Base64"), 400


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
