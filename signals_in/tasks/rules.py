"""Tasks: automation rules."""

from celery import shared_task

from signals_in import automation


@shared_task(ignore_result=True)
def run_scheduled_rules_task() -> None:
    # Beat, every 30 s: each rule fires at most once per window occurrence and account.
    automation.run_scheduled_rules()
