"""Sizing and stop distances (pure, no database)."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orders.domain import Level
from signals_in.sizing import (
    InvalidSizing,
    SizingRule,
    parse_level,
    size_entry,
    size_exit,
    stop_distance,
)

MES_POINT = Decimal(5)  # $1.25 a 0.25 tick
TICK = Decimal("0.25")


def size(rule: SizingRule, quantity: str | None = None, stop: str | None = None, confidence: str | None = None):  # type: ignore[no-untyped-def]
    return size_entry(
        rule,
        signal_quantity=Decimal(quantity) if quantity else None,
        stop_distance=Decimal(stop) if stop else None,
        point_value=MES_POINT,
        confidence=Decimal(confidence) if confidence else None,
    )


@pytest.mark.parametrize(
    ("rule", "quantity", "stop", "expected"),
    [
        (SizingRule(fixed_quantity=3), "7", None, 3),
        (SizingRule(mode="multiplier", multiplier=Decimal("2")), "3", None, 6),
        (SizingRule(mode="multiplier", multiplier=Decimal("0.5")), "3", None, 1),  # 1.5 rounds down
        (SizingRule(mode="multiplier", multiplier=Decimal("1.5")), None, None, 1),  # no quantity counts as 1
        (SizingRule(mode="risk", risk_amount=Decimal("100")), None, "5", 4),  # $25 a contract to the stop
        (SizingRule(mode="risk", risk_amount=Decimal("100")), None, "6", 3),  # $30: 3.33 rounds down
        (SizingRule(fixed_quantity=10, max_quantity=4), None, None, 4),
    ],
)
def test_size_entry_by_mode(rule, quantity, stop, expected):  # type: ignore[no-untyped-def]
    assert size(rule, quantity, stop).quantity == expected


def test_size_rounding_to_zero_is_size_zero():
    sized = size(SizingRule(mode="multiplier", multiplier=Decimal("0.3")), "3")
    assert (sized.quantity, sized.code) == (0, "size_zero")
    sized = size(SizingRule(mode="risk", risk_amount=Decimal("20")), stop="5")
    assert (sized.quantity, sized.code) == (0, "size_zero")


def test_risk_sizing_needs_a_stop_and_an_amount():
    assert size(SizingRule(mode="risk", risk_amount=Decimal("100"))).code == "no_stop"
    assert size(SizingRule(mode="risk"), stop="5").code == "no_risk_amount"


def test_confidence_scales_down_but_keeps_at_least_one():
    assert size(SizingRule(fixed_quantity=10), confidence="0.55").quantity == 5
    assert size(SizingRule(fixed_quantity=1), confidence="0.2").quantity == 1
    assert size(SizingRule(fixed_quantity=4), confidence="1.7").quantity == 4  # never scales up


def test_size_exit_scales_by_the_multiplier_only():
    assert size_exit(SizingRule(mode="multiplier", multiplier=Decimal("3")), signal_quantity=Decimal(2)) == 6
    assert size_exit(SizingRule(fixed_quantity=5), signal_quantity=Decimal(2)) == 2
    assert size_exit(SizingRule(mode="multiplier", multiplier=Decimal("0.1")), signal_quantity=Decimal(2)) == 1


rules = st.builds(
    SizingRule,
    mode=st.sampled_from(["fixed", "multiplier", "risk"]),
    fixed_quantity=st.integers(0, 50),
    multiplier=st.decimals("0.001", "20", places=3),
    risk_amount=st.none() | st.decimals("0", "100000", places=2),
    max_quantity=st.none() | st.integers(1, 30),
)


@given(
    rule=rules,
    quantity=st.none() | st.decimals("0", "1000", places=4),
    stop=st.none() | st.decimals("0", "500", places=2),
    confidence=st.none() | st.decimals("0", "1", places=4),
)
def test_sizing_is_never_negative_and_never_above_the_cap(rule, quantity, stop, confidence):  # type: ignore[no-untyped-def]
    sized = size_entry(rule, signal_quantity=quantity, stop_distance=stop, point_value=MES_POINT, confidence=confidence)
    assert sized.quantity >= 0
    if rule.max_quantity is not None:
        assert sized.quantity <= rule.max_quantity
    assert (sized.quantity == 0) == bool(sized.code)
    if rule.mode == "risk" and sized.quantity and confidence is None:
        assert sized.quantity * stop * MES_POINT <= rule.risk_amount  # never risks more than the amount


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"price": "4990.25"}, Level(price=Decimal("4990.25"))),
        ({"ticks": 8}, Level(ticks=8)),
        ({"ticks": "8"}, Level(ticks=8)),
        ({"amount": "5"}, Level(ticks=20)),
        ({"amount": "0.1"}, Level(ticks=1)),  # less than a tick is one tick
        (None, None),
    ],
)
def test_parse_level(spec, expected):  # type: ignore[no-untyped-def]
    assert parse_level(spec, tick_size=TICK, field="stop_loss") == expected


@pytest.mark.parametrize(
    "spec", [{"price": "abc"}, {"ticks": 1.5}, {"ticks": -2}, {"points": 3}, "10", {"price": True}]
)
def test_parse_level_refuses_bad_levels_with_a_code(spec):  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidSizing) as error:
        parse_level(spec, tick_size=TICK, field="stop_loss")
    assert error.value.code == "invalid_bracket" and error.value.field == "stop_loss"


def test_stop_distance_from_ticks_or_a_price_against_the_reference():
    assert stop_distance(stop_loss=Level(ticks=8), reference=None, tick_size=TICK) == Decimal(2)
    assert stop_distance(stop_loss=Level(price=Decimal("4990")), reference=Decimal("5000"), tick_size=TICK) == 10
    assert stop_distance(stop_loss=Level(price=Decimal("4990")), reference=None, tick_size=TICK) is None
    assert stop_distance(stop_loss=None, reference=Decimal("5000"), tick_size=TICK) is None
