"""Automation rules: the schema and the evaluation (pure, no database)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokers.indicators import OHLC
from signals_in.rule_templates import RULE_TEMPLATES
from signals_in.rules import (
    AtrSize,
    Facts,
    InvalidRule,
    Order,
    Rule,
    SignalFacts,
    evaluate,
    parse_rule,
)

D = Decimal
# Tuesday 2026-11-17 10:00 Chicago (16:00 UTC).
TUESDAY_10 = datetime(2026, 11, 17, 16, 0, tzinfo=UTC)


def rule(rule_id: int, conditions: dict, action: dict, *, priority: int = 100, cooldown: int = 0) -> Rule:
    return Rule(rule_id, f"rule {rule_id}", priority, cooldown, parse_rule(conditions, action))


def facts(**overrides) -> Facts:  # type: ignore[no-untyped-def]
    values = {
        "now": TUESDAY_10,
        "trigger": "signal",
        "signal": SignalFacts(action="buy", root="MNQ", confidence=D("0.8")),
        "tick_size": D("0.25"),
        "point_value": D("2"),
        "last_price": D("20000"),
    }
    return Facts(**{**values, **overrides})


BUY_WITH_BRACKETS = {"kind": "open", "side": "buy", "quantity": 2, "stop_loss_ticks": 8, "take_profit_ticks": 16}


# -- Schema ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(RULE_TEMPLATES))
def test_every_template_is_a_valid_rule(key):
    template = RULE_TEMPLATES[key]
    assert parse_rule(template["conditions"], template["action"]).action.kind in {
        "open",
        "close_all",
        "scale_in",
        "eod_close",
    }


def test_a_full_rule_is_read_into_its_parts():
    definition = parse_rule(
        {
            "signal": {"action": "BUY", "ticker_root": "mnq", "min_confidence": "0.6"},
            "position": "flat",
            "time_window": {"start": "08:30", "end": "15:00", "tz": "America/Chicago", "days": [0, 1, 2, 3, 4]},
            "market": {"price_vs_atr_band": "above_upper", "atr_period": 14, "band_multiplier": 1.5, "bars": 60},
        },
        {"kind": "open", "side": "signal", "quantity": {"atr_risk": "200", "atr_stop_multiple": 1.5}},
    )

    assert definition.trigger == "signal"
    assert definition.conditions.signal.action == "buy" and definition.conditions.signal.ticker_root == "MNQ"
    assert definition.conditions.market.band_multiplier == D("1.5")
    assert definition.action.quantity == AtrSize(atr_risk=D("200"), atr_stop_multiple=D("1.5"))


@pytest.mark.parametrize(
    ("conditions", "action", "field", "code"),
    [
        ({}, {"kind": "explode"}, "action.kind", "invalid_choice"),
        ({}, {"kind": "open", "side": "buy"}, "action.quantity", "invalid_integer"),
        ({}, {"kind": "open", "side": "buy", "quantity": 0}, "action.quantity", "invalid_integer"),
        ({}, {"kind": "open", "side": "buy", "quantity": True}, "action.quantity", "invalid_integer"),
        ({}, {"kind": "open", "quantity": 1}, "action.side", "needs_signal"),
        ({"position": "sideways"}, {"kind": "close_all"}, "conditions.position", "invalid_choice"),
        ({"colour": "red"}, {"kind": "close_all"}, "conditions.colour", "unknown_field"),
        ({}, {"kind": "close_all", "quantity": 1}, "action.quantity", "not_allowed"),
        ({}, {"kind": "eod_close"}, "conditions.time_window", "required"),
        (
            {"time_window": {"start": "25:00", "end": "16:00"}},
            {"kind": "eod_close"},
            "conditions.time_window.start",
            "invalid_time",
        ),
        (
            {"time_window": {"start": "15:55", "end": "16:00", "tz": "Mars/Olympus"}},
            {"kind": "eod_close"},
            "conditions.time_window.tz",
            "unknown_time_zone",
        ),
        (
            {"time_window": {"start": "15:55", "end": "16:00", "days": [7]}},
            {"kind": "eod_close"},
            "conditions.time_window.days",
            "invalid_days",
        ),
        ({"signal": {"min_confidence": 2}}, {"kind": "close_all"}, "conditions.signal.min_confidence", "out_of_range"),
        ({"position": "flat", "min_profit_r": 1}, {"kind": "close_all"}, "conditions.min_profit_r", "conflict"),
        (
            {"market": {"price_vs_atr_band": "inside", "atr_period": 14, "bars": 10}},
            {"kind": "close_all"},
            "conditions.market.bars",
            "too_few_bars",
        ),
        (
            {},
            {"kind": "open", "side": "buy", "quantity": {"atr_risk": 100, "atr_stop_multiple": 2}},
            "conditions.market",
            "required",
        ),
        (
            {},
            {"kind": "open", "side": "buy", "quantity": 1, "stop_loss_ticks": 4, "stop_loss_atr": 1},
            "action.stop_loss_atr",
            "conflict",
        ),
        ({}, {"kind": "scale_in", "side": "buy", "quantity": 1}, "action.side", "not_allowed"),
        ([], {"kind": "close_all"}, "conditions", "not_an_object"),
    ],
)
def test_a_bad_rule_is_refused_with_the_field_and_a_code(conditions, action, field, code):
    with pytest.raises(InvalidRule) as refused:
        parse_rule(conditions, action)

    assert (field, code) in [(p.field, p.code) for p in refused.value.problems]
    assert refused.value.code == "invalid_rule"


def test_every_problem_is_reported_at_once():
    with pytest.raises(InvalidRule) as refused:
        parse_rule({"position": "up", "signal": {"action": "hold"}}, {"kind": "open", "side": "left", "quantity": -1})

    assert {p.field for p in refused.value.problems} == {
        "conditions.position",
        "conditions.signal.action",
        "action.side",
        "action.quantity",
    }


# -- Evaluation ------------------------------------------------------------------------------------


def test_the_first_matching_rule_in_priority_order_fires_and_says_why():
    rules = [
        rule(1, {"signal": {"action": "sell"}}, {"kind": "close_all"}, priority=5),
        rule(2, {"signal": {"action": "buy"}, "position": "flat"}, BUY_WITH_BRACKETS, priority=10),
        rule(3, {"signal": {"action": "buy"}}, {"kind": "open", "side": "buy", "quantity": 9}, priority=20),
    ]

    evaluation = evaluate(rules, facts())

    assert evaluation.fired.rule_id == 2
    assert evaluation.fired.order == Order("open", "buy", 2, 8, 16)
    assert [(d.rule_id, d.outcome) for d in evaluation.decisions] == [(1, "no_match"), (2, "fired")]
    assert evaluation.decisions[0].reason == "signal action is buy, the rule wants sell"


def test_a_rule_in_cooldown_is_held_and_the_next_one_is_tried():
    rules = [
        rule(1, {"signal": {"action": "buy"}}, BUY_WITH_BRACKETS, priority=1, cooldown=300),
        rule(2, {"signal": {"action": "buy"}}, {"kind": "close_all"}, priority=2),
    ]

    evaluation = evaluate(rules, facts(last_fired={1: TUESDAY_10 - timedelta(seconds=299)}))

    held = evaluation.decisions[0]
    assert (held.rule_id, held.outcome) == (1, "held")
    assert "300 s cooldown runs until 16:00:01 UTC" in held.reason
    assert evaluation.fired.rule_id == 2


def test_a_cooldown_that_has_passed_lets_the_rule_fire():
    rules = [rule(1, {"signal": {"action": "buy"}}, BUY_WITH_BRACKETS, cooldown=300)]

    evaluation = evaluate(rules, facts(last_fired={1: TUESDAY_10 - timedelta(seconds=300)}))

    assert evaluation.fired.rule_id == 1


@pytest.mark.parametrize(
    ("conditions", "overrides", "fires", "reason"),
    [
        ({"signal": {"ticker_root": "MES"}}, {}, False, "signal is for MNQ, the rule wants MES"),
        ({"signal": {"min_confidence": "0.9"}}, {}, False, "signal confidence 0.8 is below 0.9"),
        ({"signal": {"min_confidence": "0.8"}}, {}, True, None),
        (
            {"signal": {}, "position": "long"},
            {"position_quantity": -1},
            False,
            "position is short, the rule wants long",
        ),
        ({"signal": {}, "position": "short"}, {"position_quantity": -1}, True, None),
        (
            {"signal": {}, "min_profit_r": "1"},
            {"position_quantity": 2, "profit_r": D("0.5")},
            False,
            "profit is 0.50R, the rule wants 1R",
        ),
        ({"signal": {}, "min_profit_r": "1"}, {"position_quantity": 2, "profit_r": D("1.2")}, True, None),
        (
            {"signal": {}, "min_profit_r": "1"},
            {"position_quantity": 2},
            False,
            "profit in R is unknown (no plan or stop on the position)",
        ),
        ({"signal": {}, "time_window": {"start": "08:30", "end": "15:00"}}, {}, True, None),
        ({"signal": {}, "time_window": {"start": "10:01", "end": "15:00"}}, {}, False, None),
        ({"signal": {}, "time_window": {"start": "08:30", "end": "15:00", "days": [0]}}, {}, False, None),
        ({"signal": {}, "time_window": {"start": "17:00", "end": "10:01"}}, {}, True, None),  # across midnight
    ],
)
def test_each_condition_decides(conditions, overrides, fires, reason):
    evaluation = evaluate([rule(1, conditions, {"kind": "close_all"})], facts(**overrides))

    assert (evaluation.fired is not None) == fires
    if reason:
        assert evaluation.decisions[0].reason == reason


def test_scheduled_rules_do_not_run_on_signals_and_signal_rules_not_on_the_schedule():
    on_signal = rule(1, {"signal": {}}, {"kind": "close_all"})
    scheduled = rule(2, {"time_window": {"start": "09:55", "end": "10:05"}}, {"kind": "eod_close"})

    assert evaluate([on_signal, scheduled], facts()).fired.rule_id == 1
    assert evaluate([on_signal, scheduled], facts(trigger="schedule", signal=None)).fired.rule_id == 2


def test_a_scheduled_rule_fires_once_per_window_occurrence():
    eod = rule(1, {"time_window": {"start": "09:55", "end": "10:05"}}, {"kind": "eod_close"})
    fired_at = TUESDAY_10 - timedelta(minutes=4)

    again = evaluate([eod], facts(trigger="schedule", last_fired={1: fired_at}))
    next_day = evaluate([eod], facts(trigger="schedule", now=TUESDAY_10 + timedelta(days=1), last_fired={1: fired_at}))

    assert (again.fired, again.decisions[0].outcome) == (None, "skipped")
    assert next_day.fired.rule_id == 1


def test_side_signal_follows_the_signal_and_scale_in_the_position():
    follow = rule(1, {"signal": {}}, {"kind": "open", "side": "signal", "quantity": 1})
    scale = rule(2, {"signal": {"action": "add"}}, {"kind": "scale_in", "quantity": 1, "stop_loss_ticks": 4})

    assert evaluate([follow], facts(signal=SignalFacts("sell", "MNQ"))).fired.order.side == "sell"
    add = SignalFacts("add", "MNQ")
    assert evaluate([scale], facts(signal=add, position_quantity=-2)).fired.order == Order("scale_in", "sell", 1, 4)
    flat = evaluate([scale], facts(signal=add))
    assert (flat.fired, flat.decisions[0].reason) == (None, "no position to scale into")


def bars_with_range(count: int, *, close: str = "100", high: str = "101", low: str = "99") -> list[OHLC]:
    return [OHLC(D(close), D(high), D(low), D(close)) for _ in range(count)]


MARKET = {"price_vs_atr_band": "above_upper", "atr_period": 3, "band_multiplier": "1", "bars": 10}


@pytest.mark.parametrize(
    ("price", "band", "fires"),
    [
        ("102.01", "above_upper", True),
        ("102", "above_upper", False),
        ("97.99", "below_lower", True),
        ("101", "inside", True),
        ("103", "inside", False),
    ],
)
def test_the_price_against_the_atr_band(price, band, fires):
    # Every bar 99-101 closing at 100: ATR 2, band 98-102.
    conditions = {"signal": {}, "market": {**MARKET, "price_vs_atr_band": band}}
    evaluation = evaluate(
        [rule(1, conditions, {"kind": "close_all"})], facts(bars=bars_with_range(5), last_price=D(price))
    )

    assert (evaluation.fired is not None) == fires
    assert evaluation.decisions[0].context["atr_band"]["upper"] == "102"


def test_too_few_bars_never_fire_a_market_rule():
    evaluation = evaluate(
        [rule(1, {"signal": {}, "market": MARKET}, {"kind": "close_all"})], facts(bars=bars_with_range(3))
    )

    assert evaluation.fired is None
    assert evaluation.decisions[0].reason == "not enough bars for ATR(3): 3"


def test_atr_sizing_and_atr_offsets():
    # ATR 2 points; MNQ point value 2: a 1.5 ATR stop is 3 points = 6 money per contract; 200 buys 33.
    action = {
        "kind": "open",
        "side": "buy",
        "quantity": {"atr_risk": "200", "atr_stop_multiple": "1.5"},
        "take_profit_atr": "3",
    }
    conditions = {"signal": {}, "market": {**MARKET, "price_vs_atr_band": "inside"}}

    fired = evaluate([rule(1, conditions, action)], facts(bars=bars_with_range(5), last_price=D("100"))).fired

    assert fired.order == Order("open", "buy", 33, stop_loss_ticks=12, take_profit_ticks=24)


def test_atr_sizing_below_one_contract_does_not_fire():
    action = {"kind": "open", "side": "buy", "quantity": {"atr_risk": "5", "atr_stop_multiple": "1.5"}}
    conditions = {"signal": {}, "market": {**MARKET, "price_vs_atr_band": "inside"}}

    evaluation = evaluate([rule(1, conditions, action)], facts(bars=bars_with_range(5), last_price=D("100")))

    assert evaluation.fired is None
    assert "less than one contract" in evaluation.decisions[0].reason


actions = st.sampled_from(["buy", "sell", "exit", "add", "cancel"])


@given(
    signal_action=actions,
    position=st.integers(-5, 5),
    priorities=st.lists(st.integers(-10, 10), min_size=1, max_size=6),
    cooled=st.sets(st.integers(0, 5)),
    seconds_ago=st.integers(0, 1000),
)
def test_at_most_one_rule_fires_and_it_is_the_best_ranked_eligible_one(
    signal_action, position, priorities, cooled, seconds_ago
):
    rules = [
        rule(i, {"signal": {"action": a}}, {"kind": "close_all"}, priority=p, cooldown=500)
        for i, (p, a) in enumerate(zip(priorities, ["buy", "sell", "exit", "add", "cancel", "buy"], strict=False))
    ]
    last = {i: TUESDAY_10 - timedelta(seconds=seconds_ago) for i in cooled}
    evaluation = evaluate(
        rules, facts(signal=SignalFacts(signal_action, "MNQ"), position_quantity=position, last_fired=last)
    )

    eligible = [
        r
        for r in sorted(rules, key=lambda r: (r.priority, r.id))
        if r.definition.conditions.signal.action == signal_action and not (r.id in cooled and seconds_ago < 500)
    ]
    assert [d.rule_id for d in evaluation.decisions if d.outcome == "fired"] == [r.id for r in eligible[:1]]
    # Nothing after the winner is evaluated; every rule before it says why not.
    if evaluation.fired:
        assert evaluation.decisions[-1] is evaluation.fired


@pytest.mark.parametrize(
    ("conditions", "action", "field"),
    [
        ({"min_profit_r": 1}, {"kind": "close_all"}, "conditions.min_profit_r"),
        ({"market": {"price_vs_atr_band": "inside"}}, {"kind": "close_all"}, "conditions.market"),
        (
            {"time_window": {"start": "09:00", "end": "10:00"}},
            {"kind": "open", "side": "buy", "quantity": 1},
            "action.kind",
        ),
    ],
)
def test_a_scheduled_rule_cannot_need_an_instrument(conditions, action, field):
    with pytest.raises(InvalidRule) as refused:
        parse_rule(conditions, action)

    assert (field, "needs_signal") in [(p.field, p.code) for p in refused.value.problems]
