"""Celery entry points for broker connections."""

from celery import shared_task

from brokers import services
from orders import booking


@shared_task(acks_late=True)
def ingest_broker_events_task(connection_id: int, events: list[dict]) -> None:
    booking.ingest_broker_events(connection_id=connection_id, events=events)


@shared_task
def check_broker_health_task() -> None:
    services.check_all_connections()
