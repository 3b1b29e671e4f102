"""REST API for brackets, OCO pairs and changing orders: outcomes, error codes and access."""

from decimal import Decimal

import pytest

from brokers.paper.models import VenueOrder
from orders.models import Order, OrderGroup

pytestmark = pytest.mark.django_db


def order_body(account, **overrides):  # type: ignore[no-untyped-def]
    return {"account": account.pk, "symbol": "MES", "side": "buy", "quantity": 1, "type": "market", **overrides}


def test_post_bracket_with_tick_offsets_and_see_group_and_legs(alice_api, alice_account, commit):
    with commit():
        response = alice_api.post(
            "/api/v1/orders/",
            order_body(alice_account, quantity=2, stop_loss={"ticks": 8}, take_profit="5005.00"),
            format="json",
        )

    assert response.status_code == 201
    detail = alice_api.get(f"/api/v1/orders/{response.json()['id']}/").json()
    group = detail["group"]
    assert (group["kind"], group["status"], group["side"]) == ("bracket", "active", "long")
    assert (group["stop_loss_ticks"], group["take_profit_price"]) == (8, "5005.00")
    legs = {leg["role"]: leg for leg in group["legs"]}
    assert legs["entry"]["status"] == "filled"
    assert (legs["stop_loss"]["stop_price"], legs["stop_loss"]["quantity"], legs["stop_loss"]["status"]) == (
        "4998.00",
        2,
        "accepted",
    )
    assert legs["take_profit"]["limit_price"] == "5005.00"
    stop_at_venue = VenueOrder.objects.get(client_order_id=legs["stop_loss"]["client_order_id"])
    assert (stop_at_venue.stop_price, stop_at_venue.quantity) == (Decimal("4998.00"), 2)


@pytest.mark.parametrize(
    ("extra", "code", "field"),
    [
        ({"stop_loss": {"ticks": 0}}, "invalid_ticks", "stop_loss"),
        ({"stop_loss": {"ticks": "8"}}, "invalid_ticks", "stop_loss"),
        ({"stop_loss": {"points": 8}}, "invalid_ticks", "stop_loss"),
        ({"take_profit": "abc"}, "invalid_price", "take_profit"),
        ({"stop_loss": "5001.00"}, "bracket_wrong_side", "stop_loss"),
        ({"take_profit": "4990.10"}, "price_off_tick", "take_profit"),
        ({"stop_loss": {"ticks": 4}, "position_effect": "reduce"}, "bracket_entry_invalid", None),
    ],
)
def test_bad_bracket_input_is_refused_with_a_code_and_nothing_stored(alice_api, alice_account, extra, code, field):
    response = alice_api.post("/api/v1/orders/", order_body(alice_account, **extra), format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == code
    assert body.get("field") == field
    assert body["detail"]
    assert not Order.objects.exists() and not OrderGroup.objects.exists()


def test_patch_changes_a_working_order_after_the_broker_confirms(alice_api, alice_account, commit):
    with commit():
        created = alice_api.post(
            "/api/v1/orders/", order_body(alice_account, type="limit", limit_price="4990.00"), format="json"
        ).json()
    with commit():
        response = alice_api.patch(
            f"/api/v1/orders/{created['id']}/", {"limit_price": "4991.25", "quantity": 2}, format="json"
        )

    assert response.status_code == 202
    order = Order.objects.get(pk=created["id"])
    assert (order.limit_price, order.quantity, order.pending_change) == (Decimal("4991.25"), 2, {})
    venue_order = VenueOrder.objects.get(client_order_id=order.client_order_id)
    assert (venue_order.limit_price, venue_order.quantity) == (Decimal("4991.25"), 2)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "nothing_to_change"),
        ({"stop_price": "4980.00"}, "unexpected_price"),
        ({"limit_price": "4990.10"}, "price_off_tick"),
        ({"quantity": 0}, "invalid_quantity"),
        ({"limitPrice": "4991"}, "unknown_field"),
    ],
)
def test_patch_refuses_bad_changes(alice_api, alice_account, commit, body, code):
    with commit():
        created = alice_api.post(
            "/api/v1/orders/", order_body(alice_account, type="limit", limit_price="4990.00"), format="json"
        ).json()

    response = alice_api.patch(f"/api/v1/orders/{created['id']}/", body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert Order.objects.get(pk=created["id"]).limit_price == Decimal("4990.00")


def test_patch_a_filled_order_is_a_conflict(alice_api, alice_account, commit):
    with commit():
        created = alice_api.post("/api/v1/orders/", order_body(alice_account), format="json").json()

    response = alice_api.patch(f"/api/v1/orders/{created['id']}/", {"quantity": 3}, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "order_not_modifiable"


def test_nobody_changes_another_traders_order(alice_api, bob_api, alice_account, commit):
    with commit():
        created = alice_api.post(
            "/api/v1/orders/", order_body(alice_account, type="limit", limit_price="4990.00"), format="json"
        ).json()

    response = bob_api.patch(f"/api/v1/orders/{created['id']}/", {"limit_price": "4995.00"}, format="json")

    assert response.status_code == 404
    assert Order.objects.get(pk=created["id"]).pending_change == {}
    assert VenueOrder.objects.get(client_order_id=created["client_order_id"]).limit_price == Decimal("4990.00")


def test_side_conflict_is_409_with_a_sentence(alice_api, alice_account, commit):
    with commit():
        alice_api.post("/api/v1/orders/", order_body(alice_account, quantity=2), format="json")

    response = alice_api.post("/api/v1/orders/", order_body(alice_account, side="sell", quantity=3), format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "position_side_conflict"
    assert "reverse" in response.json()["detail"]
    assert Order.objects.count() == 1


def test_post_oco_pair(alice_api, alice_account, paper, commit):
    legs = [
        {"symbol": "MES", "side": "buy", "quantity": 1, "type": "stop", "stop_price": "5010.00"},
        {"symbol": "MES", "side": "sell", "quantity": 1, "type": "stop", "stop_price": "4990.00"},
    ]
    with commit():
        response = alice_api.post("/api/v1/orders/oco/", {"account": alice_account.pk, "legs": legs}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert (body["kind"], body["status"], len(body["legs"])) == ("oco", "active", 2)
    with commit():
        paper.price("MESZ6", "4990.00")

    statuses = dict(Order.objects.filter(group_id=body["id"]).values_list("side", "status"))
    assert statuses == {"buy": "canceled", "sell": "filled"}


@pytest.mark.parametrize(
    ("legs", "code"),
    [
        (
            [{"symbol": "MES", "side": "buy", "quantity": 1, "type": "stop", "stop_price": "5010.00"}],
            "oco_needs_two_legs",
        ),
        (
            [
                {"symbol": "MES", "side": "buy", "quantity": 1, "type": "stop", "stop_price": "5010.00"},
                {"symbol": "ES", "side": "sell", "quantity": 1, "type": "stop", "stop_price": "4990.00"},
            ],
            "oco_mixed_instruments",
        ),
    ],
)
def test_bad_oco_pairs_are_refused(alice_api, alice_account, legs, code):
    response = alice_api.post("/api/v1/orders/oco/", {"account": alice_account.pk, "legs": legs}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert not Order.objects.exists() and not OrderGroup.objects.exists()


def test_oco_on_another_traders_account_is_not_found(bob_api, alice_account):
    legs = [
        {"symbol": "MES", "side": "buy", "quantity": 1, "type": "stop", "stop_price": "5010.00"},
        {"symbol": "MES", "side": "sell", "quantity": 1, "type": "stop", "stop_price": "4990.00"},
    ]
    response = bob_api.post("/api/v1/orders/oco/", {"account": alice_account.pk, "legs": legs}, format="json")

    assert response.status_code == 404
    assert not Order.objects.exists()


def test_a_plan_sent_with_the_bracket_starts_when_the_entry_fills(alice_api, alice_account, paper, commit):
    from orders.models import PositionPlan

    body = order_body(
        alice_account, quantity=2, stop_loss={"ticks": 8}, plan={"breakeven_after_ticks": 8}, source="ticket"
    )
    with commit():
        response = alice_api.post("/api/v1/orders/", body, format="json")

    assert response.status_code == 201
    plan = PositionPlan.objects.get(account=alice_account)
    assert (plan.source, plan.side, plan.entry_price, plan.initial_stop_price) == (
        "ticket",
        "long",
        Decimal("5000.00"),
        Decimal("4998.00"),
    )
    assert (plan.breakeven_after_ticks, plan.initial_quantity) == (8, 2)
    assert [p["r"] for p in plan.partial_exits] == ["1.5", "2.5", "4"]  # the defaults
    with commit():
        paper.price("MESZ6", "5002.00")  # +8 ticks: breakeven
    stop = Order.objects.get(group_id=response.json()["group"], role="stop_loss")
    assert VenueOrder.objects.get(client_order_id=stop.client_order_id).stop_price == Decimal("5000.00")


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"plan": {}}, "plan_needs_stop"),  # no bracket stop to measure R from
        ({"stop_loss": {"ticks": 8}, "plan": {"partial_exits": [{"r": "1", "percent": 120}]}}, None),
        ({"stop_loss": {"ticks": 8}, "plan": {"bogus": 1}}, "unknown_field"),
    ],
)
def test_a_bad_plan_with_the_order_is_refused_and_nothing_stored(alice_api, alice_account, extra, code):
    response = alice_api.post("/api/v1/orders/", order_body(alice_account, **extra), format="json")

    assert response.status_code == 400
    assert response.json()["detail"]
    if code:
        assert response.json()["code"] == code
    assert not Order.objects.exists() and not OrderGroup.objects.exists()
