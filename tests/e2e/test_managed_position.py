"""End to end on the real stack with a scripted price path: a bracket entry, a scale-in, a plan,
a partial exit at 1.5R, the stop to breakeven, then a trailing stop that closes the rest.

Everything goes through the REST API and the paper market (POST /api/v1/sim/prices/); the worker
does the rest. Outcomes are read at the venue and in our books after each step.
"""

from collections.abc import Callable
from decimal import Decimal

import httpx
import pytest

from brokers.paper.models import VenueOrder
from orders.models import Order, PositionPlan
from tests.conftest import token_for
from tests.e2e.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
D = Decimal


def working_stop(account) -> VenueOrder | None:  # type: ignore[no-untyped-def]
    stop = Order.objects.filter(account=account, role="stop_loss").order_by("-pk").first()
    if stop is None:
        return None
    return VenueOrder.objects.filter(client_order_id=stop.client_order_id, status="working").first()


@pytest.mark.parametrize("side", ["long", "short"])
def test_entry_scale_in_partial_breakeven_and_trailing_exit(live_stack, world, side):
    account = world["accounts"]["alice"]
    api = httpx.Client(base_url=live_stack.base_url, headers={"Authorization": f"Token {token_for(world['alice'])}"})
    staff = httpx.Client(base_url=live_stack.base_url, headers={"Authorization": f"Token {token_for(world['staff'])}"})
    sign = 1 if side == "long" else -1
    entry_side = "buy" if side == "long" else "sell"

    def price(points: str) -> None:
        """Move MES to 5000 + points in the position's favour (negative: against it)."""
        answer = staff.post("/api/v1/sim/prices/", json={"symbol": "MES", "price": str(D("5000") + sign * D(points))})
        assert answer.status_code == 200, answer.text

    def held() -> int:
        open_positions = api.get("/api/v1/positions/", params={"account": account.pk}).json()["results"]
        return open_positions[0]["quantity"] if open_positions else 0

    def stop_is(quantity: int, points: str) -> Callable[[], bool]:
        def check() -> bool:
            stop = working_stop(account)
            expected = D("5000") + sign * D(points)
            return stop is not None and stop.quantity - stop.filled_quantity == quantity and stop.stop_price == expected

        return check

    price("0")
    # Entry: 2 contracts with a stop 8 ticks (2 points) away: R = 2 points.
    entry = api.post(
        "/api/v1/orders/",
        json={"account": account.pk, "symbol": "MES", "side": entry_side, "quantity": 2, "stop_loss": {"ticks": 8}},
    )
    assert entry.status_code == 201, entry.text
    wait_for(stop_is(2, "-2"), "the bracket's stop at the venue", live_stack.log_tail)

    # Scale-in: 2 more at the same price; the stop grows to 4.
    add = api.post("/api/v1/orders/", json={"account": account.pk, "symbol": "MES", "side": entry_side, "quantity": 2})
    assert add.status_code == 201, add.text
    wait_for(stop_is(4, "-2"), "the stop sized to the scale-in", live_stack.log_tail)
    assert abs(held()) == 4

    position_id = api.get("/api/v1/positions/", params={"account": account.pk}).json()["results"][0]["id"]
    plan = api.post(
        f"/api/v1/positions/{position_id}/plan/",
        json={
            "partial_exits": [{"r": "1.5", "percent": 50}],
            "breakeven_after_ticks": 8,
            "trail_after_ticks": 12,
            "trail_ticks": 4,
        },
    )
    assert plan.status_code == 201, plan.text
    assert (plan.json()["entry_price"], plan.json()["initial_stop_price"]) == ("5000.00", f"{D(5000) - sign * 2}.00")

    price("2")  # +1R: the stop goes to breakeven
    wait_for(stop_is(4, "0"), "the stop at breakeven", live_stack.log_tail)

    price("3")  # +1.5R: half goes; trailing starts 4 ticks behind
    wait_for(lambda: abs(held()) == 2, "the partial exit", live_stack.log_tail)
    wait_for(stop_is(2, "2"), "the stop sized to 2 and trailing 1 point behind", live_stack.log_tail)

    price("4")  # the trail follows
    wait_for(stop_is(2, "3"), "the trailing stop moved up", live_stack.log_tail)

    price("3")  # back through the trailing stop: the rest closes there
    wait_for(lambda: held() == 0, "the trailing stop to close the position", live_stack.log_tail)
    wait_for(
        lambda: PositionPlan.objects.get(account=account).status == "done", "the plan to finish", live_stack.log_tail
    )

    kinds = list(PositionPlan.objects.get(account=account).events.values_list("kind", flat=True))
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert {"breakeven", "partial_exit", "trail"} <= set(kinds)
    # Realized: 2 contracts at +3 points and 2 at +3 points (the trailing stop), $5 a point each.
    fills = api.get("/api/v1/fills/", params={"account": account.pk}).json()["results"]
    assert sum(D(f["realized_pnl"]) for f in fills) == D("60.00")
    assert not VenueOrder.objects.filter(account__ref=account.broker_account_id, status="working").exists()
