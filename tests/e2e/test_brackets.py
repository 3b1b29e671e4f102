"""End to end on the real stack (daphne, a Celery worker, Redis): a bracket's legs go out when
its entry fills and its stop closes the position; an OCO pair touched in one move fills once."""

import time
from decimal import Decimal

import httpx
import pytest

from brokers.paper.models import VenueOrder
from orders.models import Order, OrderGroup, Position
from tests.conftest import token_for
from tests.e2e.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def clients(live_stack, world) -> tuple[httpx.Client, httpx.Client]:  # type: ignore[no-untyped-def]
    def client(user) -> httpx.Client:  # type: ignore[no-untyped-def]
        return httpx.Client(base_url=live_stack.base_url, headers={"Authorization": f"Token {token_for(user)}"})

    return client(world["alice"]), client(world["staff"])


def test_bracket_entry_fills_legs_go_out_and_the_stop_closes_the_position(live_stack, world):
    account = world["accounts"]["alice"]
    api, staff_api = clients(live_stack, world)
    assert staff_api.post("/api/v1/sim/prices/", json={"symbol": "MES", "price": "5000.00"}).status_code == 200

    created = api.post(
        "/api/v1/orders/",
        json={
            "account": account.pk,
            "symbol": "MES",
            "side": "buy",
            "quantity": 2,
            "type": "market",
            "stop_loss": {"ticks": 8},
            "take_profit": {"ticks": 16},
        },
    )
    assert created.status_code == 201, created.text
    group_id = created.json()["group"]

    def legs_working() -> bool:
        return VenueOrder.objects.filter(oco_group=f"pd-g{group_id}", status="working").count() == 2

    wait_for(legs_working, "both legs working at the venue", live_stack.log_tail)
    stop = Order.objects.get(group_id=group_id, role="stop_loss")
    assert (stop.quantity, stop.stop_price) == (2, Decimal("4998.00"))

    assert staff_api.post("/api/v1/sim/prices/", json={"symbol": "MES", "price": "4997.75"}).status_code == 200

    def flat_and_done() -> bool:
        position = Position.objects.filter(account=account).first()
        return (
            position is not None and position.quantity == 0 and (OrderGroup.objects.get(pk=group_id).status == "done")
        )

    wait_for(flat_and_done, "the stop to close the position", live_stack.log_tail)
    detail = api.get(f"/api/v1/orders/{created.json()['id']}/").json()
    statuses = {leg["role"]: leg["status"] for leg in detail["group"]["legs"]}
    assert statuses == {"entry": "filled", "stop_loss": "filled", "take_profit": "canceled"}
    assert not VenueOrder.objects.filter(account__ref=account.broker_account_id, status="working").exists()


def test_oco_pair_touched_in_one_move_fills_exactly_one(live_stack, world):
    account = world["accounts"]["alice"]
    api, staff_api = clients(live_stack, world)
    assert staff_api.post("/api/v1/sim/prices/", json={"symbol": "MES", "price": "5000.00"}).status_code == 200
    legs = [
        {"symbol": "MES", "side": "buy", "quantity": 1, "type": "stop", "stop_price": "5005.00"},
        {"symbol": "MES", "side": "sell", "quantity": 1, "type": "limit", "limit_price": "5008.00"},
    ]
    created = api.post("/api/v1/orders/oco/", json={"account": account.pk, "legs": legs})
    assert created.status_code == 201, created.text
    group_id = created.json()["id"]
    wait_for(
        lambda: VenueOrder.objects.filter(oco_group=f"pd-g{group_id}", status="working").count() == 2,
        "both legs at the venue",
        live_stack.log_tail,
    )

    assert staff_api.post("/api/v1/sim/prices/", json={"symbol": "MES", "price": "5010.00"}).status_code == 200

    def settled() -> bool:
        return set(Order.objects.filter(group_id=group_id).values_list("status", flat=True)) == {"filled", "canceled"}

    wait_for(settled, "one leg filled, the other cancelled", live_stack.log_tail)
    at_venue = sorted(VenueOrder.objects.filter(oco_group=f"pd-g{group_id}").values_list("status", flat=True))
    assert at_venue == ["canceled", "filled"]
    time.sleep(0.5)  # nothing more happens later
    filled = Order.objects.get(group_id=group_id, status="filled")
    assert Position.objects.get(account=account).quantity == (1 if filled.side == "buy" else -1)
    assert OrderGroup.objects.get(pk=group_id).status == "done"
