"""Hands received signals to the fan-out workers (`process_signal_task`), in its own process
(`manage.py hand_off_signals`, a Procfile line), so the web tier publishes nothing.

The intake's insert notifies PostgreSQL's `signal_received` channel with the new id, and PostgreSQL
delivers that only when the insert commits; this process LISTENs and publishes what arrived
together in one batch. It also sweeps: every few seconds, RECEIVED signals of the last
HANDOFF_RETRY_UNTIL that it has not handed off within HANDOFF_RETRY_AFTER are handed off (again).
That covers notifications missed while it was down or reconnecting, signals stored without one
(the demo's SQLite, where the sweep is the only way in, every second), and tasks lost between the
publish and a worker. Older RECEIVED signals are too late to trade on unattended and stay for a
person (admin). Handing a signal off twice is harmless: the fan-out stores one outcome per account
and order client ids are deterministic (docs/decisions/0019).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from datetime import datetime, timedelta

import psycopg
from django.db import close_old_connections, connection
from django.utils import timezone

from config.postgres import psycopg_params
from signals_in.intake import SIGNAL_RECEIVED_CHANNEL
from signals_in.models import Signal, SignalStatus

logger = logging.getLogger(__name__)

HANDOFF_RETRY_AFTER = timedelta(seconds=30)
HANDOFF_RETRY_UNTIL = timedelta(minutes=5)
SWEEP_EVERY_SECONDS = 5.0  # PostgreSQL: notifications bring new signals at once
SWEEP_EVERY_SECONDS_WITHOUT_NOTIFY = 1.0  # SQLite (the demo): the sweep is the only way in
# After a notification, what else arrives this soon goes in the same publish batch.
BATCH_WINDOW_SECONDS = 0.002
SWEEP_LIMIT = 500


def enqueue_processing(signal_ids: list[int]) -> None:
    """Hand signals to the fan-out, one task each; several go in one Redis round trip (kombu's
    publish batch). Never raises: a signal whose hand-off is lost stays RECEIVED and the next
    sweep finds it."""
    from signals_in.tasks.fanout import process_signal_task  # tasks import the fan-out services

    if not signal_ids:
        return
    try:
        if len(signal_ids) > 1 and not process_signal_task.app.conf.task_always_eager:
            with process_signal_task.app.producer_or_acquire() as producer, producer.batch():
                for signal_id in signal_ids:
                    process_signal_task.apply_async((signal_id,), producer=producer)
        else:
            for signal_id in signal_ids:
                process_signal_task.delay(signal_id)
    except Exception:
        logger.exception("Signals %s are stored but their processing could not be enqueued", signal_ids)


def received_signals(*, now: datetime, limit: int = SWEEP_LIMIT) -> list[int]:
    """RECEIVED signals younger than HANDOFF_RETRY_UNTIL, oldest first."""
    return list(
        Signal.objects.filter(status=SignalStatus.RECEIVED, received_at__gte=now - HANDOFF_RETRY_UNTIL)
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )


class HandOffLoop:
    """Listen, publish, sweep. `run` until stopped; `run_once` is one turn (tests)."""

    def __init__(self) -> None:
        self.listens = connection.vendor == "postgresql"
        self.sweep_every = SWEEP_EVERY_SECONDS if self.listens else SWEEP_EVERY_SECONDS_WITHOUT_NOTIFY
        self.handed_off_at: dict[int, float] = {}  # signal id -> monotonic time of our last hand-off
        self.next_sweep = 0.0  # the first turn sweeps: catch up on what arrived while we were down
        self._listener: psycopg.Connection | None = None

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.run_once(wait=self.sweep_every)
            except Exception:
                logger.exception("Signal hand-off turn failed; sweeping again shortly")
                self.close()
                close_old_connections()
                self.next_sweep = 0.0
                stop.wait(1.0)
        self.close()

    def run_once(self, *, wait: float) -> list[int]:
        """Hand off what is due: notified signals (waiting up to `wait` seconds, or until the next
        sweep, for the first) and, when it is time, what the sweep finds. Returns the ids handed off."""
        if self.listens and self._listener is None:
            self._listener = psycopg.connect(**psycopg_params(), autocommit=True)
            self._listener.execute(f"LISTEN {SIGNAL_RECEIVED_CHANNEL}")
            self.next_sweep = 0.0  # notifications before LISTEN were missed
        now = time.monotonic()
        due: list[int] = []
        if now >= self.next_sweep:
            due += self._not_handed_off_lately(received_signals(now=timezone.now()), now)
            self.next_sweep = now + self.sweep_every
            self._forget_older_than(now - HANDOFF_RETRY_UNTIL.total_seconds())
        timeout = 0.0 if due else max(0.0, min(wait, self.next_sweep - now))
        due += self._not_handed_off_lately(self._notified(timeout), time.monotonic())
        due = list(dict.fromkeys(due))
        enqueue_processing(due)
        handed_at = time.monotonic()
        self.handed_off_at.update((signal_id, handed_at) for signal_id in due)
        return due

    def _notified(self, timeout: float) -> list[int]:
        if self._listener is None:
            time.sleep(timeout)
            return []
        payloads = [n.payload for n in self._listener.notifies(timeout=timeout, stop_after=1)]
        if payloads:
            payloads += [n.payload for n in self._listener.notifies(timeout=BATCH_WINDOW_SECONDS)]
        return [int(payload) for payload in payloads if payload.isdigit()]

    def _not_handed_off_lately(self, signal_ids: Iterable[int], now: float) -> list[int]:
        retry_after = HANDOFF_RETRY_AFTER.total_seconds()
        return [
            signal_id
            for signal_id in signal_ids
            if now - self.handed_off_at.get(signal_id, float("-inf")) >= retry_after
        ]

    def _forget_older_than(self, cutoff: float) -> None:
        self.handed_off_at = {k: at for k, at in self.handed_off_at.items() if at >= cutoff}

    def close(self) -> None:
        """Stop listening (the next turn listens again)."""
        if self._listener is not None:
            try:
                self._listener.close()
            finally:
                self._listener = None
