"""How the paper venue decides whether, and at what price, a working order trades (pure).

The venue has no order book: the last price is the market. Market orders pay the configured
slippage; limit orders trade at the market or better; stops become market orders once touched,
stop-limits become limit orders.
"""

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class WorkingOrder:
    side: str  # "buy" | "sell"
    order_type: str  # "market" | "limit" | "stop" | "stop_limit" | "trailing_stop"
    limit_price: Decimal | None
    stop_price: Decimal | None
    triggered: bool = False


@dataclass(frozen=True)
class Execution:
    price: Decimal | None  # None: keeps working
    triggered: bool  # the stop of a stop-limit has now been touched


def stop_touched(order: WorkingOrder, market: Decimal) -> bool:
    assert order.stop_price is not None
    return market >= order.stop_price if order.side == "buy" else market <= order.stop_price


def _limit_price_now(side: str, limit: Decimal, market: Decimal) -> Decimal | None:
    if side == "buy":
        return market if market <= limit else None
    return market if market >= limit else None


def _market_price_now(side: str, market: Decimal, tick_size: Decimal, slippage_ticks: int) -> Decimal:
    slip = tick_size * slippage_ticks
    return market + slip if side == "buy" else market - slip


def execution_at(order: WorkingOrder, *, market: Decimal, tick_size: Decimal, slippage_ticks: int) -> Execution:
    if order.order_type == "market":
        return Execution(_market_price_now(order.side, market, tick_size, slippage_ticks), False)
    if order.order_type == "limit":
        assert order.limit_price is not None
        return Execution(_limit_price_now(order.side, order.limit_price, market), False)
    if order.order_type in ("stop", "trailing_stop"):  # a trailing stop's level is kept current by the venue
        if stop_touched(order, market):
            return Execution(_market_price_now(order.side, market, tick_size, slippage_ticks), True)
        return Execution(None, False)
    if order.order_type == "stop_limit":
        assert order.limit_price is not None
        triggered = order.triggered or stop_touched(order, market)
        if not triggered:
            return Execution(None, False)
        return Execution(_limit_price_now(order.side, order.limit_price, market), True)
    raise ValueError(f"Unknown order type {order.order_type!r}")


def fill_quantities(remaining: int, max_fill_size: int | None) -> int:
    """How much of `remaining` trades on one price event."""
    return remaining if max_fill_size is None else min(remaining, max_fill_size)
