"""process_signal on PostgreSQL and Redis with the paper venue: outcomes, our orders, the venue's orders."""

import threading
import uuid
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from brokers.models import Instrument
from brokers.paper import venue
from brokers.paper.models import VenueOrder
from orders import services as order_services
from orders.domain import OrderIntent, OrderSide, OrderSource, OrderStatus, OrderType
from orders.models import Order, OrderGroup, Position
from signals_in import fanout
from signals_in.models import OutcomeStatus, Signal, SignalOutcome, SignalStatus, Strategy, Subscription
from signals_in.tasks.fanout import expire_waiting_exits_task
from tests.factories import ContractLimitFactory, UserFactory

pytestmark = pytest.mark.django_db


# -- Signals-in test data (used by the API, admin and e2e tests too) --------------------------------


def make_strategy(owner=None, name: str | None = None) -> Strategy:  # type: ignore[no-untyped-def]
    return Strategy.objects.create(
        name=name or f"Strategy {uuid.uuid4().hex[:8]}",
        owner=owner or UserFactory(username=f"owner-{uuid.uuid4().hex[:6]}"),
    )


def subscribe(strategy: Strategy, account, **fields) -> Subscription:  # type: ignore[no-untyped-def]
    return Subscription.objects.create(strategy=strategy, account=account, **fields)


def make_signal(strategy: Strategy, *, symbol: str = "MESZ6", action: str = "buy", **fields) -> Signal:  # type: ignore[no-untyped-def]
    instrument = Instrument.objects.get(symbol=symbol) if symbol else None
    fields.setdefault("received_at", timezone.now())
    return Signal.objects.create(
        strategy=strategy,
        action=action,
        ticker=symbol,
        instrument=instrument,
        body_hash=uuid.uuid4().hex,
        **fields,
    )


def trade(account, side: str, quantity: int, symbol: str = "MES") -> Order:  # type: ignore[no-untyped-def]
    intent = OrderIntent(symbol=symbol, side=OrderSide(side), quantity=quantity, order_type=OrderType.MARKET)
    return order_services.submit_order(account=account, intent=intent, source=OrderSource.API).order


def held(account, symbol: str = "MESZ6") -> int:  # type: ignore[no-untyped-def]
    position = Position.objects.filter(account=account, instrument__symbol=symbol).first()
    return position.quantity if position else 0


@pytest.fixture
def strategy(alice) -> Strategy:  # type: ignore[no-untyped-def]
    return make_strategy(owner=alice, name="Trend")


@pytest.fixture
def account(paper, strategy):  # type: ignore[no-untyped-def]
    return paper.open_account("Follower 1", ref="PAPER-F1")


# -- Fan-out ----------------------------------------------------------------------------------------


def test_fanout_orders_on_fifty_accounts_when_one_is_denied_by_a_contract_limit(paper, strategy, commit, monkeypatch):
    monkeypatch.setattr(fanout, "FANOUT_CHUNK_SIZE", 20)  # settled in three chunks
    accounts = [paper.open_account(f"Follower {i:02d}", ref=f"PAPER-F{i:02d}") for i in range(50)]
    for a in accounts:
        subscribe(strategy, a, fixed_quantity=2)
    ContractLimitFactory(program=accounts[7].program, root="MES", max_contracts=1)
    signal = make_signal(strategy, action="buy", quantity=Decimal(1))

    with commit():
        fanout.process_signal(signal_id=signal.pk)

    outcomes = {o.account_id: o for o in SignalOutcome.objects.filter(signal=signal).select_related("order")}
    assert len(outcomes) == 50
    denied = outcomes[accounts[7].pk]
    assert (denied.status, denied.reason_code) == (OutcomeStatus.DENIED, "max_contracts")
    assert "At most 1 MES" in denied.reason
    assert denied.order.status == OrderStatus.DENIED
    ordered = [o for a, o in outcomes.items() if a != accounts[7].pk]
    assert {o.status for o in ordered} == {OutcomeStatus.ORDERED}
    assert all(o.order.status == OrderStatus.FILLED and o.quantity == 2 for o in ordered)
    assert all(o.latency_ms is not None for o in ordered)
    assert {o.order.source for o in ordered} == {OrderSource.WEBHOOK}
    # Each at the venue once, with the deterministic client id of (signal, subscription, entry).
    subs = {s.account_id: s for s in Subscription.objects.filter(strategy=strategy)}
    for account_id, outcome in outcomes.items():
        assert outcome.order.client_order_id == fanout.signal_client_order_id(
            signal_id=signal.pk, subscription_id=subs[account_id].pk, account_id=account_id, leg="entry"
        )
    assert VenueOrder.objects.filter(client_order_id__in=[o.order.client_order_id for o in ordered]).count() == 49
    assert held(accounts[0]) == 2 and held(accounts[7]) == 0
    signal.refresh_from_db()
    assert signal.status == SignalStatus.PROCESSED and signal.processed_at is not None


def test_process_signal_twice_places_nothing_twice(account, strategy, commit):
    subscribe(strategy, account)
    signal = make_signal(strategy)
    with commit():
        fanout.process_signal(signal_id=signal.pk)
    Signal.objects.filter(pk=signal.pk).update(status=SignalStatus.RECEIVED)  # as if the task ran again
    with commit():
        fanout.process_signal(signal_id=signal.pk)

    assert Order.objects.filter(account=account).count() == 1
    assert VenueOrder.objects.count() == 1
    assert held(account) == 1


def test_signal_not_received_does_nothing(account, strategy, commit):
    subscribe(strategy, account)
    signal = make_signal(strategy, status=SignalStatus.REJECTED)
    with commit():
        fanout.process_signal(signal_id=signal.pk)
    assert not SignalOutcome.objects.exists() and not Order.objects.exists()


def test_disabled_subscriptions_get_no_outcome(paper, account, strategy, commit):
    other = paper.open_account("Follower 2", ref="PAPER-F2")
    subscribe(strategy, account)
    subscribe(strategy, other, is_enabled=False)
    signal = make_signal(strategy)
    with commit():
        fanout.process_signal(signal_id=signal.pk)
    assert list(SignalOutcome.objects.values_list("account_id", flat=True)) == [account.pk]


def test_symbol_map_trades_the_same_expiry_micro(paper, account, strategy, commit):
    with commit():
        paper.price("NQZ6", "20000.00")
        paper.price("MNQZ6", "20000.00")
    subscribe(strategy, account, symbol_map={"NQ": "MNQ"}, fixed_quantity=3)
    signal = make_signal(strategy, symbol="NQZ6", action="sell")
    with commit():
        fanout.process_signal(signal_id=signal.pk)

    outcome = SignalOutcome.objects.get(signal=signal)
    assert outcome.instrument.symbol == "MNQZ6"
    assert (outcome.order.instrument.symbol, outcome.order.side, outcome.order.quantity) == ("MNQZ6", "sell", 3)
    assert held(account, "MNQZ6") == -3 and held(account, "NQZ6") == 0


def test_unmapped_root_without_contract_is_skipped(account, strategy, commit):
    subscribe(strategy, account, symbol_map={"MES": "XYZ"})
    signal = make_signal(strategy)
    with commit():
        fanout.process_signal(signal_id=signal.pk)
    outcome = SignalOutcome.objects.get(signal=signal)
    assert (outcome.status, outcome.reason_code) == (OutcomeStatus.SKIPPED, "no_mapped_instrument")


def test_outside_trading_window_skips_entries_but_exits_pass(account, strategy, commit):
    closed_now = (timezone.now() + timezone.timedelta(hours=3)).astimezone(timezone.get_default_timezone())
    window = {
        "start": closed_now.strftime("%H:%M"),
        "end": (closed_now + timezone.timedelta(minutes=1)).strftime("%H:%M"),
        "tz": "UTC",
    }
    subscribe(strategy, account, trading_windows=[window])
    entry = make_signal(strategy, action="buy")
    with commit():
        fanout.process_signal(signal_id=entry.pk)
    assert SignalOutcome.objects.get(signal=entry).reason_code == "outside_window"
    with commit():
        trade(account, "buy", 2)
    exit_signal = make_signal(strategy, action="exit")
    with commit():
        fanout.process_signal(signal_id=exit_signal.pk)
    assert SignalOutcome.objects.get(signal=exit_signal).status == OutcomeStatus.ORDERED
    assert held(account) == 0


# -- What a signal does given the position ------------------------------------------------------


def test_reversal_exits_then_enters_when_the_exit_fills(account, strategy, commit):
    subscribe(strategy, account, fixed_quantity=2)
    with commit():
        trade(account, "sell", 3)
    signal = make_signal(strategy, action="buy")

    with commit():
        fanout.process_signal(signal_id=signal.pk)

    outcome = SignalOutcome.objects.select_related("order", "exit_order").get(signal=signal)
    assert outcome.status == OutcomeStatus.ORDERED and outcome.reason_code == "reversed"
    assert (outcome.exit_order.side, outcome.exit_order.quantity, outcome.exit_order.status) == ("buy", 3, "filled")
    assert (outcome.order.side, outcome.order.quantity, outcome.order.status) == ("buy", 2, "filled")
    assert outcome.exit_order.position_effect == "reduce"
    assert held(account) == 2


def test_reversal_waits_while_the_exit_is_not_filled_and_fails_after_the_timeout(account, strategy, commit):
    subscribe(strategy, account)
    with commit():
        trade(account, "sell", 2)
    venue.inject_fault("lose_events")  # the venue's report of the exit's fill never arrives
    signal = make_signal(strategy, action="buy")
    with commit():
        fanout.process_signal(signal_id=signal.pk)

    outcome = SignalOutcome.objects.get(signal=signal)
    assert outcome.status == OutcomeStatus.WAITING_EXIT and outcome.order is None
    assert outcome.exit_order.status == OrderStatus.ACCEPTED
    signal.refresh_from_db()
    assert signal.status == SignalStatus.PROCESSED  # waiting counts as settled for the signal

    assert fanout.expire_waiting_exits(now=timezone.now()) == []
    assert SignalOutcome.objects.get(pk=outcome.pk).status == OutcomeStatus.WAITING_EXIT
    fanout.expire_waiting_exits(now=timezone.now() + fanout.EXIT_FILL_TIMEOUT + timezone.timedelta(seconds=1))
    outcome.refresh_from_db()
    assert (outcome.status, outcome.reason_code, outcome.order) == (OutcomeStatus.FAILED, "exit_not_filled", None)
    assert outcome.exit_order.status == OrderStatus.ACCEPTED  # the exit stays (reconciliation's job)
    assert held(account) == -2


def test_reversal_whose_exit_is_rejected_fails_at_the_next_check(account, strategy, commit):
    subscribe(strategy, account)
    with commit():
        trade(account, "sell", 1)
    venue.inject_fault("reject_next_order")
    signal = make_signal(strategy, action="buy")
    with commit():
        fanout.process_signal(signal_id=signal.pk)
    assert SignalOutcome.objects.get(signal=signal).exit_order.status == OrderStatus.REJECTED
    fanout.expire_waiting_exits()
    outcome = SignalOutcome.objects.get(signal=signal)
    assert (outcome.status, outcome.reason_code, outcome.order) == (OutcomeStatus.FAILED, "exit_not_filled", None)
    assert held(account) == -1


def test_reversal_not_allowed_exits_only(account, strategy, commit):
    subscribe(strategy, account, allow_reversals=False)
    with commit():
        trade(account, "buy", 2)
    signal = make_signal(strategy, action="sell")
    with commit():
        fanout.process_signal(signal_id=signal.pk)
    outcome = SignalOutcome.objects.get(signal=signal)
    assert (outcome.status, outcome.reason_code, outcome.order) == (OutcomeStatus.ORDERED, "reversal_not_allowed", None)
    assert held(account) == 0


def test_buy_while_long_is_skipped_unless_adds_are_allowed(paper, account, strategy, commit):
    adder = paper.open_account("Adder", ref="PAPER-ADD")
    subscribe(strategy, account)
    subscribe(strategy, adder, allow_adds=True)
    with commit():
        trade(account, "buy", 1)
        trade(adder, "buy", 1)
    signal = make_signal(strategy, action="buy")
    with commit():
        fanout.process_signal(signal_id=signal.pk)
    outcomes = {o.account_id: o for o in SignalOutcome.objects.filter(signal=signal)}
    assert (outcomes[account.pk].status, outcomes[account.pk].reason_code) == (OutcomeStatus.SKIPPED, "already_long")
    assert outcomes[adder.pk].status == OutcomeStatus.ORDERED
    assert (held(account), held(adder)) == (1, 2)


def test_exit_closes_fully_and_partial_exit_by_quantity(paper, account, strategy, commit):
    partial = paper.open_account("Partial", ref="PAPER-PART")
    subscribe(strategy, account)
    subscribe(strategy, partial, sizing_mode="multiplier", multiplier=Decimal("2"))
    with commit():
        trade(account, "buy", 3)
        trade(partial, "buy", 6)
    full = make_signal(strategy, action="exit")
    with commit():
        fanout.process_signal(signal_id=full.pk)
    assert held(account) == 0 and held(partial) == 0

    with commit():
        trade(account, "sell", 3)
        trade(partial, "sell", 6)
    some = make_signal(strategy, action="exit", quantity=Decimal(1))
    with commit():
        fanout.process_signal(signal_id=some.pk)
    assert held(account) == -2  # the signal's 1 contract
    assert held(partial) == -4  # 1 x the multiplier 2
    exit_order = SignalOutcome.objects.get(signal=some, account=partial).exit_order
    assert (exit_order.side, exit_order.quantity, exit_order.source) == ("buy", 2, OrderSource.WEBHOOK)


def test_sentiment_flat_exits_fully_and_never_reverses(account, strategy, commit):
    subscribe(strategy, account)
    with commit():
        trade(account, "buy", 2)
    signal = make_signal(strategy, action="sell", sentiment="flat", quantity=Decimal(1))
    with commit():
        fanout.process_signal(signal_id=signal.pk)
    assert held(account) == 0
    assert SignalOutcome.objects.get(signal=signal).order is None


def test_add_scales_in_and_needs_a_position(paper, account, strategy, commit):
    flat = paper.open_account("Flat", ref="PAPER-FLAT")
    subscribe(strategy, account, fixed_quantity=2)
    subscribe(strategy, flat)
    with commit():
        trade(account, "sell", 1)
    signal = make_signal(strategy, action="add")
    with commit():
        fanout.process_signal(signal_id=signal.pk)
    outcomes = {o.account_id: o for o in SignalOutcome.objects.filter(signal=signal)}
    assert outcomes[account.pk].status == OutcomeStatus.ORDERED and held(account) == -3
    assert (outcomes[flat.pk].status, outcomes[flat.pk].reason_code) == (OutcomeStatus.SKIPPED, "no_position_to_add")


def test_cancel_cancels_working_orders_of_the_instrument(account, strategy, commit):
    subscribe(strategy, account)
    with commit():
        limit = order_services.submit_order(
            account=account,
            intent=OrderIntent(
                symbol="MES", side=OrderSide.BUY, quantity=1, order_type=OrderType.LIMIT, limit_price=Decimal("4900")
            ),
            source=OrderSource.API,
        ).order
    assert Order.objects.get(pk=limit.pk).status == OrderStatus.ACCEPTED
    signal = make_signal(strategy, action="cancel")
    with commit():
        fanout.process_signal(signal_id=signal.pk)
    assert Order.objects.get(pk=limit.pk).status == OrderStatus.CANCELED
    assert SignalOutcome.objects.get(signal=signal).reason_code == "cancel_requested"


def test_entry_with_stop_loss_and_take_profit_goes_out_as_a_bracket(account, strategy, commit):
    subscribe(strategy, account, sizing_mode="risk", risk_amount=Decimal("100"))
    # Stop 5 points (20 ticks) below: $25 per contract on MES, so $100 risks 4 contracts.
    signal = make_signal(
        strategy,
        action="buy",
        signal_price=Decimal("5000.10"),
        payload={"stop_loss": {"amount": "5"}, "take_profit": {"price": "5040.1"}},
    )
    with commit():
        fanout.process_signal(signal_id=signal.pk)
    outcome = SignalOutcome.objects.select_related("order").get(signal=signal)
    assert outcome.quantity == 4 and outcome.order.status == OrderStatus.FILLED
    group = OrderGroup.objects.get(pk=outcome.order.group_id)
    legs = {o.role: o for o in Order.objects.filter(group=group)}
    assert legs["stop_loss"].stop_price == Decimal("4995.00")  # 20 ticks below the 5000.00 fill
    assert legs["take_profit"].limit_price == Decimal("5040.00")  # on the grid
    assert group.stop_loss_ticks == 20


def test_risk_sizing_without_a_stop_is_skipped(account, strategy, commit):
    subscribe(strategy, account, sizing_mode="risk", risk_amount=Decimal("100"))
    signal = make_signal(strategy, action="buy")
    with commit():
        fanout.process_signal(signal_id=signal.pk)
    outcome = SignalOutcome.objects.get(signal=signal)
    assert (outcome.status, outcome.reason_code) == (OutcomeStatus.SKIPPED, "no_stop")


def test_one_account_error_is_failed_and_the_others_order(paper, account, strategy, commit, monkeypatch):
    broken = paper.open_account("Broken", ref="PAPER-BRK")
    subscribe(strategy, account)
    subscribe(strategy, broken)
    real = order_services.submit_orders

    def flaky(requests, **kwargs):  # type: ignore[no-untyped-def]
        if any(request.account.pk == broken.pk for request in requests):
            raise RuntimeError("boom")  # breaks the chunk: its accounts are settled one by one
        return real(requests, **kwargs)

    monkeypatch.setattr(order_services, "submit_orders", flaky)
    signal = make_signal(strategy)
    with commit():
        fanout.process_signal(signal_id=signal.pk)
    outcomes = {o.account_id: o for o in SignalOutcome.objects.filter(signal=signal)}
    assert outcomes[account.pk].status == OutcomeStatus.ORDERED
    assert (outcomes[broken.pk].status, outcomes[broken.pk].reason_code) == (OutcomeStatus.FAILED, "unexpected_error")
    signal.refresh_from_db()
    assert (signal.status, signal.reject_code) == (SignalStatus.FAILED, "accounts_failed")

    # Processed again: the failed account gets its order, the other keeps its one order.
    monkeypatch.setattr(order_services, "submit_orders", real)
    with commit():
        fanout.reprocess_signal(signal_id=signal.pk)
    assert SignalOutcome.objects.get(signal=signal, account=broken).status == OutcomeStatus.ORDERED
    assert Order.objects.filter(account=account).count() == 1 and held(broken) == 1
    signal.refresh_from_db()
    assert signal.status == SignalStatus.PROCESSED


def test_expire_task_places_a_lost_entry_of_a_filled_exit(account, strategy, commit, monkeypatch):
    subscribe(strategy, account)
    with commit():
        trade(account, "sell", 1)
    monkeypatch.setattr("signals_in.tasks.fanout.fills_booked", lambda **kwargs: None)
    monkeypatch.setattr("signals_in.selectors.reversals_ready", lambda **kwargs: [])  # the listener's task is lost
    signal = make_signal(strategy, action="buy")
    with commit():
        fanout.process_signal(signal_id=signal.pk)
    assert SignalOutcome.objects.get(signal=signal).status == OutcomeStatus.WAITING_EXIT
    with commit():
        expire_waiting_exits_task()
    assert SignalOutcome.objects.get(signal=signal).status == OutcomeStatus.ORDERED
    assert held(account) == 1


# -- Concurrency ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_four_concurrent_runs_give_one_order_per_account(paper, strategy):
    accounts = [paper.open_account(f"Racer {i}", ref=f"PAPER-R{i}") for i in range(5)]
    for a in accounts:
        subscribe(strategy, a)
    signal = make_signal(strategy)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            fanout.process_signal(signal_id=signal.pk)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert SignalOutcome.objects.filter(signal=signal).count() == 5
    for a in accounts:
        assert Order.objects.filter(account=a).count() == 1
        assert held(a) == 1
    assert VenueOrder.objects.count() == 5


def test_limit_entry_price_goes_on_the_tick_grid_and_confidence_scales_the_size(account, strategy, commit):
    subscribe(strategy, account, fixed_quantity=10)
    signal = make_signal(
        strategy,
        action="buy",
        order_type="limit",
        limit_price=Decimal("4990.1"),
        confidence=Decimal("0.45"),
        payload={"size_by_confidence": True},
    )
    with commit():
        fanout.process_signal(signal_id=signal.pk)
    order = SignalOutcome.objects.get(signal=signal).order
    assert (order.order_type, order.limit_price, order.quantity) == ("limit", Decimal("4990.00"), 4)
    assert order.status == OrderStatus.ACCEPTED  # resting below the market at the venue
    assert VenueOrder.objects.get(client_order_id=order.client_order_id).limit_price == Decimal("4990.00")


def test_bad_bracket_in_the_payload_fails_that_signal_with_a_code(account, strategy, commit):
    subscribe(strategy, account)
    signal = make_signal(strategy, action="buy", payload={"stop_loss": {"points": 3}})
    with commit():
        fanout.process_signal(signal_id=signal.pk)
    outcome = SignalOutcome.objects.get(signal=signal)
    assert (outcome.status, outcome.reason_code) == (OutcomeStatus.FAILED, "invalid_bracket")
    assert "stop_loss" in outcome.reason and not Order.objects.exists()
