"""End to end on the real stack: a stored signal handed to the stack's workers fans out to every
subscribed account, filling at the paper venue; a reversal exits, waits for the fill, then enters."""

import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest
from django.utils import timezone

from accounts.services import open_trading_account
from brokers.adapters.paper import PaperBroker
from brokers.models import Instrument
from brokers.paper.models import VenueOrder
from orders.domain import OrderStatus
from orders.models import Order, Position
from signals_in.models import OutcomeStatus, Signal, SignalOutcome, SignalStatus, Strategy, Subscription
from signals_in.strategies import issue_webhook_token
from tests.conftest import token_for
from tests.e2e.test_reconciliation import stack_celery
from tests.factories import ContractLimitFactory, ProgramFactory

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


def test_a_duplicate_webhook_storm_gives_one_order_per_account_across_fifty_with_one_denied(live_stack, world):
    staff_api = httpx.Client(
        base_url=live_stack.base_url, headers={"Authorization": f"Token {token_for(world['staff'])}"}
    )
    assert staff_api.post("/api/v1/sim/prices/", json={"symbol": "MES", "price": "5000.25"}).status_code == 200
    connection = world["accounts"]["alice"].broker_connection
    strategy = Strategy.objects.create(name="E2E storm", owner=world["alice"])
    accounts = []
    for i in range(50):
        account = open_trading_account(
            name=f"Storm {i:02d}", program=ProgramFactory(), broker_connection=connection, broker_account_id=f"E2E-D{i}"
        )
        PaperBroker(connection).open_account(account_ref=account.broker_account_id, cash=account.starting_balance)
        Subscription.objects.create(strategy=strategy, account=account, fixed_quantity=2)
        accounts.append(account)
    denied_account = accounts[7]
    ContractLimitFactory(program=denied_account.program, root="MES", max_contracts=1)
    token = issue_webhook_token(strategy=strategy).raw
    # What a strategy alert's message gives once TradingView has filled its placeholders.
    body = '{"ticker": "MES1!", "action": "buy", "quantity": "1"}'

    # The same alert four times at once (TradingView resends, duplicate alerts): one signal.
    def deliver(_: int) -> httpx.Response:
        return httpx.post(
            f"{live_stack.base_url}/webhooks/tradingview/{token}/",
            content=body,
            headers={"Content-Type": "text/plain"},
            timeout=10,
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(deliver, range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    assert sorted(a.json()["duplicate"] for a in answers) == [False, True, True, True]
    assert len({a.json()["signal_id"] for a in answers}) == 1
    signal = Signal.objects.get(strategy=strategy)

    eventually(
        lambda: Signal.objects.get(pk=signal.pk).status == SignalStatus.PROCESSED,
        "the signal processed",
        live_stack.log_tail,
        timeout=90,
    )
    eventually(
        lambda: all(held(a) == 2 for a in accounts if a != denied_account), "49 accounts long 2", live_stack.log_tail
    )
    outcomes = {o.account_id: o for o in SignalOutcome.objects.filter(signal=signal).select_related("order")}
    assert len(outcomes) == 50
    denied = outcomes[denied_account.pk]
    assert (denied.status, denied.reason_code, denied.order.status) == (
        OutcomeStatus.DENIED,
        "max_contracts",
        OrderStatus.DENIED,
    )
    assert held(denied_account) == 0
    # One order per account at the venue, whatever the storm.
    client_ids = [o.order.client_order_id for o in outcomes.values() if o.account_id != denied_account.pk]
    assert VenueOrder.objects.filter(client_order_id__in=client_ids).count() == 49
    assert Order.objects.filter(account__in=accounts).count() == 50
