"""Wilder's ATR and the ATR band against hand-computed values (pure)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from brokers.bars import current_bar, persist_finished_bars, recent_bars
from brokers.indicators import OHLC, atr_band, true_ranges, wilder_atr
from brokers.market_data import record_last_price
from brokers.models import Bar

D = Decimal


def bar(o: str, h: str, low: str, c: str) -> OHLC:
    return OHLC(D(o), D(h), D(low), D(c))


BARS = [
    bar("10", "11", "9", "10"),  # close 10
    bar("10", "12", "10", "11"),  # TR max(2, |12-10|, |10-10|) = 2
    bar("11", "11.5", "8", "9"),  # TR max(3.5, 0.5, 3) = 3.5
    bar("9", "10", "9", "9.5"),  # TR max(1, 1, 0) = 1
    bar("12", "13", "12", "12.5"),  # gap up: TR max(1, |13-9.5|, |12-9.5|) = 3.5
    bar("12", "12", "11", "11"),  # TR max(1, 0.5, 1.5) = 1.5
]


def test_true_range_uses_the_previous_close_across_gaps():
    assert true_ranges(BARS) == [D("2"), D("3.5"), D("1"), D("3.5"), D("1.5")]


def test_wilder_atr_seeds_with_the_mean_then_smooths():
    # Period 3: seed (2 + 3.5 + 1) / 3 = 6.5/3; then (6.5/3 * 2 + 3.5) / 3 = 23.5/9;
    # then (23.5/9 * 2 + 1.5) / 3 = 60.5/27.
    assert wilder_atr(BARS[:4], 3) == D("6.5") / 3
    assert wilder_atr(BARS[:5], 3) == (D("6.5") / 3 * 2 + D("3.5")) / 3
    assert wilder_atr(BARS, 3).quantize(D("0.0001")) == (D("60.5") / 27).quantize(D("0.0001"))


def test_atr_needs_one_more_bar_than_its_period():
    assert wilder_atr(BARS[:3], 3) is None
    with pytest.raises(ValueError):
        wilder_atr(BARS, 0)


def test_atr_band_is_the_mean_close_plus_minus_multiplier_atr():
    band = atr_band(BARS[:4], period=3, multiplier=D("1.5"))

    middle = (D("11") + D("9") + D("9.5")) / 3
    atr = D("6.5") / 3
    assert (band.middle, band.atr, band.lower, band.upper) == (
        middle,
        atr,
        middle - D("1.5") * atr,
        middle + D("1.5") * atr,
    )
    assert band.position_of(band.upper) == "inside"
    assert band.position_of(band.upper + D("0.01")) == "above_upper"
    assert band.position_of(band.lower - D("0.01")) == "below_lower"


# -- Bars from prices (Redis, then the database) ------------------------------------------------

# After the paper fixture's opening prices (which start a bar at the current minute).
T0 = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=10)


@pytest.fixture
def market(paper):  # type: ignore[no-untyped-def]
    """The paper world, with the bars of its opening prices already stored."""
    persist_finished_bars(now=T0)
    return paper


def price(symbol: str, value: str, seconds: float) -> None:
    record_last_price(symbol=symbol, price=D(value), at=T0 + timedelta(seconds=seconds))


@pytest.mark.django_db
def test_prices_build_one_minute_bars_that_are_stored_when_finished(market):
    for value, seconds in [("5000.00", 1), ("5002.25", 20), ("4999.50", 40), ("5001.00", 59)]:
        price("MESZ6", value, seconds)
    price("MESZ6", "5001.25", 61)  # the next minute starts: the first bar is finished
    price("MESZ6", "5000.75", 30)  # a late price of the finished minute is ignored

    assert not Bar.objects.filter(start__gte=T0).exists()  # the price path writes no rows
    assert persist_finished_bars(now=T0 + timedelta(seconds=65)) == 1

    bar = Bar.objects.get(instrument=market.mes, start=T0)
    assert (bar.open, bar.high, bar.low, bar.close, bar.ticks, bar.interval_seconds) == (
        D("5000.00"),
        D("5002.25"),
        D("4999.50"),
        D("5001.00"),
        4,
        60,
    )
    assert current_bar("MESZ6") == {
        "s": str(int((T0 + timedelta(minutes=1)).timestamp())),
        "o": "5001.25",
        "h": "5001.25",
        "l": "5001.25",
        "c": "5001.25",
        "n": "1",
    }


@pytest.mark.django_db
def test_a_bar_without_later_prices_is_stored_once_its_minute_is_over(market):
    price("ESZ6", "5000.00", 5)
    price("ESZ6", "5000.50", 10)

    assert persist_finished_bars(now=T0 + timedelta(seconds=50)) == 0  # still running
    assert persist_finished_bars(now=T0 + timedelta(seconds=60)) == 1
    assert persist_finished_bars(now=T0 + timedelta(seconds=120)) == 0  # stored once

    bar = Bar.objects.get(instrument=market.es, start=T0)
    assert (bar.open, bar.close, bar.ticks) == (D("5000.00"), D("5000.50"), 2)


@pytest.mark.django_db
def test_recent_bars_are_the_last_finished_ones_oldest_first(market):
    for minute, value in enumerate(["5000.00", "5001.00", "5002.00", "5003.00"]):
        price("MESZ6", value, minute * 60 + 1)

    bars = recent_bars(instrument=market.mes, count=2, now=T0 + timedelta(minutes=3, seconds=30))

    assert [b.close for b in bars] == [D("5001.00"), D("5002.00")]  # minute 3 is still running
