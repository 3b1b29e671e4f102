"""REST API for orders, positions and fills: outcomes, every error shape, and cross-account access."""

from decimal import Decimal

import pytest

from brokers.paper.models import VenueOrder
from orders.models import Fill, Order, Position
from tests.conftest import client_for
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def order_body(account, **overrides):  # type: ignore[no-untyped-def]
    return {"account": account.pk, "symbol": "MES", "side": "buy", "quantity": 1, "type": "market", **overrides}


def test_post_order_fills_on_the_paper_venue(alice_api, alice_account, commit):
    with commit():
        response = alice_api.post("/api/v1/orders/", order_body(alice_account, quantity=2), format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["symbol"] == "MESZ6" and body["quantity"] == 2 and body["client_order_id"].startswith("pd-")
    order = Order.objects.get(pk=body["id"])
    assert order.status == "filled" and order.created_by.username == "alice" and order.source == "api"
    detail = alice_api.get(f"/api/v1/orders/{order.pk}/").json()
    assert detail["status"] == "filled" and detail["avg_fill_price"] == "5000.00"
    assert [e["type"] for e in detail["events"]] == ["created", "submitted", "accepted", "fill"]


def test_limit_order_keeps_prices_on_the_tick_grid(alice_api, alice_account, commit):
    with commit():
        response = alice_api.post(
            "/api/v1/orders/", order_body(alice_account, type="limit", limit_price=4990.5), format="json"
        )
    assert response.status_code == 201
    assert response.json()["limit_price"] == "4990.50"
    assert Order.objects.get().limit_price == Decimal("4990.50")


def test_idempotency_key_replays_the_same_order_and_refuses_a_different_body(alice_api, alice_account, commit):
    with commit():
        first = alice_api.post("/api/v1/orders/", order_body(alice_account), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    with commit():
        again = alice_api.post("/api/v1/orders/", order_body(alice_account), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    changed = alice_api.post(
        "/api/v1/orders/", order_body(alice_account, quantity=3), format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert changed.status_code == 409
    assert changed.json()["code"] == "idempotency_key_reused"
    assert Order.objects.count() == 1
    assert VenueOrder.objects.count() == 1
    assert Position.objects.get().quantity == 1


def test_two_users_may_use_the_same_idempotency_key(alice_api, bob_api, alice_account, bob_account, commit):
    with commit():
        a = alice_api.post("/api/v1/orders/", order_body(alice_account), format="json", HTTP_IDEMPOTENCY_KEY="same")
        b = bob_api.post("/api/v1/orders/", order_body(bob_account), format="json", HTTP_IDEMPOTENCY_KEY="same")
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"]


@pytest.mark.parametrize(
    ("overrides", "code", "field", "sentence"),
    [
        ({"quantity": 0}, "invalid_quantity", "quantity", "whole number"),
        ({"quantity": -1}, "invalid_quantity", "quantity", "whole number"),
        ({"quantity": 1.5}, "invalid_quantity", "quantity", "whole number"),
        ({"quantity": "two"}, "invalid_quantity", "quantity", "whole number"),
        ({"quantity": True}, "invalid_quantity", "quantity", "whole number"),
        ({"quantity": 10001}, "quantity_too_large", "quantity", "10000"),
        ({"symbol": "XYZ"}, "unknown_symbol", "symbol", "No tradable instrument"),
        ({"side": "hold"}, "invalid_choice", "side", "not a valid choice"),
        ({"type": "limit"}, "price_required", "limit_price", "needs a limit price"),
        ({"type": "stop"}, "price_required", "stop_price", "needs a stop price"),
        ({"type": "stop_limit", "stop_price": "5001"}, "price_required", "limit_price", "limit price"),
        ({"limit_price": "5000"}, "unexpected_price", "limit_price", "takes no limit price"),
        (
            {"type": "limit", "limit_price": "5000.30"},
            "price_off_tick",
            "limit_price",
            "nearest valid prices are 5000.25 and 5000.50",
        ),
        ({"type": "limit", "limit_price": "NaN"}, "invalid_price", "limit_price", "must be a number"),
        ({"type": "limit", "limit_price": "abc"}, "invalid_price", "limit_price", "must be a number"),
        ({"type": "limit", "limit_price": "-5"}, "invalid_price", "limit_price", "above zero"),
        ({"type": "stop", "stop_price": "Infinity"}, "invalid_price", "stop_price", "must be a number"),
        ({"limitPrice": "5000"}, "unknown_field", "limitPrice", "Unknown field"),
        ({"time_in_force": "forever"}, "invalid_choice", "time_in_force", "not a valid choice"),
    ],
)
def test_bad_order_input_gets_a_code_and_a_sentence_and_stores_nothing(
    alice_api, alice_account, overrides, code, field, sentence
):
    response = alice_api.post("/api/v1/orders/", order_body(alice_account, **overrides), format="json")

    assert response.status_code == 400, response.json()
    body = response.json()
    assert (body["code"], body["field"]) == (code, field)
    assert sentence in body["detail"]
    assert not Order.objects.exists()


def test_missing_account_is_named(alice_api):
    response = alice_api.post("/api/v1/orders/", {"symbol": "MES", "side": "buy", "quantity": 1}, format="json")
    assert response.status_code == 400
    assert response.json() | {"errors": None} == {
        "code": "missing_field",
        "detail": "account is required.",
        "field": "account",
        "errors": None,
    }


@pytest.mark.parametrize(
    "raw",
    [b'{"account": 1, "quantity": NaN}', b"{not json", b"[1, 2]", b'"text"'],
)
def test_malformed_bodies_are_refused(alice_api, alice_account, raw):
    response = alice_api.post("/api/v1/orders/", raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_body"
    assert not Order.objects.exists()


def test_someone_elses_account_is_not_found_and_nothing_is_stored(alice_api, bob_account):
    response = alice_api.post("/api/v1/orders/", order_body(bob_account), format="json")
    assert response.status_code == 404
    assert response.json()["code"] == "account_not_found"
    assert not Order.objects.exists()


def test_watcher_may_not_trade(alice_account, commit):
    watcher = UserFactory(username="watcher")
    MembershipFactory(account=alice_account, user=watcher, can_trade=False)
    response = client_for(watcher).post("/api/v1/orders/", order_body(alice_account), format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "not_allowed_to_trade"
    assert not Order.objects.exists()


def test_halted_account_answers_409_and_keeps_the_denied_order(alice_api, alice_account):
    from risk.services import halt_account

    halt_account(account=alice_account, reason="staff halt")
    response = alice_api.post("/api/v1/orders/", order_body(alice_account), format="json")

    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "account_halted" and "halted" in body["detail"]
    assert body["denials"][0]["rule"] == "trading_state"
    assert Order.objects.get(pk=body["order"]).status == "denied"
    assert not VenueOrder.objects.exists()


def test_reducing_account_refuses_an_order_that_adds_exposure(alice_api, alice_account, commit):
    from accounts.domain import TradingState
    from risk.services import set_trading_state

    with commit():
        alice_api.post("/api/v1/orders/", order_body(alice_account), format="json")
    set_trading_state(account=alice_account, state=TradingState.REDUCING, reason="test")
    response = alice_api.post("/api/v1/orders/", order_body(alice_account), format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "account_reducing"
    with commit():
        reduce = alice_api.post("/api/v1/orders/", order_body(alice_account, side="sell"), format="json")
    assert reduce.status_code == 201
    assert Position.objects.get().quantity == 0


def test_unauthenticated_requests_are_refused(client):
    response = client.get("/api/v1/orders/")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response.headers["WWW-Authenticate"] == "Token"


# -- Reading -------------------------------------------------------------------------------------


def test_order_list_filters_and_only_shows_own_orders(alice_api, bob_api, alice_account, bob_account, commit):
    with commit():
        alice_api.post("/api/v1/orders/", order_body(alice_account), format="json")
        alice_api.post("/api/v1/orders/", order_body(alice_account, type="limit", limit_price="4000"), format="json")
        bob_api.post("/api/v1/orders/", order_body(bob_account), format="json")

    mine = alice_api.get("/api/v1/orders/").json()
    assert mine["count"] == 2
    assert {o["account"] for o in mine["results"]} == {alice_account.pk}
    working = alice_api.get("/api/v1/orders/", {"status": "accepted"}).json()
    assert [o["type"] for o in working["results"]] == ["limit"]
    assert alice_api.get("/api/v1/orders/", {"account": bob_account.pk}).json()["count"] == 0
    bobs = Order.objects.get(account=bob_account)
    response = alice_api.get(f"/api/v1/orders/{bobs.pk}/")
    assert response.status_code == 404 and response.json()["code"] == "order_not_found"


def test_staff_see_every_order(staff_api, alice_api, bob_api, alice_account, bob_account, commit):
    with commit():
        alice_api.post("/api/v1/orders/", order_body(alice_account), format="json")
        bob_api.post("/api/v1/orders/", order_body(bob_account), format="json")
    assert staff_api.get("/api/v1/orders/").json()["count"] == 2


def test_positions_and_fills_are_scoped_and_valued(alice_api, bob_api, alice_account, bob_account, paper, commit):
    with commit():
        alice_api.post("/api/v1/orders/", order_body(alice_account, quantity=2), format="json")
        bob_api.post("/api/v1/orders/", order_body(bob_account), format="json")
    with commit():
        paper.price("MESZ6", "5001.00")

    positions = alice_api.get("/api/v1/positions/").json()["results"]
    assert [(p["symbol"], p["quantity"], p["side"], p["last_price"], p["unrealized_pnl"]) for p in positions] == [
        ("MESZ6", 2, "long", "5001.00", "10.00")
    ]
    fills = alice_api.get("/api/v1/fills/").json()["results"]
    assert [(f["quantity"], f["price"], f["fee"]) for f in fills] == [(2, "5000.00", "0.74")]
    assert alice_api.get("/api/v1/fills/", {"account": bob_account.pk}).json()["count"] == 0


# -- Cancel and close -----------------------------------------------------------------------------


def test_cancel_a_working_order(alice_api, alice_account, commit):
    with commit():
        order_id = alice_api.post(
            "/api/v1/orders/", order_body(alice_account, type="limit", limit_price="4000"), format="json"
        ).json()["id"]
    with commit():
        response = alice_api.post(f"/api/v1/orders/{order_id}/cancel/")

    assert response.status_code == 200
    assert Order.objects.get(pk=order_id).status == "canceled"
    assert VenueOrder.objects.get().status == "canceled"


def test_cancel_someone_elses_or_a_filled_order(alice_api, bob_api, alice_account, bob_account, commit):
    with commit():
        bobs = bob_api.post("/api/v1/orders/", order_body(bob_account, type="limit", limit_price="4000"), format="json")
        filled = alice_api.post("/api/v1/orders/", order_body(alice_account), format="json")

    other = alice_api.post(f"/api/v1/orders/{bobs.json()['id']}/cancel/")
    assert other.status_code == 404
    assert Order.objects.get(pk=bobs.json()["id"]).status == "accepted"
    done = alice_api.post(f"/api/v1/orders/{filled.json()['id']}/cancel/")
    assert done.status_code == 409 and done.json()["code"] == "order_not_cancelable"


def test_close_position_partially_then_fully(alice_api, alice_account, commit):
    with commit():
        alice_api.post("/api/v1/orders/", order_body(alice_account, quantity=3), format="json")
    position = Position.objects.get()
    with commit():
        partial = alice_api.post(f"/api/v1/positions/{position.pk}/close/", {"quantity": 2}, format="json")
    assert partial.status_code == 202
    assert partial.json()["side"] == "sell" and partial.json()["quantity"] == 2
    assert Position.objects.get().quantity == 1

    too_many = alice_api.post(f"/api/v1/positions/{position.pk}/close/", {"quantity": 5}, format="json")
    assert too_many.status_code == 400 and too_many.json()["code"] == "close_quantity_too_large"
    bad = alice_api.post(f"/api/v1/positions/{position.pk}/close/", {"quantity": 0}, format="json")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_quantity"

    with commit():
        full = alice_api.post(f"/api/v1/positions/{position.pk}/close/", format="json")
    assert full.status_code == 202
    assert Position.objects.get().quantity == 0
    flat = alice_api.post(f"/api/v1/positions/{position.pk}/close/", format="json")
    assert flat.status_code == 409 and flat.json()["code"] == "nothing_to_close"
    assert Fill.objects.count() == 3


def test_close_someone_elses_position_is_not_found(alice_api, bob_api, bob_account, commit):
    with commit():
        bob_api.post("/api/v1/orders/", order_body(bob_account), format="json")
    response = alice_api.post(f"/api/v1/positions/{Position.objects.get().pk}/close/", format="json")
    assert response.status_code == 404
    assert Position.objects.get().quantity == 1
