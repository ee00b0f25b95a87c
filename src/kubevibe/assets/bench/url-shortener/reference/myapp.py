"""url-shortener: the reference solution of this KubeVibe-Bench task.

Develop a URL shortener kept in memory. POST /shorten with JSON {"url": "<http:// or https:// URL>"} answers
201 {"code": "<short code>", "url": <url>}; the same URL always gets the same code; a missing url or one not
starting with http:// or https:// answers 400. GET /resolve/<code> answers 200 {"url": <the original URL>} or
404 for an unknown code. GET /stats/<code> answers 200 {"code", "url", "resolved": <how many times it was
resolved>} or 404. The service listens on port 5000 and answers GET /health with 200 {"status": "ok"}.
"""

import hashlib
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


LINKS = {}
HITS = {}


@app.route("/shorten", methods=["POST"])
def shorten():
    url = (request.get_json(silent=True) or {}).get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return jsonify(error="url must start with http:// or https://"), 400
    code = hashlib.sha256(url.encode("utf-8")).hexdigest()[:7]
    LINKS[code] = url
    HITS.setdefault(code, 0)
    return jsonify(code=code, url=url), 201


@app.route("/resolve/<code>", methods=["GET"])
def resolve(code):
    if code not in LINKS:
        return jsonify(error="unknown code"), 404
    HITS[code] += 1
    return jsonify(url=LINKS[code])


@app.route("/stats/<code>", methods=["GET"])
def stats(code):
    if code not in LINKS:
        return jsonify(error="unknown code"), 404
    return jsonify(code=code, url=LINKS[code], resolved=HITS[code])


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
