"""Indicators over bars (pure): Wilder's average true range and the ATR band around the mean close."""

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise


@dataclass(frozen=True)
class OHLC:
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal


def true_ranges(bars: Sequence[OHLC]) -> list[Decimal]:
    """The true range of every bar after the first (each needs the close before it)."""
    return [
        max(bar.high - bar.low, abs(bar.high - before.close), abs(bar.low - before.close))
        for before, bar in pairwise(bars)
    ]


def wilder_atr(bars: Sequence[OHLC], period: int) -> Decimal | None:
    """Wilder's ATR of `bars` (oldest first) as of the last bar; None with fewer than period + 1 bars.

    As TA-Lib computes it: the first ATR is the plain mean of the first `period` true ranges
    (bars 1..period; bar 0 only gives its close), then each further true range is smoothed in
    with ATR = (ATR_prev * (period - 1) + TR) / period.
    """
    if period < 1:
        raise ValueError("period must be 1 or more")
    ranges = true_ranges(bars)
    if len(ranges) < period:
        return None
    atr = sum(ranges[:period], Decimal(0)) / period
    for tr in ranges[period:]:
        atr = (atr * (period - 1) + tr) / period
    return atr


@dataclass(frozen=True)
class AtrBand:
    middle: Decimal  # the mean close of the last `period` bars
    atr: Decimal
    lower: Decimal
    upper: Decimal

    def position_of(self, price: Decimal) -> str:
        """above_upper, below_lower or inside (a price on a band edge is inside)."""
        if price > self.upper:
            return "above_upper"
        if price < self.lower:
            return "below_lower"
        return "inside"


def atr_band(bars: Sequence[OHLC], *, period: int, multiplier: Decimal) -> AtrBand | None:
    """A Keltner-style channel: the mean of the last `period` closes plus and minus multiplier x ATR."""
    atr = wilder_atr(bars, period)
    if atr is None:
        return None
    middle = sum((bar.close for bar in bars[-period:]), Decimal(0)) / period
    return AtrBand(middle=middle, atr=atr, lower=middle - multiplier * atr, upper=middle + multiplier * atr)
