"""echo: answers every request with what it was sent, for testing clients, proxies and deployments.

POST /echo {"message": "hello"} -> {"echo": {"message": "hello"}, "method": "POST", ...}
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


@app.route("/echo", methods=["POST"])
def echo_post():
    data = request.get_json(silent=True)
    if data is None:
        data = request.get_data(as_text=True)
    return jsonify(echo=data, method="POST", path=request.path)


@app.route("/echo", methods=["GET"])
def echo_get():
    return jsonify(echo=request.args.get("message", ""), args=request.args.to_dict(), method="GET", path=request.path)


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
