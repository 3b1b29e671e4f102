"""Emulated trailing stop orders: at a broker without native trailing stops, a TRAILING_STOP
order is sent as a plain stop (orders.services) and moved here as the market moves, through the
broker's modify, with the same stop-following arithmetic as the plans' trailing stop
(orders.plans.followed_stop). Run by the plans' price trigger (orders.plan_service).

The stop follows the newest price each evaluation reads; it never moves against the position.
Our record keeps the broker's confirmed stop, so the stop's level is also the best price seen
(minus the trail): no extra state is needed, and a restart loses nothing.
"""

import logging
from decimal import Decimal

from brokers import registry
from brokers.interface import Capability
from config.errors import DomainError
from orders import services
from orders.domain import OrderEventType, OrderSide, OrderStatus, OrderType
from orders.events import record_event
from orders.models import Order, OrderQuerySet
from orders.plans import followed_stop

logger = logging.getLogger(__name__)


def working_trailing_stops(symbol: str) -> OrderQuerySet:
    return Order.objects.filter(
        instrument__symbol=symbol,
        order_type=OrderType.TRAILING_STOP,
        status__in=(OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED),
    )


def follow_trailing_orders(*, symbol: str, price: Decimal) -> tuple[bool, list[tuple[bool, Decimal]]]:
    """Move the emulated trailing stops of `symbol` after `price`. Returns whether a move was
    asked of a broker or had to wait for one in flight (a follow-up evaluation settles it), and
    each stop's next trigger: (a sell stop: at or above, the price).

    A stop trailing at `trail` moves once the price is a tick beyond stop + trail."""
    follow_up = False
    triggers: list[tuple[bool, Decimal]] = []
    native: dict[int, bool] = {}
    for order in working_trailing_stops(symbol).select_related("instrument", "account__broker_connection"):
        connection = order.account.broker_connection
        if connection.pk not in native:
            native[connection.pk] = Capability.TRAILING_STOP in registry.get_adapter(connection).capabilities
        if native[connection.pk] or order.trail_amount is None:
            continue  # the broker trails it itself
        long = order.side == OrderSide.SELL
        tick = order.instrument.tick_size
        target = followed_stop(
            long=long,
            reference=price,
            distance=order.trail_amount,
            current=order.stop_price,
            tick_size=order.instrument.tick_size,
        )
        pending = order.pending_change.get("stop_price")
        stop = target or (Decimal(str(pending)) if pending else order.stop_price)
        if stop is not None:
            triggers.append((long, stop + order.trail_amount + tick if long else stop - order.trail_amount - tick))
        if target is None:
            continue
        if order.pending_change:
            follow_up = True
            continue
        try:
            services.modify_order(
                order=order,
                change=services.OrderChange(stop_price=target),
                managed=True,
                detail=f"Trailing {order.trail_amount} behind {price}.",
            )
            follow_up = True
        except services.ChangePending:
            follow_up = True
        except DomainError as exc:
            # Kept on the order's record; the next price asks again.
            record_event(order, OrderEventType.MODIFY_REJECTED, detail=f"Trailing to {target}: {exc.detail}")
            logger.warning("Trailing stop %s not moved to %s: %s", order.client_order_id, target, exc.detail)
    return follow_up, triggers
