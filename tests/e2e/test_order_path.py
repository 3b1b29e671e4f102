"""End to end on the real stack: an order through the REST API fills on the paper venue, the
fill and position arrive over the WebSocket, and the position reads back from the API."""

import json
import time
from decimal import Decimal

import httpx
import pytest
from websockets.sync.client import connect

from tests.conftest import token_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def receive_until(ws, predicate, timeout: float = 15.0) -> list[dict]:  # type: ignore[no-untyped-def]
    """Messages received until one satisfies `predicate` (which is included last)."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message = json.loads(ws.recv(timeout=max(0.05, deadline - time.monotonic())))
        except TimeoutError:
            break
        seen.append(message)
        if predicate(message):
            return seen
    raise AssertionError(f"Expected message not received; got {[m['type'] for m in seen]}")


def drain(ws, seconds: float) -> list[dict]:  # type: ignore[no-untyped-def]
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            seen.append(json.loads(ws.recv(timeout=deadline - time.monotonic())))
        except TimeoutError:
            break
    return seen


def test_order_fills_and_position_arrives_over_websocket(live_stack, world):
    alice_account = world["accounts"]["alice"]
    api = httpx.Client(base_url=live_stack.base_url, headers={"Authorization": f"Token {token_for(world['alice'])}"})
    staff_api = httpx.Client(
        base_url=live_stack.base_url, headers={"Authorization": f"Token {token_for(world['staff'])}"}
    )

    with (
        connect(f"{live_stack.ws_url}/ws/live/?token={token_for(world['alice'])}") as alice_ws,
        connect(f"{live_stack.ws_url}/ws/live/?token={token_for(world['bob'])}") as bob_ws,
    ):
        hello = json.loads(alice_ws.recv(timeout=5))
        assert hello == {"type": "hello", "data": {"accounts": [alice_account.pk]}}
        json.loads(bob_ws.recv(timeout=5))

        price = staff_api.post("/api/v1/sim/prices/", json={"symbol": "MES", "price": "5000.25"})
        assert price.status_code == 200, live_stack.log_tail()

        response = api.post(
            "/api/v1/orders/",
            json={"account": alice_account.pk, "symbol": "MES", "side": "buy", "quantity": 2, "type": "market"},
        )
        assert response.status_code == 201, response.text
        order_id = response.json()["id"]

        messages = receive_until(alice_ws, lambda m: m["type"] == "position.updated" and m["data"]["quantity"] == 2)
        position = messages[-1]["data"]
        assert position["symbol"] == "MESZ6" and position["avg_price"] == "5000.25"
        assert position["account"] == alice_account.pk
        statuses = [
            m["data"]["status"] for m in messages if m["type"] == "order.updated" and m["data"]["id"] == order_id
        ]
        assert "filled" in statuses, live_stack.log_tail()

        # Read back through the API: the position, and the order with its history.
        positions = api.get("/api/v1/positions/", params={"account": alice_account.pk}).json()["results"]
        assert [(p["symbol"], p["quantity"], p["avg_price"]) for p in positions] == [("MESZ6", 2, "5000.25")]
        order = api.get(f"/api/v1/orders/{order_id}/").json()
        assert order["status"] == "filled" and order["filled_quantity"] == 2
        assert [e["type"] for e in order["events"]][:2] == ["created", "submitted"]

        # A price move re-marks the position: unrealized P&L arrives without any request.
        staff_api.post("/api/v1/sim/prices/", json={"symbol": "MES", "price": "5001.25"})
        marked = receive_until(
            alice_ws, lambda m: m["type"] == "account.updated" and m["data"]["unrealized_pnl"] == "10.00"
        )[-1]["data"]
        assert marked["equity"] == str(Decimal(marked["balance"]) + Decimal("10.00"))

        # Bob never hears about Alice's account.
        assert [m for m in drain(bob_ws, 0.5) if m.get("account") == alice_account.pk] == []
