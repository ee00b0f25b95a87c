"""word-count: counts the words, characters and lines of a text and lists its most frequent words.

POST /count {"text": "the cat and the hat"} -> {"words": 5, "characters": 19, "lines": 1, "top_words": [...]}
"""

import re
from collections import Counter

from flask import Flask, jsonify, request

app = Flask(__name__)

WORD = re.compile(r"[A-Za-z0-9']+")


def text_stats(text, top=5):
    words = [word.lower() for word in WORD.findall(text)]
    common = Counter(words).most_common(top)
    return {
        "words": len(words),
        "characters": len(text),
        "lines": len(text.splitlines()) if text else 0,
        "unique_words": len(set(words)),
        "top_words": [{"word": word, "count": count} for word, count in common],
    }


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


@app.route("/count", methods=["POST"])
def count():
    data = request.get_json(silent=True)
    text = data.get("text") if isinstance(data, dict) else None
    if not isinstance(text, str):
        return jsonify(error='send {"text": "..."}'), 400
    return jsonify(text_stats(text))


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
