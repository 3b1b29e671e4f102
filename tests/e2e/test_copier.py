"""End to end on the real stack: alice's order through the REST API is copied to bob's account by
the stack's workers (ES mapped to MES, twice the size), and when bob's position is changed on the
venue's own side and reconciliation books it, the copier loop puts bob back in line."""

import time
from decimal import Decimal

import httpx
import pytest

from brokers.paper import venue
from orders.domain import OrderSide, OrderSource, OrderStatus
from orders.models import Order, Position
from orders.services import client_order_id_for
from signals_in.models import CopierLink, CopyAction, CopyActionKind
from tests.conftest import token_for
from tests.e2e.test_reconciliation import stack_celery

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def eventually(predicate, what: str, logs, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"Timed out waiting for {what}.\n{logs()}")


def held(account, symbol: str) -> int:  # type: ignore[no-untyped-def]
    position = Position.objects.filter(account=account, instrument__symbol=symbol).first()
    return position.quantity if position else 0


def test_leader_order_is_copied_and_a_drifted_follower_is_corrected(live_stack, world):
    leader, follower = world["accounts"]["alice"], world["accounts"]["bob"]
    link = CopierLink.objects.create(leader=leader, follower=follower, ratio=Decimal("2"), symbol_map={"ES": "MES"})
    staff_api = httpx.Client(
        base_url=live_stack.base_url, headers={"Authorization": f"Token {token_for(world['staff'])}"}
    )
    alice_api = httpx.Client(
        base_url=live_stack.base_url, headers={"Authorization": f"Token {token_for(world['alice'])}"}
    )
    for symbol in ("ES", "MES"):
        assert staff_api.post("/api/v1/sim/prices/", json={"symbol": symbol, "price": "5000.25"}).status_code == 200

    response = alice_api.post(
        "/api/v1/orders/", json={"account": leader.pk, "symbol": "ES", "side": "buy", "quantity": 1, "type": "market"}
    )
    assert response.status_code == 201, response.text

    # Copied: bob holds twice alice's ES, in MES, through one copier order.
    eventually(lambda: held(follower, "MESZ6") == 2, "bob's copied MES position", live_stack.log_tail)
    mirror = eventually(
        lambda: CopyAction.objects.filter(link=link, kind=CopyActionKind.MIRROR, slippage_ticks__isnull=False).first(),
        "the mirror with its slippage",
        live_stack.log_tail,
    )
    leader_fill = mirror.leader_fill
    assert leader_fill.order_id == response.json()["id"]
    assert mirror.order.client_order_id == client_order_id_for(scope="copy", key=f"{link.pk}:{leader_fill.pk}")
    assert (mirror.order.source, mirror.order.side, mirror.order.quantity) == (OrderSource.COPIER, OrderSide.BUY, 2)
    assert mirror.latency_ms is not None and mirror.slippage_ticks == Decimal("0.00")
    assert held(leader, "ESZ6") == 1

    # Drift: bob's MES is closed on the venue's side, unheard; reconciliation books it.
    venue.open_position_directly(account_ref="PAPER-E2E-B", symbol="MESZ6", quantity=0, avg_price=Decimal("0"))
    celery = stack_celery()
    celery.send_task("orders.tasks.reconcile_all_connections_task", kwargs={"trigger": "beat"})
    eventually(lambda: held(follower, "MESZ6") == 0, "reconciliation booking bob's flat MES", live_stack.log_tail)

    # The loop (as beat would run it) corrects bob back to where alice puts him.
    celery.send_task("signals_in.tasks.copier.check_all_followers_task")
    correction = eventually(
        lambda: CopyAction.objects.filter(link=link, kind=CopyActionKind.CORRECTION).first(),
        "the correction",
        live_stack.log_tail,
    )
    assert (correction.desired_quantity, correction.actual_quantity) == (2, 0)
    eventually(lambda: held(follower, "MESZ6") == 2, "bob back at +2 MES", live_stack.log_tail)
    correction.order.refresh_from_db()
    assert (correction.order.side, correction.order.quantity) == (OrderSide.BUY, 2)
    eventually(
        lambda: Order.objects.get(pk=correction.order.pk).status == OrderStatus.FILLED, "the fill", live_stack.log_tail
    )
    assert CopyAction.objects.filter(link=link, kind=CopyActionKind.CORRECTION).count() == 1
