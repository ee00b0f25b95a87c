"""hello-world: greets the world, or whoever is named in the path.

GET / -> {"message": "Hello, World!"}; GET /hello/Ada -> {"message": "Hello, Ada!"}
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


@app.route("/", methods=["GET"])
def index():
    return jsonify(message="Hello, World!")


@app.route("/hello/<name>", methods=["GET"])
def hello(name):
    return jsonify(message=f"Hello, {name}!")


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
