"""Automation rules through the order path at the paper venue (services, database)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count

import pytest
from django.utils import timezone

from brokers.bars import INTERVAL_SECONDS
from brokers.models import Bar
from brokers.paper.models import VenueOrder
from orders import services
from orders.domain import BracketSpec, Level, OrderIntent, OrderRole, OrderSide, OrderSource, OrderStatus, OrderType
from orders.models import Order, Position
from signals_in import automation, fanout
from signals_in.models import (
    AutomationRule,
    RuleDecision,
    Signal,
    SignalOutcome,
    SignalSource,
    SignalStatus,
    Strategy,
    Subscription,
)
from signals_in.rule_templates import RULE_TEMPLATES
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
D = Decimal
ids = count(1)


@pytest.fixture
def strategy(alice_account) -> Strategy:  # type: ignore[no-untyped-def]
    strategy = Strategy.objects.create(name="Rules strategy", owner=UserFactory())
    Subscription.objects.create(strategy=strategy, account=alice_account)
    return strategy


def rule_from(template: str, strategy: Strategy | None = None, **changes) -> AutomationRule:  # type: ignore[no-untyped-def]
    data = RULE_TEMPLATES[template]
    fields = {
        "name": f"{data['label']} {next(ids)}",
        "priority": data["priority"],
        "cooldown_seconds": data["cooldown_seconds"],
        "conditions": data["conditions"],
        "action": data["action"],
        "template": template,
        "strategy": strategy,
    }
    return AutomationRule.objects.create(**{**fields, **changes})


def signal(strategy: Strategy, action: str, instrument, **fields) -> Signal:  # type: ignore[no-untyped-def]
    n = next(ids)
    return Signal.objects.create(
        strategy=strategy,
        source=SignalSource.TRADINGVIEW,
        body_hash=f"hash-{n}",
        external_id=f"sig-{n}",
        received_at=timezone.now(),
        action=action,
        ticker=instrument.root,
        instrument=instrument,
        **fields,
    )


def position(account) -> int:  # type: ignore[no-untyped-def]
    held = Position.objects.filter(account=account).first()
    return held.quantity if held else 0


def test_buy_with_brackets_opens_with_both_legs_at_the_paper_venue(strategy, alice_account, paper, commit):
    rule = rule_from("buy_with_brackets", strategy)
    buy = signal(strategy, "buy", paper.mes)

    with commit():
        assert automation.handle_signal(buy) is True

    decision = RuleDecision.objects.get(signal=buy, account=alice_account)
    assert (decision.rule, decision.fired, decision.trigger) == (rule, True, "signal")
    entry = decision.order
    assert (entry.source, entry.side, entry.quantity, entry.status) == (
        OrderSource.AUTOMATION,
        "buy",
        1,
        OrderStatus.FILLED,
    )
    assert entry.client_order_id == services.client_order_id_for(
        scope="rule", key=f"{rule.pk}:{buy.pk}:{alice_account.pk}"
    )
    legs = {leg.role: leg for leg in Order.objects.filter(group_id=entry.group_id).exclude(pk=entry.pk)}
    stop = VenueOrder.objects.get(client_order_id=legs[OrderRole.STOP_LOSS].client_order_id)
    target = VenueOrder.objects.get(client_order_id=legs[OrderRole.TAKE_PROFIT].client_order_id)
    # Long from 5000.00: 20 ticks (5.00) below and 40 ticks (10.00) above.
    assert (stop.side, stop.order_type, stop.stop_price) == ("sell", "stop", D("4995.00"))
    assert (target.side, target.order_type, target.limit_price) == ("sell", "limit", D("5010.00"))
    assert position(alice_account) == 1
    assert decision.context["position"] == 0 and decision.action["stop_loss_ticks"] == 20


def test_a_redelivered_signal_places_nothing_twice(strategy, alice_account, paper, commit):
    rule_from("buy_with_brackets", strategy)
    buy = signal(strategy, "buy", paper.mes)
    with commit():
        automation.handle_signal(buy)
    with commit():
        automation.handle_signal(buy)

    assert Order.objects.filter(role=OrderRole.ENTRY).count() == 1
    assert RuleDecision.objects.filter(signal=buy).count() == 1


def test_cooldown_holds_the_second_signal(strategy, alice_account, paper, commit):
    rule = rule_from(
        "buy_with_brackets", strategy, conditions={"signal": {"action": "buy"}, "position": "any"}, cooldown_seconds=300
    )
    with commit():
        automation.handle_signal(signal(strategy, "buy", paper.mes))
    second = signal(strategy, "buy", paper.mes)
    with commit():
        automation.handle_signal(second)

    held = RuleDecision.objects.get(signal=second)
    assert (held.rule, held.fired, held.order) == (rule, False, None)
    assert "300 s cooldown" in held.reason
    assert position(alice_account) == 1
    assert Order.objects.filter(source=OrderSource.AUTOMATION, role=OrderRole.ENTRY).count() == 1


def test_close_all_flattens_the_signals_instrument(strategy, alice_account, paper, commit):
    rule = rule_from("sell_close_all", strategy)
    with commit():
        services.submit_order(
            account=alice_account,
            intent=OrderIntent(symbol="MES", side=OrderSide.BUY, quantity=3, order_type=OrderType.MARKET),
            source=OrderSource.API,
        )
    sell = signal(strategy, "sell", paper.mes)

    with commit():
        automation.handle_signal(sell)

    decision = RuleDecision.objects.get(signal=sell)
    assert (decision.rule, decision.fired) == (rule, True)
    assert (decision.order.side, decision.order.quantity, decision.order.status) == ("sell", 3, OrderStatus.FILLED)
    assert position(alice_account) == 0
    assert decision.context["position"] == 3


def test_a_signal_no_rule_takes_is_recorded_with_every_reason(strategy, alice_account, paper, commit):
    rule_from("buy_with_brackets", strategy)
    exit_signal = signal(strategy, "exit", paper.mes)

    with commit():
        assert automation.handle_signal(exit_signal) is True

    decision = RuleDecision.objects.get(signal=exit_signal)
    assert (decision.rule, decision.fired) == (None, False)
    assert "signal action is exit, the rule wants buy" in decision.reason
    assert not Order.objects.exists()


def test_a_strategy_without_rules_is_left_to_the_fan_out(strategy, paper):
    assert automation.handle_signal(signal(strategy, "buy", paper.mes)) is False
    assert not RuleDecision.objects.exists()


def test_listed_accounts_are_in_scope_and_other_strategies_rules_are_not(
    strategy, alice_account, bob_account, paper, commit
):
    other = Strategy.objects.create(name="Other", owner=UserFactory())
    rule_from("buy_with_brackets", other)  # another strategy's rule never runs on this signal
    listed = rule_from("buy_with_brackets", strategy)
    listed.accounts.add(bob_account)

    with commit():
        automation.handle_signal(signal(strategy, "buy", paper.mes))

    assert {d.account for d in RuleDecision.objects.filter(fired=True)} == {alice_account, bob_account}
    assert position(alice_account) == position(bob_account) == 1


# -- Market condition from stored bars -------------------------------------------------------------


def store_bars(instrument, closes: list[str], *, spread: str = "1.00") -> None:  # type: ignore[no-untyped-def]
    start = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=len(closes) + 1)
    Bar.objects.bulk_create(
        Bar(
            instrument=instrument,
            interval_seconds=INTERVAL_SECONDS,
            start=start + timedelta(minutes=i),
            open=D(close),
            high=D(close) + D(spread),
            low=D(close) - D(spread),
            close=D(close),
            ticks=10,
        )
        for i, close in enumerate(closes)
    )


BREAKOUT = {
    "signal": {"action": "buy"},
    "market": {"price_vs_atr_band": "above_upper", "atr_period": 5, "band_multiplier": "1", "bars": 20},
}


def test_an_atr_breakout_rule_fires_only_above_the_band(strategy, alice_account, paper, commit):
    # Bars 4999-5001 closing at 5000: ATR 2, band 4998-5002; the market is at 5000.00.
    store_bars(paper.mes, ["5000.00"] * 10)
    rule_from("buy_with_brackets", strategy, conditions=BREAKOUT)
    inside = signal(strategy, "buy", paper.mes)
    with commit():
        automation.handle_signal(inside)

    quiet = RuleDecision.objects.get(signal=inside)
    assert quiet.fired is False
    assert "price 5000.00 is inside the ATR band, the rule wants above_upper" in quiet.reason

    with commit():
        paper.price("MESZ6", "5002.25")
    breakout = signal(strategy, "buy", paper.mes)
    with commit():
        automation.handle_signal(breakout)

    fired = RuleDecision.objects.get(signal=breakout)
    assert fired.fired is True and fired.order.status == OrderStatus.FILLED
    band = fired.context["rules"][0]["atr_band"]
    assert (D(band["upper"]), D(band["atr"]), band["where"]) == (D("5002"), D("2"), "above_upper")


def test_atr_sizing_from_stored_bars(strategy, alice_account, paper, commit):
    # ATR 2 points; MES point value 5: a 2 ATR stop risks 20 a contract, 100 buys 5, stop 16 ticks.
    store_bars(paper.mes, ["5000.00"] * 10)
    conditions = {**BREAKOUT, "market": {**BREAKOUT["market"], "price_vs_atr_band": "inside"}}
    action = {"kind": "open", "side": "buy", "quantity": {"atr_risk": "100", "atr_stop_multiple": "2"}}
    rule_from("buy_with_brackets", strategy, conditions=conditions, action=action)

    with commit():
        automation.handle_signal(signal(strategy, "buy", paper.mes))

    entry = RuleDecision.objects.get(fired=True).order
    assert entry.quantity == 5
    stop = Order.objects.get(group_id=entry.group_id, role=OrderRole.STOP_LOSS)
    assert stop.stop_price == D("4996.00")


# -- The schedule -----------------------------------------------------------------------------------


def at(when: datetime, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Django's clock (services and auto_now fields alike) reads `when`."""
    monkeypatch.setattr(timezone, "now", lambda: when)


# Tuesday 2026-11-17, 15:56 Chicago (CST, UTC-6).
EOD = datetime(2026, 11, 17, 21, 56, tzinfo=UTC)


def test_eod_close_fires_once_in_its_window(alice_account, bob_account, paper, commit, monkeypatch):
    rule = rule_from("eod_close")
    rule.accounts.add(alice_account)  # bob is not in its scope
    for account in (alice_account, bob_account):
        with commit():
            services.submit_order(
                account=account,
                intent=OrderIntent(symbol="MES", side=OrderSide.SELL, quantity=2, order_type=OrderType.MARKET),
                source=OrderSource.API,
            )

    at(EOD - timedelta(minutes=2), monkeypatch)
    with commit():
        assert automation.run_scheduled_rules() == []  # 15:54: not yet
    at(EOD, monkeypatch)
    with commit():
        fired = automation.run_scheduled_rules()
    at(EOD + timedelta(seconds=30), monkeypatch)
    with commit():
        again = automation.run_scheduled_rules()

    assert [(d.rule, d.account, d.fired, d.trigger) for d in fired] == [(rule, alice_account, True, "schedule")]
    assert (fired[0].order.side, fired[0].order.quantity) == ("buy", 2)
    assert again == []
    assert (position(alice_account), position(bob_account)) == (0, -2)
    assert RuleDecision.objects.count() == 1

    at(EOD + timedelta(days=1), monkeypatch)  # the next trading day's window
    with commit():
        assert len(automation.run_scheduled_rules()) == 1


def test_the_fan_out_hands_a_ruled_strategys_signal_to_its_rules(strategy, alice_account, paper, commit):
    rule = rule_from("buy_with_brackets", strategy)
    buy = signal(strategy, "buy", paper.mes)

    with commit():
        fanout.process_signal(signal_id=buy.pk)

    buy.refresh_from_db()
    assert buy.status == SignalStatus.PROCESSED and buy.processed_at is not None
    assert not SignalOutcome.objects.filter(signal=buy).exists()  # the plain fan-out did not run
    decision = RuleDecision.objects.get(signal=buy, account=alice_account)
    assert (decision.rule, decision.fired) == (rule, True)
    assert position(alice_account) == 1


def test_profit_in_r_is_measured_from_the_positions_protective_stop(alice_account, paper, commit):
    with commit():
        services.submit_order(
            account=alice_account,
            intent=OrderIntent(symbol="MES", side=OrderSide.BUY, quantity=1, order_type=OrderType.MARKET),
            source=OrderSource.API,
            bracket=BracketSpec(stop_loss=Level(ticks=40)),  # 10 points below the 5000.00 fill
        )
    held = Position.objects.get(account=alice_account)

    assert automation.profit_in_r(position=held, last_price=D("5015.00")) == D("1.50")
    assert automation.profit_in_r(position=held, last_price=D("4995.00")) == D("-0.50")
