"""Celery entry points of the order path: ids in, one service call each."""

from celery import shared_task
from celery.signals import worker_ready

from orders import booking, services


@shared_task(acks_late=True)
def send_orders_to_broker_task(order_ids: list[int]) -> None:
    # acks_late is safe: the compare-and-set claim inside makes a redelivery a no-op.
    services.send_orders_to_broker(order_ids=order_ids)


@shared_task(acks_late=True)
def book_broker_reports_task(connection_id: int, reports: list[dict], bands_to_drop: list[str] | None = None) -> None:
    # acks_late is safe: booking is idempotent (fills by fill id, statuses by the state table).
    booking.book_broker_reports(connection_id=connection_id, reports=reports, bands_to_drop=bands_to_drop or [])


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
def send_modifies_to_broker_task(order_ids: list[int]) -> None:
    # A redelivery finds no pending change once the first run settled it.
    services.send_modifies_to_broker(order_ids=order_ids)


# orders.plan_service imports this module (to enqueue); importing it when the task runs keeps
# that cycle out.
@shared_task(ignore_result=True)
def evaluate_plans_task(
    symbol: str, trailing: bool = False, follow_up: bool = False, price_round: bool = False
) -> None:
    """price_round: the evaluations prices start (plan_service.request_evaluation); follow_up:
    the settling run after stop moves; neither: every plan at the newest price (time exits).
    (`trailing` is the band-only run of the former debounce, kept for tasks queued before it.)"""
    from orders import plan_service

    if price_round:
        plan_service.evaluate_round(symbol)
        return
    if follow_up:
        plan_service.release_follow_up_slot(symbol)
    # A follow-up has nothing to do inside the band either: the answers to the moves it follows
    # drop the band when they are booked (plan_service._trigger).
    plan_service.evaluate_symbol(symbol=symbol, outside_band_only=trailing or follow_up)


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
