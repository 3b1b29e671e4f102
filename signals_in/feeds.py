"""Polling prediction feeds: each due feed is fetched (httpx), its predictions become signals of
the feed's strategy (deduplicated by the feed's id), and every poll is recorded with the feed's health.

A feed that fails (timeout, connection error, HTTP error, a body that is not a feed answer) is
recorded and backs off: its interval doubles with each consecutive failure, up to a cap. Nothing
a feed answers can crash the worker.
"""

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from brokers.models import Instrument
from signals_in.models import FeedPoll, PredictionFeed, Signal, SignalSource, SignalStatus
from signals_in.predictions import FeedBodyError, ParsedFeed, Prediction, SkippedItem, parse_feed_body

logger = logging.getLogger(__name__)

# The longest a failing feed waits between polls, whatever its interval.
MAX_BACKOFF_SECONDS = 600
MAX_BODY_BYTES = 1_000_000


def poll_interval(*, interval_seconds: int, consecutive_failures: int) -> timedelta:
    """The feed's interval, doubled per consecutive failure, capped (never below the interval itself)."""
    doubled = interval_seconds * (2 ** min(consecutive_failures, 16))
    return timedelta(seconds=min(doubled, max(MAX_BACKOFF_SECONDS, interval_seconds)))


def is_due(feed: PredictionFeed, *, now: datetime) -> bool:
    if feed.last_polled_at is None:
        return True
    wait = poll_interval(interval_seconds=feed.poll_interval_seconds, consecutive_failures=feed.consecutive_failures)
    return feed.last_polled_at + wait <= now


@dataclass(frozen=True)
class FetchResult:
    http_status: int | None
    body: bytes | None
    error: str
    duration_ms: int


def fetch(feed: PredictionFeed) -> FetchResult:
    """GET the feed. Errors come back as text; the headers (secrets) never reach a log or an error."""
    started = time.monotonic()

    def done(status: int | None, body: bytes | None, error: str) -> FetchResult:
        return FetchResult(status, body, error[:500], int((time.monotonic() - started) * 1000))

    timeout = float(feed.timeout_seconds)
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            response = client.get(feed.url, headers={str(k): str(v) for k, v in (feed.headers or {}).items()})
    except httpx.TimeoutException:
        return done(None, None, f"Timed out after {feed.timeout_seconds} s.")
    except httpx.HTTPError as exc:
        return done(None, None, f"Could not reach the feed: {type(exc).__name__}.")
    if response.status_code >= 400:
        return done(response.status_code, None, f"The feed answered HTTP {response.status_code}.")
    if len(response.content) > MAX_BODY_BYTES:
        return done(response.status_code, None, f"The answer is larger than {MAX_BODY_BYTES} bytes.")
    return done(response.status_code, response.content, "")


def poll_due_feeds(*, now: datetime | None = None) -> list[FeedPoll]:
    """Poll every enabled feed whose interval (with backoff) has passed."""
    now = now or timezone.now()
    polls = []
    for feed in PredictionFeed.objects.filter(is_enabled=True).only(
        "pk", "last_polled_at", "poll_interval_seconds", "consecutive_failures"
    ):
        if is_due(feed, now=now) and (claimed := _claim(feed.pk, now=now, only_if_due=True)):
            polls.append(poll_feed(claimed, now=now))
    return polls


def poll_feed_now(*, feed_id: int) -> FeedPoll | None:
    """Poll one feed at once (staff's "poll now"); None when another worker is polling it right now."""
    now = timezone.now()
    feed = _claim(feed_id, now=now, only_if_due=False)
    return poll_feed(feed, now=now) if feed else None


def _claim(feed_id: int, *, now: datetime, only_if_due: bool) -> PredictionFeed | None:
    """Stamp last_polled_at under the row lock: a second worker skips the locked row, and once
    committed sees the feed as not due. The HTTP call happens after, outside any transaction."""
    with transaction.atomic():
        feed = (
            PredictionFeed.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("strategy")
            .filter(pk=feed_id)
            .first()
        )
        if feed is None or (only_if_due and not is_due(feed, now=now)):
            return None
        feed.last_polled_at = now
        feed.save(update_fields=["last_polled_at"])
    return feed


def poll_feed(feed: PredictionFeed, *, now: datetime) -> FeedPoll:
    result = fetch(feed)
    parsed: ParsedFeed | None = None
    error = result.error
    if not error:
        assert result.body is not None
        try:
            parsed = parse_feed_body(result.body)
        except FeedBodyError as exc:
            error = exc.reason
    try:
        return _record_poll(feed, now=now, result=result, parsed=parsed, error=error)
    except Exception as exc:  # the worker must survive anything a feed sends
        logger.exception("Recording a poll of feed %s failed", feed.pk)
        return _record_poll(
            feed, now=now, result=result, parsed=None, error=f"Storing the predictions failed: {type(exc).__name__}."
        )


def _record_poll(
    feed: PredictionFeed, *, now: datetime, result: FetchResult, parsed: ParsedFeed | None, error: str
) -> FeedPoll:
    with transaction.atomic():
        poll = FeedPoll(feed=feed, started_at=now, duration_ms=result.duration_ms, http_status=result.http_status)
        if parsed is None:
            poll.ok = False
            poll.error = error[:500]
            PredictionFeed.objects.filter(pk=feed.pk).update(
                last_error=poll.error, consecutive_failures=F("consecutive_failures") + 1
            )
            poll.save()
            logger.warning("Prediction feed %s failed: %s", feed.name, poll.error)
            return poll
        accepted, duplicates, skipped = _store_predictions(feed, parsed.predictions, now=now)
        skipped = parsed.skipped + skipped
        poll.ok = True
        poll.received = parsed.received
        poll.accepted = accepted
        poll.duplicates = duplicates
        poll.skipped = len(skipped)
        # An ok poll has no error; the skip reasons go there so staff see why items were dropped.
        poll.error = _skip_summary(skipped)
        poll.save()
        PredictionFeed.objects.filter(pk=feed.pk).update(last_ok_at=now, last_error="", consecutive_failures=0)
    return poll


def _skip_summary(skipped: list[SkippedItem]) -> str:
    if not skipped:
        return ""
    text = "Skipped: " + "; ".join(s.reason for s in skipped)
    return text if len(text) <= 500 else text[:497] + "..."


def resolve_prediction_symbol(symbol: str) -> Instrument | None:
    """An explicit contract (MNQZ6) by symbol; a root (MNQ, or TradingView's continuous MNQ1!) to
    its front contract by the roll table."""
    wanted = symbol.strip().upper()
    exact = Instrument.objects.tradable().filter(symbol=wanted).first()
    if exact is not None:
        return exact
    root = wanted[:-2] if wanted.endswith("1!") else wanted
    return Instrument.objects.front_of(root).first()


def _store_predictions(
    feed: PredictionFeed, predictions: list[Prediction], *, now: datetime
) -> tuple[int, int, list[SkippedItem]]:
    """Create one RECEIVED signal per new prediction and enqueue its fan-out on commit.
    Call inside a transaction. Returns (accepted, duplicates, skipped)."""
    from signals_in.tasks.fanout import process_signal_task  # the tasks module imports services

    ids = [p.external_id for p in predictions]
    known = set(
        Signal.objects.filter(strategy_id=feed.strategy_id, external_id__in=ids).values_list("external_id", flat=True)
    )
    accepted, duplicates, skipped = 0, 0, []
    instruments: dict[str, Instrument | None] = {}
    for index, prediction in enumerate(predictions):
        if prediction.external_id in known:
            duplicates += 1
            continue
        if prediction.confidence < feed.min_confidence:
            skipped.append(
                SkippedItem(
                    index,
                    "below_min_confidence",
                    f"{prediction.external_id}: confidence {prediction.confidence} is below {feed.min_confidence}",
                )
            )
            continue
        if prediction.symbol not in instruments:
            instruments[prediction.symbol] = resolve_prediction_symbol(prediction.symbol)
        instrument = instruments[prediction.symbol]
        if instrument is None:
            skipped.append(
                SkippedItem(index, "unknown_ticker", f"{prediction.external_id}: no tradable {prediction.symbol}")
            )
            continue
        raw = json.dumps(
            {
                "id": prediction.external_id,
                "symbol": prediction.symbol,
                "direction": prediction.direction,
                "confidence": str(prediction.confidence),
                "horizon": prediction.horizon,
            },
            sort_keys=True,
        )
        try:
            with transaction.atomic():  # a savepoint: a racing worker's row makes this a duplicate
                signal = Signal.objects.create(
                    strategy_id=feed.strategy_id,
                    source=SignalSource.PREDICTION,
                    status=SignalStatus.RECEIVED,
                    raw_body=raw,
                    content_type="application/json",
                    body_hash=hashlib.sha256(f"feed:{feed.pk}\x00{raw}".encode()).hexdigest(),
                    external_id=prediction.external_id,
                    received_at=now,
                    action=prediction.action,
                    ticker=prediction.symbol,
                    instrument=instrument,
                    order_type="market",
                    confidence=prediction.confidence,
                    payload={
                        "feed": feed.pk,
                        "direction": prediction.direction,
                        "horizon": prediction.horizon,
                        "size_by_confidence": feed.confidence_sizing,
                        "confidence": str(prediction.confidence),
                    },
                )
        except IntegrityError:
            duplicates += 1
            continue
        known.add(prediction.external_id)
        process_signal_task.delay_on_commit(signal.pk)
        accepted += 1
    return accepted, duplicates, skipped
