"""Pure tests of brokers/ticks.py: the tick grid for ES-style, 6E and ZN ticks."""

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokers.ticks import display_price, is_on_tick, neighbouring_ticks, normalize_price, round_to_tick

ES = Decimal("0.25")
EURO_FX = Decimal("0.00005")  # 6E
TEN_YEAR = Decimal("0.015625")  # ZN: 1/64 of a point
PURE = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize(
    ("price", "tick", "expected"),
    [
        ("5000", ES, True),
        ("5000.25", ES, True),
        ("5000.75", ES, True),
        ("5000.250000", ES, True),
        ("5000.1", ES, False),
        ("5000.30", ES, False),
        ("5000.125", ES, False),
        ("1.08525", EURO_FX, True),
        ("1.1", EURO_FX, True),
        ("1.08527", EURO_FX, False),
        ("1.085251", EURO_FX, False),
        ("110.015625", TEN_YEAR, True),
        ("110.03125", TEN_YEAR, True),
        ("110.5", TEN_YEAR, True),
        ("110.01", TEN_YEAR, False),
        ("110.0078125", TEN_YEAR, False),  # half a ZN tick
        ("42000", Decimal("1"), True),
        ("42000.5", Decimal("1"), False),
    ],
)
def test_is_on_tick(price, tick, expected):
    assert is_on_tick(Decimal(price), tick) is expected


@pytest.mark.parametrize(
    ("price", "tick", "lower", "upper"),
    [
        ("5000.30", ES, "5000.25", "5000.50"),
        ("5000.01", ES, "5000.00", "5000.25"),
        ("5000.99", ES, "5000.75", "5001.00"),
        ("1.08527", EURO_FX, "1.08525", "1.08530"),
        ("110.01", TEN_YEAR, "110", "110.015625"),
        ("110.0234375", TEN_YEAR, "110.015625", "110.03125"),
    ],
)
def test_neighbouring_ticks_brackets_price_when_off_grid(price, tick, lower, upper):
    assert neighbouring_ticks(Decimal(price), tick) == (Decimal(lower), Decimal(upper))


@pytest.mark.parametrize(("price", "tick"), [("5000.25", ES), ("1.08525", EURO_FX), ("110.015625", TEN_YEAR)])
def test_neighbouring_ticks_is_price_twice_when_on_grid(price, tick):
    assert neighbouring_ticks(Decimal(price), tick) == (Decimal(price), Decimal(price))


@pytest.mark.parametrize(
    ("price", "tick", "expected"),
    [
        ("5000.12", ES, "5000.00"),
        ("5000.13", ES, "5000.25"),
        ("5000.125", ES, "5000.25"),  # half up by default
        ("5000.375", ES, "5000.50"),
        ("1.085274", EURO_FX, "1.08525"),
        ("1.085275", EURO_FX, "1.08530"),
        ("110.0078125", TEN_YEAR, "110.015625"),
        ("110.0078", TEN_YEAR, "110"),
        ("5000.25", ES, "5000.25"),
    ],
)
def test_round_to_tick_rounds_to_nearest_tick(price, tick, expected):
    assert round_to_tick(Decimal(price), tick) == Decimal(expected)


def test_round_to_tick_follows_requested_rounding():
    assert round_to_tick(Decimal("5000.01"), ES, ROUND_CEILING) == Decimal("5000.25")
    assert round_to_tick(Decimal("5000.24"), ES, ROUND_FLOOR) == Decimal("5000.00")
    assert round_to_tick(Decimal("110.0156"), TEN_YEAR, ROUND_FLOOR) == Decimal("110")


@pytest.mark.parametrize(
    ("price", "tick", "expected"),
    [
        ("5000.5", ES, "5000.50"),
        ("5000", ES, "5000.00"),
        ("5000.2500", ES, "5000.25"),
        ("1.1", EURO_FX, "1.10000"),
        ("110.5", TEN_YEAR, "110.500000"),
        ("42000", Decimal("1"), "42000"),
        ("42000.00", Decimal("1"), "42000"),
        ("2150.1", Decimal("0.10"), "2150.1"),
    ],
)
def test_normalize_price_writes_tick_decimals(price, tick, expected):
    normalized = normalize_price(Decimal(price), tick)
    assert str(normalized) == expected
    assert normalized == Decimal(price)


@pytest.mark.parametrize(
    ("price", "tick", "expected"),
    [
        ("5000.5", ES, "5000.50"),
        ("5000", ES, "5000.00"),
        ("1.1", EURO_FX, "1.10000"),
        ("110.015625", TEN_YEAR, "110.015625"),
        ("112", TEN_YEAR, "112.000000"),
        # Averages of several fills sit between ticks: shown as precise as they are, never rounded.
        ("5000.125", ES, "5000.125"),
        ("5000.41666667", ES, "5000.41666667"),
        ("5000.30000000", ES, "5000.3"),
        ("1.085275", EURO_FX, "1.085275"),
        ("110.0078125", TEN_YEAR, "110.0078125"),
        ("5000E0", ES, "5000.00"),
    ],
)
def test_display_price(price, tick, expected):
    assert display_price(Decimal(price), tick) == expected


def test_display_price_never_uses_exponent_notation_when_off_grid():
    assert display_price(Decimal("5.0E+3") + Decimal("0.1"), ES) == "5000.1"
    assert display_price(Decimal("1E+4") + Decimal("0.125"), ES) == "10000.125"


ticks = st.sampled_from([ES, EURO_FX, TEN_YEAR, Decimal("0.01"), Decimal("0.10"), Decimal("1")])


@PURE
@given(tick=ticks, steps=st.integers(0, 10**9), numerator=st.integers(1, 999))
def test_neighbouring_ticks_are_one_tick_apart_around_any_off_grid_price(tick, steps, numerator):
    price = (steps + Decimal(numerator) / 1000) * tick

    lower, upper = neighbouring_ticks(price, tick)

    assert not is_on_tick(price, tick)
    assert lower < price < upper
    assert upper - lower == tick
    assert is_on_tick(lower, tick) and is_on_tick(upper, tick)
    assert round_to_tick(price, tick) in (lower, upper)
    assert abs(round_to_tick(price, tick) - price) <= tick / 2


@PURE
@given(tick=ticks, steps=st.integers(0, 10**9))
def test_grid_prices_survive_every_helper_unchanged(tick, steps):
    price = steps * tick
    assert is_on_tick(price, tick)
    assert neighbouring_ticks(price, tick) == (price, price)
    assert round_to_tick(price, tick) == price
    assert normalize_price(price, tick) == price
    assert Decimal(display_price(price, tick)) == price
