"""inventory: the reference solution of this KubeVibe-Bench task.

Develop an inventory service kept in memory. POST /items with JSON {"name": "<text>", "quantity": <integer >=
0>} answers 201 {"id": <1, 2, ...>, "name", "quantity"}; invalid fields answer 400. POST /items/<id>/add and
POST /items/<id>/remove with JSON {"quantity": <positive integer>} answer 200 with the item; removing more
than is in stock answers 409 and changes nothing. GET /items answers 200 {"items": [<by id>],
"total_quantity": <sum>}. Unknown items answer 404. The service listens on port 5000 and answers GET /health
with 200 {"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


ITEMS = {}


def _count(value, minimum):
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


@app.route("/items", methods=["POST"])
def add_item():
    data = request.get_json(silent=True) or {}
    if not (isinstance(data.get("name"), str) and data["name"] and _count(data.get("quantity"), 0)):
        return jsonify(error="name and a quantity >= 0 are required"), 400
    item = {"id": len(ITEMS) + 1, "name": data["name"], "quantity": data["quantity"]}
    ITEMS[item["id"]] = item
    return jsonify(item), 201


@app.route("/items", methods=["GET"])
def list_items():
    items = [ITEMS[k] for k in sorted(ITEMS)]
    return jsonify(items=items, total_quantity=sum(i["quantity"] for i in items))


@app.route("/items/<int:item_id>/<action>", methods=["POST"])
def change(item_id, action):
    item = ITEMS.get(item_id)
    if item is None or action not in ("add", "remove"):
        return jsonify(error="not found"), 404
    quantity = (request.get_json(silent=True) or {}).get("quantity")
    if not _count(quantity, 1):
        return jsonify(error="quantity must be a positive integer"), 400
    if action == "remove":
        if quantity > item["quantity"]:
            return jsonify(error="not enough in stock"), 409
        quantity = -quantity
    item["quantity"] += quantity
    return jsonify(item)


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
