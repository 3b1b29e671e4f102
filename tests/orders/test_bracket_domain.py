"""Bracket levels, sides and position effects: pure, no database."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokers.ticks import is_on_tick
from orders.domain import (
    InvalidOrder,
    Level,
    OrderSide,
    PositionEffect,
    SideConflict,
    check_bracket_sides,
    check_position_effect,
    check_protective_price,
    level_price,
    validate_level,
)

D = Decimal
TICK = D("0.25")


@pytest.mark.parametrize(
    ("side", "anchor", "ticks", "is_stop", "expected"),
    [
        (OrderSide.BUY, "5000.00", 8, True, "4998.00"),  # long stop below
        (OrderSide.BUY, "5000.00", 8, False, "5002.00"),  # long target above
        (OrderSide.SELL, "5000.00", 8, True, "5002.00"),  # short stop above
        (OrderSide.SELL, "5000.00", 8, False, "4998.00"),  # short target below
        # An average between ticks is rounded away from the level first: never nearer than asked.
        (OrderSide.BUY, "5000.125", 4, True, "4999.00"),
        (OrderSide.BUY, "5000.125", 4, False, "5001.25"),
        (OrderSide.SELL, "5000.125", 4, True, "5001.25"),
        (OrderSide.SELL, "5000.125", 4, False, "4999.00"),
    ],
)
def test_tick_offsets_from_the_anchor(side, anchor, ticks, is_stop, expected):
    price = level_price(Level(ticks=ticks), entry_side=side, anchor=D(anchor), tick_size=TICK, is_stop=is_stop)
    assert price == D(expected)


def test_an_absolute_level_is_taken_as_given():
    assert level_price(
        Level(price=D("4990.50")), entry_side=OrderSide.BUY, anchor=D("5000"), tick_size=TICK, is_stop=True
    ) == D("4990.50")


def test_a_level_below_zero_is_refused():
    with pytest.raises(InvalidOrder, match="at or below zero"):
        level_price(Level(ticks=100), entry_side=OrderSide.BUY, anchor=D("10"), tick_size=TICK, is_stop=True)


@given(
    anchor_ticks=st.integers(min_value=2_000, max_value=40_000),
    half=st.booleans(),
    ticks=st.integers(min_value=1, max_value=1_000),
    side=st.sampled_from([OrderSide.BUY, OrderSide.SELL]),
    is_stop=st.booleans(),
)
def test_offsets_land_on_the_grid_at_least_n_ticks_away_on_the_right_side(anchor_ticks, half, ticks, side, is_stop):
    anchor = anchor_ticks * TICK + (TICK / 2 if half else 0)
    price = level_price(Level(ticks=ticks), entry_side=side, anchor=anchor, tick_size=TICK, is_stop=is_stop)
    assert is_on_tick(price, TICK)
    below = (side == OrderSide.BUY) == is_stop
    distance = anchor - price if below else price - anchor
    assert distance >= ticks * TICK
    assert distance < (ticks + 1) * TICK


@pytest.mark.parametrize(("value", "ok"), [(1, True), (0, False), (-3, False), (True, False), (100_001, False)])
def test_tick_counts_are_whole_and_positive(value, ok):
    if ok:
        assert validate_level(Level(ticks=value), tick_size=TICK, field="stop_loss").ticks == value
    else:
        with pytest.raises(InvalidOrder) as refused:
            validate_level(Level(ticks=value), tick_size=TICK, field="stop_loss")
        assert refused.value.code == "invalid_ticks"


def test_a_price_level_off_the_grid_is_refused():
    with pytest.raises(InvalidOrder) as refused:
        validate_level(Level(price=D("4990.10")), tick_size=TICK, field="take_profit")
    assert (refused.value.code, refused.value.field) == ("price_off_tick", "take_profit")


@pytest.mark.parametrize(
    ("side", "reference", "stop", "target", "problem"),
    [
        (OrderSide.BUY, "5000", "4990", "5010", None),
        (OrderSide.SELL, "5000", "5010", "4990", None),
        (OrderSide.BUY, "5000", "5000", "5010", "stop_loss"),  # at the entry: would trigger at once
        (OrderSide.BUY, "5000", "4990", "5000", "take_profit"),
        (OrderSide.SELL, "5000", "4995", None, "stop_loss"),
        (OrderSide.SELL, "5000", None, "5005", "take_profit"),
        (OrderSide.BUY, None, "5010", "5000", "stop_loss"),  # no reference: still stop vs target
        (OrderSide.BUY, None, "4990", None, None),
    ],
)
def test_bracket_sides(side, reference, stop, target, problem):
    def dec(v):  # type: ignore[no-untyped-def]
        return None if v is None else D(v)

    call = dict(entry_side=side, reference=dec(reference), stop_loss=dec(stop), take_profit=dec(target))
    if problem is None:
        check_bracket_sides(**call)
        return
    with pytest.raises(InvalidOrder) as refused:
        check_bracket_sides(**call)
    assert (refused.value.code, refused.value.field) == ("bracket_wrong_side", problem)


@pytest.mark.parametrize(
    ("held", "role", "price", "ok"),
    [
        (2, "stop_loss", "4999.75", True),
        (2, "stop_loss", "5000.00", False),
        (-2, "stop_loss", "5000.25", True),
        (-2, "stop_loss", "4999.00", False),
        (2, "take_profit", "5000.25", True),
        (2, "take_profit", "4999.00", False),
        (0, "stop_loss", "6000", True),  # flat: nothing to check against
    ],
)
def test_protective_price_against_the_market(held, role, price, ok):
    call = dict(position_quantity=held, role=role, price=D(price), market=D("5000.00"))
    if ok:
        check_protective_price(**call)
    else:
        with pytest.raises(InvalidOrder, match="the market"):
            check_protective_price(**call)


@pytest.mark.parametrize(
    ("held", "working", "signed", "effect", "ok"),
    [
        (0, 0, 3, PositionEffect.AUTO, True),  # opening
        (2, 0, 1, PositionEffect.AUTO, True),  # adding
        (2, 0, -2, PositionEffect.AUTO, True),  # to flat
        (2, 0, -3, PositionEffect.AUTO, False),  # through flat
        (2, 1, -2, PositionEffect.AUTO, False),  # with what is working, through flat
        (-2, 0, 3, PositionEffect.AUTO, False),
        (2, 0, -3, PositionEffect.REVERSE, True),
        (0, 0, -3, PositionEffect.REVERSE, False),  # nothing to reverse
        (2, 0, 1, PositionEffect.REVERSE, False),
        (2, 0, -1, PositionEffect.REDUCE, True),
        (2, 1, -2, PositionEffect.REDUCE, False),
        (2, 0, 1, PositionEffect.REDUCE, False),
        (0, 0, 1, PositionEffect.REDUCE, False),
    ],
)
def test_position_effects(held, working, signed, effect, ok):
    call = dict(held=held, opposite_working=working, signed_quantity=signed, effect=effect, symbol="MESZ6")
    if ok:
        check_position_effect(**call)
    else:
        with pytest.raises(SideConflict) as refused:
            check_position_effect(**call)
        assert refused.value.code == "position_side_conflict"
        assert "MESZ6" in refused.value.detail
