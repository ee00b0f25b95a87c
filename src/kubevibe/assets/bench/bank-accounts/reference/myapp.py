"""bank-accounts: the reference solution of this KubeVibe-Bench task.

Develop a bank account service kept in memory. POST /accounts with JSON {"owner": "<name>"} answers 201 {"id":
<1, 2, ...>, "owner", "balance": 0}. POST /accounts/<id>/deposit and POST /accounts/<id>/withdraw with JSON
{"amount": <positive integer>} answer 200 with the account; an amount that is not a positive integer answers
400; a withdrawal above the balance answers 409 and changes nothing. GET /accounts/<id> answers the account;
an unknown account answers 404 everywhere. The service listens on port 5000 and answers GET /health with 200
{"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


ACCOUNTS = {}


def _amount():
    amount = (request.get_json(silent=True) or {}).get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        return None
    return amount


@app.route("/accounts", methods=["POST"])
def open_account():
    owner = (request.get_json(silent=True) or {}).get("owner")
    if not isinstance(owner, str) or not owner.strip():
        return jsonify(error="owner is required"), 400
    account = {"id": len(ACCOUNTS) + 1, "owner": owner, "balance": 0}
    ACCOUNTS[account["id"]] = account
    return jsonify(account), 201


@app.route("/accounts/<int:account_id>", methods=["GET"])
def get_account(account_id):
    if account_id not in ACCOUNTS:
        return jsonify(error="no such account"), 404
    return jsonify(ACCOUNTS[account_id])


@app.route("/accounts/<int:account_id>/<action>", methods=["POST"])
def move(account_id, action):
    if account_id not in ACCOUNTS or action not in ("deposit", "withdraw"):
        return jsonify(error="not found"), 404
    amount = _amount()
    if amount is None:
        return jsonify(error="amount must be a positive integer"), 400
    account = ACCOUNTS[account_id]
    if action == "withdraw":
        if amount > account["balance"]:
            return jsonify(error="insufficient funds"), 409
        amount = -amount
    account["balance"] += amount
    return jsonify(account)


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
