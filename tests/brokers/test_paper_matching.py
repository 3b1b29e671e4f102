"""Pure tests of brokers/paper/matching.py: when and at what price the paper venue trades an order."""

import dataclasses
from decimal import Decimal

import pytest

from brokers.paper.matching import Execution, WorkingOrder, execution_at, fill_quantities, stop_touched

TICK = Decimal("0.25")
D = Decimal


def execute(order: WorkingOrder, market: str, slippage_ticks: int = 0) -> Execution:
    return execution_at(order, market=D(market), tick_size=TICK, slippage_ticks=slippage_ticks)


def market(side: str) -> WorkingOrder:
    return WorkingOrder(side=side, order_type="market", limit_price=None, stop_price=None)


def limit(side: str, price: str) -> WorkingOrder:
    return WorkingOrder(side=side, order_type="limit", limit_price=D(price), stop_price=None)


def stop(side: str, price: str) -> WorkingOrder:
    return WorkingOrder(side=side, order_type="stop", limit_price=None, stop_price=D(price))


def stop_limit(side: str, stop_price: str, limit_price: str, *, triggered: bool = False) -> WorkingOrder:
    return WorkingOrder(
        side=side, order_type="stop_limit", limit_price=D(limit_price), stop_price=D(stop_price), triggered=triggered
    )


# -- Market ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "slippage_ticks", "expected"),
    [
        ("buy", 0, "5000.00"),
        ("sell", 0, "5000.00"),
        ("buy", 1, "5000.25"),
        ("sell", 1, "4999.75"),
        ("buy", 4, "5001.00"),
        ("sell", 4, "4999.00"),
    ],
)
def test_market_order_pays_slippage_against_the_trader(side, slippage_ticks, expected):
    assert execute(market(side), "5000.00", slippage_ticks) == Execution(D(expected), False)


def test_market_slippage_uses_instruments_tick():
    zn = execution_at(market("buy"), market=D("112.000000"), tick_size=D("0.015625"), slippage_ticks=2)
    assert zn.price == D("112.031250")


# -- Limit ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "limit_price", "market_price", "expected"),
    [
        ("buy", "5000.00", "5000.00", "5000.00"),  # at the limit
        ("buy", "5000.00", "4999.50", "4999.50"),  # better: fills at the market, not the limit
        ("buy", "5000.00", "5000.25", None),  # worse: keeps working
        ("sell", "5000.00", "5000.00", "5000.00"),
        ("sell", "5000.00", "5001.00", "5001.00"),
        ("sell", "5000.00", "4999.75", None),
    ],
)
def test_limit_order_fills_at_market_only_when_market_or_better(side, limit_price, market_price, expected):
    result = execute(limit(side, limit_price), market_price, slippage_ticks=3)  # limits pay no slippage
    assert result == Execution(None if expected is None else D(expected), False)


# -- Stop ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "stop_price", "market_price", "touched"),
    [
        ("buy", "5010.00", "5009.75", False),
        ("buy", "5010.00", "5010.00", True),
        ("buy", "5010.00", "5012.00", True),
        ("sell", "4990.00", "4990.25", False),
        ("sell", "4990.00", "4990.00", True),
        ("sell", "4990.00", "4985.00", True),
    ],
)
def test_stop_touched(side, stop_price, market_price, touched):
    assert stop_touched(stop(side, stop_price), D(market_price)) is touched


@pytest.mark.parametrize(
    ("side", "stop_price", "market_price", "expected"),
    [
        ("buy", "5010.00", "5009.75", Execution(None, False)),
        ("buy", "5010.00", "5010.00", Execution(D("5010.50"), True)),  # becomes a market order: 2 ticks slip
        ("buy", "5010.00", "5015.00", Execution(D("5015.50"), True)),  # gapped through: fills at the market
        ("sell", "4990.00", "4990.25", Execution(None, False)),
        ("sell", "4990.00", "4990.00", Execution(D("4989.50"), True)),
        ("sell", "4990.00", "4980.00", Execution(D("4979.50"), True)),
    ],
)
def test_stop_order_becomes_market_order_when_touched(side, stop_price, market_price, expected):
    assert execute(stop(side, stop_price), market_price, slippage_ticks=2) == expected


# -- Stop limit ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "market_price", "expected"),
    [
        # Not touched: nothing happens, whatever the limit says.
        (stop_limit("buy", "5010.00", "5011.00"), "5009.75", Execution(None, False)),
        (stop_limit("sell", "4990.00", "4989.00", triggered=False), "4990.25", Execution(None, False)),
        # Touched and the limit is reachable: fills at the market, no slippage.
        (stop_limit("buy", "5010.00", "5011.00"), "5010.00", Execution(D("5010.00"), True)),
        (stop_limit("sell", "4990.00", "4989.00"), "4989.50", Execution(D("4989.50"), True)),
        # Touched but gapped past the limit: triggered, keeps working as a limit.
        (stop_limit("buy", "5010.00", "5011.00"), "5012.00", Execution(None, True)),
        (stop_limit("sell", "4990.00", "4989.00"), "4988.00", Execution(None, True)),
        # Already triggered: behaves as a plain limit even when the market is back beyond the stop.
        (stop_limit("buy", "5010.00", "5011.00", triggered=True), "5005.00", Execution(D("5005.00"), True)),
        (stop_limit("buy", "5010.00", "5011.00", triggered=True), "5011.25", Execution(None, True)),
        (stop_limit("sell", "4990.00", "4989.00", triggered=True), "4995.00", Execution(D("4995.00"), True)),
    ],
)
def test_stop_limit_triggers_then_trades_as_limit(order, market_price, expected):
    assert execute(order, market_price, slippage_ticks=2) == expected


def test_stop_limit_walks_through_trigger_then_fill():
    order = stop_limit("buy", "5010.00", "5010.50")

    first = execute(order, "5011.00")  # touched, but above the limit
    assert first == Execution(None, True)
    order = dataclasses.replace(order, triggered=first.triggered)
    second = execute(order, "5010.25")  # back within the limit

    assert second == Execution(D("5010.25"), True)


def test_unknown_order_type_raises():
    with pytest.raises(ValueError, match="iceberg"):
        execute(WorkingOrder(side="buy", order_type="iceberg", limit_price=None, stop_price=None), "5000")


# -- Quantities --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remaining", "max_fill_size", "expected"),
    [(5, None, 5), (5, 2, 2), (5, 5, 5), (2, 5, 2), (1, 1, 1), (10_000, 3, 3)],
)
def test_fill_quantities_caps_each_fill_at_max_fill_size(remaining, max_fill_size, expected):
    assert fill_quantities(remaining, max_fill_size) == expected


def test_fill_quantities_fill_whole_order_in_capped_slices():
    remaining, slices = 7, []
    while remaining:
        slices.append(fill_quantities(remaining, 3))
        remaining -= slices[-1]
    assert slices == [3, 3, 1]
