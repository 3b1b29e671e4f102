"""Celery entry points of risk monitoring."""

from celery import shared_task

from risk import services


@shared_task(ignore_result=True)
def mark_to_market_task(symbol: str) -> None:
    services.mark_to_market(symbol=symbol)
