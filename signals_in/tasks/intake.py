"""Tasks: intake."""

from celery import shared_task

from signals_in import intake


@shared_task(ignore_result=True)
def hand_off_received_signals_task() -> None:
    """Beat: signals stored but never handed to the fan-out (the publish failed, or the web process
    ended between commit and publish) are handed off now."""
    intake.enqueue_processing(intake.signals_to_hand_off_again())
