"""An order's audit trail: every status change and broker report is an OrderEvent row."""

from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.utils import timezone

from orders.domain import OrderEventType, OrderStatus
from orders.models import Order, OrderEvent
from orders.realtime import publish_order_on_commit

User = AbstractBaseUser


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def new_event(
    order: Order,
    event_type: OrderEventType,
    *,
    from_status: str = "",
    to_status: str = "",
    detail: str = "",
    payload: Any = None,
    actor: User | None = None,
    occurred_at: datetime | None = None,
) -> OrderEvent:
    """An event row, not saved (for bulk_create); record_event saves one."""
    return OrderEvent(
        order=order,
        type=event_type,
        from_status=from_status,
        to_status=to_status,
        detail=detail[:500],
        payload=_jsonable(payload) if payload is not None else {},
        actor=actor if actor is not None and actor.is_authenticated else None,
        occurred_at=occurred_at or timezone.now(),
    )


def record_event(order: Order, event_type: OrderEventType, **fields: Any) -> OrderEvent:
    event = new_event(order, event_type, **fields)
    event.save(force_insert=True)
    return event


def move_order(order: Order, target: OrderStatus, event_type: OrderEventType, **event: Any) -> None:
    """Transition, save and log one status change (caller holds the order's row lock)."""
    previous = order.status
    order.transition_to(target)
    order.save()
    record_event(order, event_type, from_status=previous, to_status=target, **event)
    publish_order_on_commit(order)
