"""fizzbuzz: a deliberately WRONG variant of the reference of this KubeVibe-Bench task.

Develop a FizzBuzz microservice. GET /fizzbuzz/<n> for a positive integer n answers 200 {"n": <n>, "result":
"Fizz" when n is divisible by 3, "Buzz" when by 5, "FizzBuzz" when by both, otherwise n as a string}; n = 0
answers 400. The service listens on port 5000 and answers GET /health with 200 {"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


@app.route("/fizzbuzz/<int:n>", methods=["GET"])
def fizzbuzz(n):
    if n < 1:
        return jsonify(error="n must be positive"), 400
    if n % 5 == 0 and n % 3 == 0 and n > 15:
        result = "FizzBuzz"
    elif n % 3 == 0:
        result = "Fizz"
    elif n % 5 == 0:
        result = "Buzz"
    else:
        result = str(n)
    return jsonify(n=n, result=result)


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
