"""Webhook intake: a TradingView (or TradersPost-style) POST becomes one stored Signal, fast.

The answer must come well inside TradingView's 3 s, and a stored signal is never answered with
a 5xx (TradingView resends on 5xx only). So intake only checks, stores and hands off: the fan-out
to accounts runs in a task enqueued on commit (the ASGI fast path enqueues after answering), and a
beat sweep hands off again any RECEIVED signal whose hand-off was lost. What is refused for the
body's sake (bad input, wrong passphrase, source not allowed, strategy off) is stored as REJECTED
with the raw body; what is refused before we know whose it is (unknown token) or to protect us
(rate limit) is not stored.

Duplicates (the same token and body within 24 h, or the same explicit `id` per strategy) answer
with the first signal and store nothing. Concurrent identical requests are serialised by a
transaction-scoped PostgreSQL advisory lock on the duplicate key around check + insert, sent with
the insert in one round trip (docs/decisions/0016).
"""

import hashlib
import ipaddress
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from brokers.ticks import normalize_price, round_to_tick
from config.redis_client import get_redis, key
from signals_in import strategies
from signals_in.models import Signal, SignalSource, SignalStatus, WebhookToken
from signals_in.parsing import (
    MAX_BODY_BYTES,
    ParsedSignal,
    ParseError,
    body_text,
    decode_body,
    normalised_payload,
    parse_fields,
    passphrase_of,
    redact_passphrase,
)
from signals_in.tickers import Contract, contract_for_ticker

logger = logging.getLogger(__name__)

DUPLICATE_WINDOW = timedelta(hours=24)
# Refusals that depend on the strategy's settings rather than the body: a later delivery of the
# same body (after the setting is fixed) is judged afresh, not as a duplicate.
SETTING_REJECTIONS = ("source_not_allowed", "strategy_disabled")
HTTP_STATUS_OF_REJECTION = {"source_not_allowed": 403}
TOKEN_TOUCH_INTERVAL = timedelta(seconds=60)
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


@dataclass(frozen=True)
class WebhookRequest:
    token: str
    body: bytes
    content_type: str = ""
    remote_addr: str | None = None
    forwarded_for: str | None = None


@dataclass(frozen=True)
class WebhookAnswer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rejection:
    code: str
    reason: str
    field: str | None = None

    @property
    def http_status(self) -> int:
        return HTTP_STATUS_OF_REJECTION.get(self.code, 400)


def receive_tradingview_webhook(request: WebhookRequest) -> WebhookAnswer:
    token = _live_token(request.token)
    if token is None:
        return WebhookAnswer(404, {"code": "not_found", "detail": "No such webhook.", "field": None})
    if _over_rate_limit(token.strategy_id, token.rate_limit_per_minute):
        return WebhookAnswer(
            429,
            {
                "code": "rate_limited",
                "detail": f"More than {token.rate_limit_per_minute} requests this minute for this strategy.",
                "field": None,
            },
            headers={"Retry-After": str(60 - int(time.time()) % 60)},
        )

    received_at = timezone.now()
    source_ip = client_ip(request.remote_addr, request.forwarded_for)
    fields = {
        "strategy_id": token.strategy_id,
        "source": SignalSource.TRADINGVIEW,
        "received_at": received_at,
        "body_hash": hashlib.sha256(token.token_hash.encode() + b"\n" + request.body).hexdigest(),
        "content_type": request.content_type[:100],
        "source_ip": source_ip,
    }
    understood = _understand(token, request.body, source_ip)
    if isinstance(understood, Rejection):
        fields.update(
            status=SignalStatus.REJECTED,
            reject_code=understood.code,
            reject_reason=understood.reason[:500],
            raw_body=redact_passphrase(body_text(request.body[:MAX_BODY_BYTES])),
        )
    else:
        fields.update(understood, raw_body=redact_passphrase(body_text(request.body)))

    answer = _store(fields, understood)
    _touch(token, received_at)
    return answer


# -- Who is asking -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveToken:
    """A live webhook token and the settings of its strategy that intake needs."""

    pk: int
    token_hash: str
    last_used_at: datetime | None
    strategy_id: int
    is_enabled: bool
    passphrase_hash: str
    allowed_ips: list[str]
    rate_limit_per_minute: int


# The hot path's first query, written out: the ORM's query building cost more than the query.
_LIVE_TOKEN_SQL = """
SELECT t.id, t.token_hash, t.last_used_at, s.id, s.is_enabled, s.passphrase_hash, s.allowed_ips,
       s.rate_limit_per_minute
  FROM signals_in_webhooktoken t
  JOIN signals_in_strategy s ON s.id = t.strategy_id
 WHERE t.token_hash = %s AND t.revoked_at IS NULL
"""


def _live_token(raw: str) -> LiveToken | None:
    if not _TOKEN_SHAPE.match(raw or ""):
        return None  # not even the shape of one of ours: no query
    with connection.cursor() as cursor:
        cursor.execute(_LIVE_TOKEN_SQL, [strategies.token_hash(raw)])
        row = cursor.fetchone()
    if row is None:
        return None
    allowed_ips = json.loads(row[6]) if isinstance(row[6], str) else row[6]
    return LiveToken(*row[:6], allowed_ips=allowed_ips or [], rate_limit_per_minute=row[7])


def client_ip(remote_addr: str | None, forwarded_for: str | None) -> str | None:
    """REMOTE_ADDR, unless settings.WEBHOOK_TRUSTED_PROXIES says how many proxies of ours append
    to X-Forwarded-For: then the address the outermost of them saw. Entries further left are
    whatever the client wrote, so they are never trusted."""
    proxies = getattr(settings, "WEBHOOK_TRUSTED_PROXIES", 0)
    candidate = remote_addr
    if proxies and forwarded_for:
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        if len(hops) >= proxies:
            candidate = hops[-proxies]
    try:
        return str(ipaddress.ip_address((candidate or "").strip()))
    except ValueError:
        return None


def _over_rate_limit(strategy_id: int, per_minute: int) -> bool:
    if not per_minute:
        return False  # 0: no limit
    counter = key("webhooks", "rate", str(strategy_id), str(int(time.time() // 60)))
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.incr(counter)
        pipe.expire(counter, 120)
        count, _ = pipe.execute()
    except Exception:  # Redis down: take the signal rather than lose it
        logger.warning("Webhook rate limit not checked: Redis unavailable", exc_info=True)
        return False
    return int(count) > per_minute


# -- What it says ---------------------------------------------------------------------------------


def _understand(strategy: LiveToken, body: bytes, source_ip: str | None) -> dict[str, Any] | Rejection:
    """The Signal fields of an accepted body, or why it is refused."""
    if len(body) > MAX_BODY_BYTES:
        return Rejection("body_too_large", f"The body is larger than {MAX_BODY_BYTES // 1024} KB; it is kept cut.")
    if strategy.allowed_ips and source_ip not in strategy.allowed_ips:
        return Rejection("source_not_allowed", f"Requests from {source_ip or 'an unknown address'} are not allowed.")
    if not strategy.is_enabled:
        return Rejection("strategy_disabled", "The strategy is switched off; its signals are refused.")
    try:
        data = decode_body(body)
        wanted = strategy.passphrase_hash
        if wanted and not strategies.passphrase_matches(wanted, passphrase_of(data)):
            return Rejection("bad_passphrase", "The body's passphrase is missing or wrong.", "passphrase")
        parsed = parse_fields(data)
        return _signal_fields(parsed, contract_for_ticker(parsed.ticker))
    except ParseError as exc:
        return Rejection(exc.code, exc.detail, exc.field)
    except DatabaseError:
        raise  # nothing stored yet: a 5xx lets TradingView resend
    except Exception:
        logger.exception("Webhook body could not be read")
        return Rejection("unreadable", "We could not read this signal; it is stored for a person to look at.")


def _signal_fields(parsed: ParsedSignal, instrument: Contract) -> dict[str, Any]:
    tick = instrument.tick_size
    limit_price = _on_tick(parsed.limit_price, tick, "limit_price")
    stop_price = _on_tick(parsed.stop_price, tick, "stop_price")
    payload = normalised_payload(parsed)
    payload["instrument"] = instrument.symbol
    for level in ("stop_loss", "take_profit"):
        if "price" in payload.get(level, {}):
            payload[level]["price"] = format(_on_tick(Decimal(payload[level]["price"]), tick, level), "f")
        if "limit_price" in payload.get(level, {}):
            payload[level]["limit_price"] = format(_on_tick(Decimal(payload[level]["limit_price"]), tick, level), "f")
    for name, value in (("limit_price", limit_price), ("stop_price", stop_price)):
        if value is not None:
            payload[name] = format(value, "f")
    return {
        "status": SignalStatus.RECEIVED,
        "action": parsed.action,
        "sentiment": parsed.sentiment,
        "ticker": parsed.ticker,
        "instrument_id": instrument.pk,
        "quantity": parsed.quantity,
        "order_type": parsed.order_type,
        "limit_price": limit_price,
        "stop_price": stop_price,
        "signal_price": parsed.signal_price,
        "signal_time": parsed.signal_time,
        "external_id": parsed.external_id,
        "payload": payload,
    }


def _on_tick(price: Decimal | None, tick: Decimal, name: str) -> Decimal | None:
    if price is None:
        return None
    rounded = normalize_price(round_to_tick(price, tick), tick)
    if rounded <= 0:
        raise ParseError(f"{name} {price} is below one tick ({tick}).", code="invalid_price", field=name)
    return rounded


# -- Storing it once ------------------------------------------------------------------------------


def _store(fields: dict[str, Any], understood: dict[str, Any] | Rejection) -> WebhookAnswer:
    signal_id = _insert_unless_duplicate(fields)
    if signal_id is not None and fields["status"] == SignalStatus.RECEIVED:
        # At once when no transaction is open (the insert has committed), else on its commit.
        transaction.on_commit(lambda: _enqueue_processing(signal_id))
    if signal_id is None:
        first = _first_of_duplicates(fields)
        if first is None:  # pragma: no cover - the insert saw one; it cannot have gone since
            raise RuntimeError("A duplicate signal vanished.")
        return _duplicate_answer(first)
    if isinstance(understood, Rejection):
        return WebhookAnswer(
            understood.http_status,
            {
                "code": understood.code,
                "detail": understood.reason,
                "field": understood.field,
                "signal_id": signal_id,
                "duplicate": False,
                "status": SignalStatus.REJECTED.value,
            },
        )
    return WebhookAnswer(200, {"signal_id": signal_id, "duplicate": False, "status": SignalStatus.RECEIVED.value})


def _lock_id(fields: dict[str, Any]) -> int:
    external_id = fields.get("external_id", "")
    # Same body => same id, so when there is an id one lock covers both duplicate rules.
    name = f"id:{fields['strategy_id']}:{external_id}" if external_id else f"body:{fields['body_hash']}"
    return int.from_bytes(hashlib.sha256(f"webhook:{name}".encode()).digest()[:8], "big", signed=True)


SIGNAL_COLUMNS = (
    "strategy_id",
    "source",
    "status",
    "reject_code",
    "reject_reason",
    "raw_body",
    "content_type",
    "source_ip",
    "body_hash",
    "external_id",
    "received_at",
    "action",
    "sentiment",
    "ticker",
    "instrument_id",
    "quantity",
    "order_type",
    "limit_price",
    "stop_price",
    "signal_price",
    "signal_time",
    "payload",
)
# Lock, duplicate check and insert in one round trip: two statements in one simple-protocol query
# (Django's cursor binds parameters client-side). Outside a transaction PostgreSQL runs them as one
# implicit transaction, committed before the answer comes back, so the advisory lock is held until
# the row is durable; under READ COMMITTED the INSERT takes its snapshot after the lock is granted,
# so it sees a duplicate that an earlier holder of the lock committed. Inside a transaction (tests,
# a caller's atomic block) the lock is held until that one ends. The NOT EXISTS is the duplicate
# rule (the same body within the window, or the same id); the unique (strategy, external_id) index
# backs the latter up. Written out because the ORM's insert and an atomic block cost more than the
# database work here (BEGIN, lock, insert and COMMIT were four round trips).
_INSERT_SQL = f"""
SELECT pg_advisory_xact_lock(%s);
INSERT INTO signals_in_signal ({", ".join(SIGNAL_COLUMNS)})
SELECT {", ".join("%s::jsonb" if c == "payload" else "%s::inet" if c == "source_ip" else "%s" for c in SIGNAL_COLUMNS)}
 WHERE NOT EXISTS (
       SELECT 1 FROM signals_in_signal d
        WHERE d.strategy_id = %s
          AND ((d.body_hash = %s AND d.received_at >= %s
                AND NOT (d.status = 'rejected' AND d.reject_code IN ({", ".join(["%s"] * len(SETTING_REJECTIONS))})))
               OR (%s <> '' AND d.external_id = %s)))
ON CONFLICT (strategy_id, external_id) WHERE NOT (external_id = '') DO NOTHING
RETURNING id
"""  # noqa: S608 - built from constants only; every value is a parameter


def _insert_unless_duplicate(fields: dict[str, Any]) -> int | None:
    """The new signal's id, or None when it is a duplicate (nothing stored)."""
    if connection.vendor != "postgresql":
        # SQLite (the demo) takes the write lock at BEGIN IMMEDIATE: writers queue anyway.
        with transaction.atomic():
            if _first_of_duplicates(fields) is not None:
                return None
            return Signal.objects.create(**fields).pk
    row = {**_DEFAULTS, **fields}
    values = [json.dumps(row["payload"]) if c == "payload" else row[c] for c in SIGNAL_COLUMNS]
    external_id = row["external_id"]
    duplicate_args = [
        row["strategy_id"],
        row["body_hash"],
        row["received_at"] - DUPLICATE_WINDOW,
        *SETTING_REJECTIONS,
        external_id,
        external_id,
    ]
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_SQL, [_lock_id(fields), *values, *duplicate_args])
        cursor.nextset()  # past the lock's result to the INSERT's
        inserted = cursor.fetchone()
    return inserted[0] if inserted else None


_DEFAULTS: dict[str, Any] = {
    "status": SignalStatus.RECEIVED,
    "reject_code": "",
    "reject_reason": "",
    "external_id": "",
    "action": "",
    "sentiment": "",
    "ticker": "",
    "instrument_id": None,
    "quantity": None,
    "order_type": "",
    "limit_price": None,
    "stop_price": None,
    "signal_price": None,
    "signal_time": None,
    "payload": {},
}


def _first_of_duplicates(fields: dict[str, Any]) -> tuple[int, str, str, str] | None:
    same_body = Q(body_hash=fields["body_hash"], received_at__gte=fields["received_at"] - DUPLICATE_WINDOW) & ~Q(
        status=SignalStatus.REJECTED, reject_code__in=SETTING_REJECTIONS
    )
    external_id = fields.get("external_id", "")
    same = same_body | Q(external_id=external_id) if external_id else same_body
    return (
        Signal.objects.filter(Q(strategy_id=fields["strategy_id"]) & same)
        .order_by("received_at", "pk")
        .values_list("pk", "status", "reject_code", "reject_reason")
        .first()
    )


def _duplicate_answer(first: tuple[int, str, str, str]) -> WebhookAnswer:
    signal_id, status, reject_code, reject_reason = first
    if status == SignalStatus.REJECTED:
        # The first delivery was refused: so is this one, for the same reason.
        return WebhookAnswer(
            HTTP_STATUS_OF_REJECTION.get(reject_code, 400),
            {
                "code": reject_code,
                "detail": reject_reason,
                "field": None,
                "signal_id": signal_id,
                "duplicate": True,
                "status": status,
            },
        )
    return WebhookAnswer(200, {"signal_id": signal_id, "duplicate": True, "status": status})


def _enqueue_processing(signal_id: int) -> None:
    deferred = getattr(_handoff, "deferred", None)
    if deferred is not None:
        deferred.append(signal_id)
        return
    enqueue_processing([signal_id])


def enqueue_processing(signal_ids: list[int]) -> None:
    """Hand committed signals to the fan-out, one task each. Several at once go in one Redis round
    trip (kombu's publish batch: ~0.3 ms of CPU a message instead of ~0.55). Never raises: a signal
    whose hand-off is lost stays RECEIVED and `signals_to_hand_off_again` finds it."""
    from signals_in.tasks.fanout import process_signal_task

    if len(signal_ids) > 1 and not process_signal_task.app.conf.task_always_eager:
        try:
            with process_signal_task.app.producer_or_acquire() as producer, producer.batch():
                for signal_id in signal_ids:
                    process_signal_task.apply_async((signal_id,), producer=producer)
        except Exception:
            logger.exception("Signals %s stored but their processing could not be enqueued", signal_ids)
        return
    for signal_id in signal_ids:
        try:
            process_signal_task.delay(signal_id)
        except Exception:
            logger.exception("Signal %s stored but its processing could not be enqueued", signal_id)


_handoff = threading.local()


@contextmanager
def processing_deferred() -> Iterator[list[int]]:
    """Inside, signals to process are collected in the yielded list instead of enqueued, so the
    caller can answer first and enqueue them after (`enqueue_processing`): the publish (~0.4 ms of
    CPU and a Redis round trip) is then off the answer's path. A lost hand-off is caught up by the
    sweep, so nothing is lost if the process ends in between."""
    collected: list[int] = []
    _handoff.deferred = collected
    try:
        yield collected
    finally:
        _handoff.deferred = None


# Beat's safety net under the hand-off. Younger RECEIVED signals are probably still queued or being
# fanned out; older ones are too late to trade on without a person deciding (they stay RECEIVED,
# visible in the admin).
HANDOFF_RETRY_AFTER = timedelta(seconds=30)
HANDOFF_RETRY_UNTIL = timedelta(minutes=5)


def signals_to_hand_off_again(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """RECEIVED signals between HANDOFF_RETRY_AFTER and HANDOFF_RETRY_UNTIL old, oldest first:
    their hand-off may have been lost. Handing one off twice is harmless (the fan-out stores one
    outcome per account and order client ids are deterministic)."""
    now = now or timezone.now()
    return list(
        Signal.objects.filter(
            status=SignalStatus.RECEIVED,
            received_at__lt=now - HANDOFF_RETRY_AFTER,
            received_at__gte=now - HANDOFF_RETRY_UNTIL,
        )
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )


def _touch(token: LiveToken, now: datetime) -> None:
    """last_used_at to the minute: one UPDATE a minute per token at most, not one per request."""
    if token.last_used_at is not None and now - token.last_used_at < TOKEN_TOUCH_INTERVAL:
        return
    try:
        WebhookToken.objects.filter(pk=token.pk).update(last_used_at=now)
    except DatabaseError:
        logger.warning("Could not record the use of webhook token %s", token.pk, exc_info=True)
