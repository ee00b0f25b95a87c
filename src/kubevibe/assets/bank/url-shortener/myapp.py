"""url-shortener: turns long URLs into short codes, kept in memory, and redirects the codes.

POST /shorten {"url": "https://example.com/some/long/path"} -> 201 {"code": "0c4a8487", "short_url": "/r/0c4a8487", ...}
"""

import hashlib
import threading
from urllib.parse import urlparse

from flask import Flask, jsonify, redirect, request

app = Flask(__name__)

URLS = {}  # code -> long URL; in memory, lost on restart
LOCK = threading.Lock()


def short_code(url):
    """The same URL always gets the same 8-character code."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:8]


def is_http_url(url):
    parts = urlparse(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


@app.route("/shorten", methods=["POST"])
def shorten():
    data = request.get_json(silent=True)
    url = data.get("url") if isinstance(data, dict) else None
    if not isinstance(url, str) or not is_http_url(url.strip()):
        return jsonify(error="url must be an http or https URL"), 400
    url = url.strip()
    code = short_code(url)
    with LOCK:
        URLS[code] = url
    return jsonify(code=code, short_url=f"/r/{code}", url=url), 201


@app.route("/resolve/<code>", methods=["GET"])
def resolve(code):
    with LOCK:
        url = URLS.get(code)
    if url is None:
        return jsonify(error=f"unknown code {code}"), 404
    return jsonify(code=code, url=url)


@app.route("/r/<code>", methods=["GET"])
def follow(code):
    with LOCK:
        url = URLS.get(code)
    if url is None:
        return jsonify(error=f"unknown code {code}"), 404
    return redirect(url, code=302)


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
