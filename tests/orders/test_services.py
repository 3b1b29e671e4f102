"""The order path on PostgreSQL and Redis with the paper venue: outcomes in our books and at the venue."""

from decimal import Decimal

import pytest

from brokers.paper.models import VenueFill, VenueOrder
from orders import services
from orders.domain import OrderIntent, OrderSide, OrderSource, OrderStatus, OrderType
from orders.models import Fill, Order, Position

pytestmark = pytest.mark.django_db


def buy(quantity: int = 1, symbol: str = "MES", **kwargs) -> OrderIntent:  # type: ignore[no-untyped-def]
    return OrderIntent(symbol=symbol, side=OrderSide.BUY, quantity=quantity, order_type=OrderType.MARKET, **kwargs)


def sell(quantity: int = 1, symbol: str = "MES", **kwargs) -> OrderIntent:  # type: ignore[no-untyped-def]
    return OrderIntent(symbol=symbol, side=OrderSide.SELL, quantity=quantity, order_type=OrderType.MARKET, **kwargs)


def test_market_order_fills_and_updates_position_and_balance(alice_account, commit):
    with commit():
        outcome = services.submit_order(account=alice_account, intent=buy(2), source=OrderSource.API)

    order = Order.objects.get(pk=outcome.order.pk)
    assert order.status == OrderStatus.FILLED
    assert order.filled_quantity == 2
    assert order.avg_fill_price == Decimal("5000.00")
    assert order.broker_order_id
    position = Position.objects.get(account=alice_account)
    assert (position.quantity, position.avg_price) == (2, Decimal("5000.00"))
    fill = Fill.objects.get(order=order)
    assert fill.fee == Decimal("0.74")
    alice_account.refresh_from_db()
    assert alice_account.balance == Decimal("50000") - Decimal("0.74")
    # The venue has exactly one order with our client id and one fill.
    assert VenueOrder.objects.filter(client_order_id=order.client_order_id).count() == 1
    assert VenueFill.objects.filter(order__client_order_id=order.client_order_id).count() == 1
    assert [e.type for e in order.events.order_by("id")] == ["created", "submitted", "accepted", "fill"]


def test_round_trip_realizes_pnl_in_money_from_tick_value(alice_account, paper, commit):
    with commit():
        services.submit_order(account=alice_account, intent=buy(3), source=OrderSource.API)
    with commit():
        paper.price("MESZ6", "5002.50")  # +10 ticks
    with commit():
        services.submit_order(account=alice_account, intent=sell(3), source=OrderSource.API)

    position = Position.objects.get(account=alice_account)
    assert position.quantity == 0
    assert position.realized_pnl == Decimal("37.50")  # 10 ticks * $1.25 * 3
    alice_account.refresh_from_db()
    assert alice_account.balance == Decimal("50000") + Decimal("37.50") - 6 * Decimal("0.37")
