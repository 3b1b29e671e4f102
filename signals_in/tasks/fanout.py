"""Tasks: fan-out of signals to subscribed accounts, and the second leg of reversals."""

from celery import shared_task

from signals_in import fanout, selectors


@shared_task(acks_late=True)
def process_signal_task(signal_id: int) -> None:
    # acks_late is safe: each account's order has a deterministic client id, so a redelivery
    # finds what the first run stored and places nothing twice.
    fanout.process_signal(signal_id=signal_id)


@shared_task(acks_late=True)
def process_signal_chunk_task(signal_id: int, subscription_ids: list[int], expected: int) -> None:
    # A part of a large fan-out; as safe to redeliver as the whole.
    fanout.process_signal_chunk(signal_id=signal_id, subscription_ids=subscription_ids, expected=expected)


@shared_task(acks_late=True)
def place_reversal_entry_task(outcome_id: int) -> None:
    # Idempotent: only a WAITING_EXIT outcome with a filled exit places the entry, with its
    # deterministic client id.
    fanout.place_reversal_entry(outcome_id=outcome_id)


@shared_task
def expire_waiting_exits_task() -> None:
    """Beat: reversals whose exit did not fill in time fail; a filled exit whose entry task was
    lost gets its entry now."""
    for outcome_id in fanout.expire_waiting_exits():
        place_reversal_entry_task.delay(outcome_id)


def fills_booked(*, fills: dict[int, list[int]]) -> None:
    """settings.ORDER_FILL_LISTENERS: called on commit of booked fills (ids by account id); must
    only enqueue work."""
    for outcome_id in selectors.reversals_ready(fills):
        place_reversal_entry_task.delay(outcome_id)
