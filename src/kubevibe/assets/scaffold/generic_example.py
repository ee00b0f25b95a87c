@app.route("/greet", methods=["POST"])
def greet():
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return jsonify(error='send {"name": "..."}'), 400
    return jsonify(greeting="Hello, " + data["name"] + "!")
