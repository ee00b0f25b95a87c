"""polls: the reference solution of this KubeVibe-Bench task.

Develop a poll service kept in memory. POST /polls with JSON {"question": "<text>", "options": [<2 or more
distinct strings>]} answers 201 {"id": <1, 2, ...>, "question", "options"}; fewer than 2 options or duplicates
answer 400. POST /polls/<id>/vote with JSON {"option": "<one of the options>"} answers 200 {"votes":
{<option>: <count>, ...}} (every option, 0 when none); an unknown option answers 400. GET /polls/<id>/results
answers 200 {"question", "votes", "winner": <the option with most votes, null on a tie or with no votes>}.
Unknown polls answer 404. The service listens on port 5000 and answers GET /health with 200 {"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


POLLS = {}


@app.route("/polls", methods=["POST"])
def create_poll():
    data = request.get_json(silent=True) or {}
    question, options = data.get("question"), data.get("options")
    if not (isinstance(question, str) and question and isinstance(options, list) and len(options) >= 2
            and all(isinstance(o, str) and o for o in options) and len(set(options)) == len(options)):
        return jsonify(error="a question and 2 or more distinct options are required"), 400
    poll = {"id": len(POLLS) + 1, "question": question, "options": options, "votes": {o: 0 for o in options}}
    POLLS[poll["id"]] = poll
    return jsonify(id=poll["id"], question=question, options=options), 201


@app.route("/polls/<int:poll_id>/vote", methods=["POST"])
def vote(poll_id):
    poll = POLLS.get(poll_id)
    if poll is None:
        return jsonify(error="no such poll"), 404
    option = (request.get_json(silent=True) or {}).get("option")
    if option not in poll["votes"]:
        return jsonify(error="unknown option"), 400
    poll["votes"][option] += 1
    return jsonify(votes=poll["votes"])


@app.route("/polls/<int:poll_id>/results", methods=["GET"])
def results(poll_id):
    poll = POLLS.get(poll_id)
    if poll is None:
        return jsonify(error="no such poll"), 404
    best = max(poll["votes"].values())
    leaders = [o for o, n in poll["votes"].items() if n == best]
    winner = leaders[0] if best > 0 and len(leaders) == 1 else None
    return jsonify(question=poll["question"], votes=poll["votes"], winner=winner)


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
