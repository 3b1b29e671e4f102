"""End to end on the real stack: a stored signal handed to the stack's workers fans out to every
subscribed account, filling at the paper venue; a reversal exits, waits for the fill, then enters."""

import time
from decimal import Decimal

import httpx
import pytest
from django.utils import timezone

from accounts.services import open_trading_account
from brokers.adapters.paper import PaperBroker
from brokers.models import Instrument
from orders.domain import OrderStatus
from orders.models import Position
from signals_in.models import OutcomeStatus, Signal, SignalOutcome, SignalStatus, Strategy, Subscription
from tests.conftest import token_for
from tests.e2e.test_reconciliation import stack_celery
from tests.factories import ProgramFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def eventually(predicate, what: str, logs, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"Timed out waiting for {what}.\n{logs()}")


def held(account, symbol: str = "MESZ6") -> int:  # type: ignore[no-untyped-def]
    position = Position.objects.filter(account=account, instrument__symbol=symbol).first()
    return position.quantity if position else 0


def send_signal(strategy: Strategy, action: str, **fields) -> Signal:  # type: ignore[no-untyped-def]
    """A signal as the intake stores it, handed to the stack's workers as its on-commit enqueue would."""
    signal = Signal.objects.create(
        strategy=strategy,
        action=action,
        ticker="MES1!",
        instrument=Instrument.objects.get(symbol="MESZ6"),
        body_hash=f"e2e-{time.monotonic_ns()}",
        received_at=timezone.now(),
        **fields,
    )
    stack_celery().send_task("signals_in.tasks.fanout.process_signal_task", args=[signal.pk], queue="orders")
    return signal


def test_signal_fans_out_to_every_account_and_a_reversal_enters_after_its_exit_fills(live_stack, world):
    staff_api = httpx.Client(
        base_url=live_stack.base_url, headers={"Authorization": f"Token {token_for(world['staff'])}"}
    )
    assert staff_api.post("/api/v1/sim/prices/", json={"symbol": "MES", "price": "5000.25"}).status_code == 200
    connection = world["accounts"]["alice"].broker_connection
    accounts = list(world["accounts"].values())
    for i in range(3):
        account = open_trading_account(
            name=f"Follower {i}", program=ProgramFactory(), broker_connection=connection, broker_account_id=f"E2E-S{i}"
        )
        PaperBroker(connection).open_account(account_ref=account.broker_account_id, cash=account.starting_balance)
        accounts.append(account)
    strategy = Strategy.objects.create(name="E2E trend", owner=world["alice"])
    for i, account in enumerate(accounts):
        Subscription.objects.create(strategy=strategy, account=account, fixed_quantity=i + 1)

    # A buy to five accounts: each fills its own size at the venue.
    entry = send_signal(strategy, "buy", quantity=Decimal(1))
    eventually(
        lambda: all(held(a) == i + 1 for i, a in enumerate(accounts)),
        "every account long its size",
        live_stack.log_tail,
    )
    outcomes = list(SignalOutcome.objects.filter(signal=entry).select_related("order"))
    assert len(outcomes) == 5
    assert {(o.status, o.order.status) for o in outcomes} == {(OutcomeStatus.ORDERED, OrderStatus.FILLED)}
    assert Signal.objects.get(pk=entry.pk).status == SignalStatus.PROCESSED

    # A sell while long reverses: exit all, then (after the exit's fill) enter short.
    reversal = send_signal(strategy, "sell", quantity=Decimal(1))
    eventually(
        lambda: all(held(a) == -(i + 1) for i, a in enumerate(accounts)), "every account short", live_stack.log_tail
    )
    eventually(
        lambda: all(o.status == OutcomeStatus.ORDERED for o in SignalOutcome.objects.filter(signal=reversal)),
        "every reversal ordered",
        live_stack.log_tail,
    )
    outcomes = list(SignalOutcome.objects.filter(signal=reversal).select_related("order", "exit_order"))
    for outcome in outcomes:
        assert outcome.exit_order.status == OrderStatus.FILLED
        assert outcome.order.created_at >= outcome.exit_order.updated_at  # the entry went out after the exit filled

    # What alice sees through the API: her strategy's signal with every account she can see.
    alice_api = httpx.Client(
        base_url=live_stack.base_url, headers={"Authorization": f"Token {token_for(world['alice'])}"}
    )
    detail = alice_api.get(f"/api/v1/signals/{reversal.pk}/").json()
    assert [o["account"] for o in detail["outcomes"]] == [world["accounts"]["alice"].pk]
    assert detail["outcomes"][0]["exit_order"]["status"] == "filled"
