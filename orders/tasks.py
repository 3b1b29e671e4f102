"""Celery entry points of the order path: ids in, one service call each."""

from celery import shared_task

from orders import services


@shared_task(acks_late=True)
def send_order_to_broker_task(order_id: int) -> None:
    # acks_late is safe: the compare-and-set claim inside makes a redelivery a no-op.
    services.send_order_to_broker(order_id=order_id)


@shared_task(acks_late=True)
def send_cancel_to_broker_task(order_id: int) -> None:
    services.send_cancel_to_broker(order_id=order_id)


@shared_task
def reconcile_order_task(order_id: int) -> None:
    services.reconcile_order(order_id=order_id)


@shared_task
def reconcile_unresolved_orders_task() -> None:
    services.reconcile_unresolved_orders()
