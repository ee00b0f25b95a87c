"""shopping-cart: the reference solution of this KubeVibe-Bench task.

Develop a shopping cart service kept in memory. POST /carts answers 201 {"id": <1, 2, ...>, "items": [],
"total": 0}. POST /carts/<id>/items with JSON {"sku": "<text>", "price": <integer cents >= 0>, "quantity":
<positive integer>} adds the item (adding a sku again adds to its quantity) and answers 200 with the cart;
invalid fields answer 400. DELETE /carts/<id>/items/<sku> removes it and answers the cart, or 404 for a sku
not in the cart. GET /carts/<id> answers {"id", "items": [{"sku", "price", "quantity"} in the order first
added], "total": <sum of price * quantity>}. Unknown carts answer 404. The service listens on port 5000 and
answers GET /health with 200 {"status": "ok"}.
"""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/health", methods=["GET"])
def health():
    return jsonify(status="ok")


CARTS = {}


def _view(cart_id):
    items = CARTS[cart_id]
    return {"id": cart_id, "items": list(items.values()),
            "total": sum(i["price"] * i["quantity"] for i in items.values())}


def _int(value, minimum):
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


@app.route("/carts", methods=["POST"])
def new_cart():
    cart_id = len(CARTS) + 1
    CARTS[cart_id] = {}
    return jsonify(_view(cart_id)), 201


@app.route("/carts/<int:cart_id>", methods=["GET"])
def get_cart(cart_id):
    if cart_id not in CARTS:
        return jsonify(error="no such cart"), 404
    return jsonify(_view(cart_id))


@app.route("/carts/<int:cart_id>/items", methods=["POST"])
def add_item(cart_id):
    if cart_id not in CARTS:
        return jsonify(error="no such cart"), 404
    data = request.get_json(silent=True) or {}
    sku, price, quantity = data.get("sku"), data.get("price"), data.get("quantity")
    if not (isinstance(sku, str) and sku and _int(price, 0) and _int(quantity, 1)):
        return jsonify(error="sku, price >= 0 and quantity >= 1 are required"), 400
    items = CARTS[cart_id]
    if sku in items:
        items[sku]["quantity"] += quantity
    else:
        items[sku] = {"sku": sku, "price": price, "quantity": quantity}
    return jsonify(_view(cart_id))


@app.route("/carts/<int:cart_id>/items/<sku>", methods=["DELETE"])
def remove_item(cart_id, sku):
    if cart_id not in CARTS or sku not in CARTS[cart_id]:
        return jsonify(error="not found"), 404
    del CARTS[cart_id][sku]
    return jsonify(_view(cart_id))


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
