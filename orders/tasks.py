"""Celery entry points of the order path: ids in, one service call each."""

from celery import shared_task
from celery.signals import worker_ready

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


@shared_task(acks_late=True)
def send_modify_to_broker_task(order_id: int) -> None:
    # A redelivery finds no pending change once the first run settled it.
    services.send_modify_to_broker(order_id=order_id)


@shared_task(acks_late=True)
def send_modifies_to_broker_task(order_ids: list[int]) -> None:
    services.send_modifies_to_broker(order_ids=order_ids)


# orders.plan_service imports this module (to enqueue); importing it when the task runs keeps
# that cycle out.
@shared_task(ignore_result=True)
def evaluate_plans_task(symbol: str, trailing: bool = False, follow_up: bool = False) -> None:
    from orders import plan_service

    if trailing or follow_up:
        plan_service.release_evaluation_slot(symbol, follow_up=follow_up)
    plan_service.evaluate_symbol(symbol=symbol, outside_band_only=trailing)


# -- Reconciliation with the broker (orders.reconciliation) ----------------------------------


@shared_task
def reconcile_all_connections_task(trigger: str = "beat") -> None:
    from orders import reconciliation  # imported late: it imports this module

    reconciliation.enqueue_reconciliations(trigger=trigger)


@shared_task
def reconcile_connection_task(connection_id: int, trigger: str) -> None:
    from orders import reconciliation

    reconciliation.reconcile_connection(connection_id=connection_id, trigger=trigger)


@shared_task
def reconcile_account_task(account_id: int, trigger: str) -> None:
    from orders import reconciliation

    reconciliation.reconcile_account(account_id=account_id, trigger=trigger)


@worker_ready.connect
def reconcile_at_worker_start(**_: object) -> None:
    # A worker that starts may follow one that died mid-call: look at every account once now
    # instead of waiting for the beat.
    reconcile_all_connections_task.delay(trigger="startup")
