"""Webhook intake: a TradingView (or TradersPost-style) POST becomes one stored Signal, fast.

The answer must come well inside TradingView's 3 s, and a stored signal is never answered with
a 5xx (TradingView resends on 5xx only). So intake only checks and stores: the insert notifies
PostgreSQL's `signal_received` channel, delivered on commit, and the hand-off process
(signals_in.handoff) gives the signal to the fan-out workers; the web process publishes nothing.
What is refused for the body's sake (bad input, wrong passphrase, source not allowed, strategy off)
is stored as REJECTED with the raw body; what is refused before we know whose it is (unknown token)
or to protect us (rate limit) is not stored.

The intake is written once, as a generator that yields the I/O it needs (`Fetch`, `CountRequest`,
`StoreSignal`) and is sent the results: `receive_tradingview_webhook` runs it on Django's
connection (the Django view, tests, the demo's SQLite); the ASGI fast path runs the same steps on
the event loop with its own async connections (signals_in.intake_io), so a webhook needs no thread
(docs/decisions/0019).

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
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from brokers.ticks import normalize_price, round_to_tick
from config.redis_client import get_redis, key
from signals_in import strategies
from signals_in.models import Signal, SignalSource, SignalStatus
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
from signals_in.tickers import Contract, ContractLookup, contract_lookup

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


# -- The steps ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetch:
    """Run a query: the rows of its last statement ([] when that returns none)."""

    sql: str
    params: Sequence[Any]
    # A failure is logged and answered None instead of failing the webhook (bookkeeping only).
    best_effort: bool = False


@dataclass(frozen=True)
class FetchEach:
    """Run several queries in one round trip: a list of rows per query."""

    queries: Sequence[tuple[str, Sequence[Any]]]
    best_effort: bool = False

    def as_one(self) -> tuple[str, list[Any]]:
        """One simple-protocol query of all of them (parameters are bound client-side)."""
        return ";\n".join(sql for sql, _ in self.queries), [p for _, params in self.queries for p in params]


@dataclass(frozen=True)
class CountRequest:
    """Count one request on a per-minute Redis counter: the count so far this minute, or None when
    Redis is down (the signal is taken rather than lost)."""

    counter: str
    best_effort: bool = True


@dataclass(frozen=True)
class StoreSignal:
    """Insert the signal unless it is a duplicate: [(id, ...)] when stored, [] when not.
    `insert_statement` is the SQL for PostgreSQL."""

    fields: dict[str, Any]
    best_effort: bool = False


Step = Fetch | FetchEach | CountRequest | StoreSignal
Steps = Generator[Step, Any, "WebhookAnswer"]


def receive_tradingview_webhook(request: WebhookRequest) -> WebhookAnswer:
    """The webhook on Django's connection (the Django view, tests, the demo's SQLite)."""
    steps = webhook_steps(request)
    result: Any = None
    while True:
        try:
            step = steps.send(result)
        except StopIteration as done:
            return done.value
        try:
            result = _perform_on_django(step)
        except Exception:
            if not step.best_effort:
                raise
            result = skipped(step)


def skipped(step: Step) -> None:
    """What a best-effort step that failed answers (with the failure logged): nothing."""
    logger.warning("Webhook step %s failed; carrying on without it", type(step).__name__, exc_info=True)


def _perform_on_django(step: Step) -> Any:
    if isinstance(step, CountRequest):
        return int(get_redis().eval(RATE_COUNT_LUA, 1, step.counter))
    if connection.vendor != "postgresql":  # SQLite (the demo): one statement at a time
        if isinstance(step, StoreSignal):
            return _store_with_orm(step.fields)
        if isinstance(step, FetchEach):
            return [_execute_on_django(sql, params)[-1] for sql, params in step.queries]
    if isinstance(step, FetchEach):
        return _execute_on_django(*step.as_one())
    sql, params = (step.sql, step.params) if isinstance(step, Fetch) else insert_statement(step.fields)
    return _execute_on_django(sql, params)[-1]


def _execute_on_django(sql: str, params: Sequence[Any]) -> list[list[Any]]:
    """The rows of each statement of the query."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        results = [cursor.fetchall() if cursor.description else []]
        while connection.vendor == "postgresql" and cursor.nextset():  # SQLite: one statement a query
            results.append(cursor.fetchall() if cursor.description else [])
    return results


def webhook_steps(request: WebhookRequest) -> Steps:
    token_hash = strategies.token_hash(request.token) if _TOKEN_SHAPE.match(request.token or "") else None
    if token_hash is None:  # not even the shape of one of ours: no query
        return _NOT_FOUND
    # The body is read before we know whose it is, so its contract and the token are asked for
    # in one round trip; what it says is judged only once the token lets it in.
    body = _read_body(request.body)
    questions: list[tuple[str, Sequence[Any]]] = [(_LIVE_TOKEN_SQL, [token_hash])]
    if body.lookup is not None:
        questions.append((body.lookup.sql, body.lookup.params))
    answers = yield FetchEach(questions)
    token = _live_token(answers[0])
    if token is None:
        return _NOT_FOUND
    if token.rate_limit_per_minute:
        count = yield CountRequest(rate_counter(token.strategy_id))
        if count is not None and count > token.rate_limit_per_minute:
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
        "source": SignalSource.TRADINGVIEW.value,
        "received_at": received_at,
        "body_hash": hashlib.sha256(token.token_hash.encode() + b"\n" + request.body).hexdigest(),
        "content_type": request.content_type[:100],
        "source_ip": source_ip,
    }
    understood = _understand(token, body, source_ip, contract_rows=answers[1] if body.lookup else [])
    if isinstance(understood, Rejection):
        fields.update(
            status=SignalStatus.REJECTED.value,
            reject_code=understood.code,
            reject_reason=understood.reason[:500],
            raw_body=redact_passphrase(body_text(request.body[:MAX_BODY_BYTES])),
        )
    else:
        fields.update(understood, raw_body=redact_passphrase(body_text(request.body)))

    answer = yield from _store(fields, understood)
    if token.last_used_at is None or received_at - token.last_used_at >= TOKEN_TOUCH_INTERVAL:
        # last_used_at to the minute: one UPDATE a minute per token at most, not one per request.
        yield Fetch(_TOUCH_SQL, [received_at, token.pk], best_effort=True)
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


_NOT_FOUND = WebhookAnswer(404, {"code": "not_found", "detail": "No such webhook.", "field": None})


def _live_token(rows: Sequence[Sequence[Any]]) -> LiveToken | None:
    if not rows:
        return None
    row = rows[0]
    allowed_ips = json.loads(row[6]) if isinstance(row[6], str) else row[6]
    return LiveToken(*row[:6], allowed_ips=allowed_ips or [], rate_limit_per_minute=row[7])


_TOUCH_SQL = "UPDATE signals_in_webhooktoken SET last_used_at = %s WHERE id = %s"


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


def rate_counter(strategy_id: int) -> str:
    return key("webhooks", "rate", str(strategy_id), str(int(time.time() // 60)))


# Count and (on the minute's first request) expire in one command: EVAL KEYS[1] = the counter.
RATE_COUNT_LUA = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], 120) end
return count
"""


# -- What it says ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadBody:
    """What a body says as far as it can be read without knowing whose it is."""

    size: int
    data: dict[str, Any] | None = None  # decoded (the passphrase is checked against it)
    parsed: ParsedSignal | None = None
    lookup: ContractLookup | None = None
    refusal: Rejection | None = None  # why it cannot be read, when it cannot


def _read_body(body: bytes) -> ReadBody:
    if len(body) > MAX_BODY_BYTES:
        return ReadBody(len(body))
    try:
        data = decode_body(body)
    except ParseError as exc:
        return ReadBody(len(body), refusal=Rejection(exc.code, exc.detail, exc.field))
    except Exception:
        logger.exception("Webhook body could not be read")
        return ReadBody(len(body), refusal=_UNREADABLE)
    try:
        parsed = parse_fields(data)
        return ReadBody(len(body), data, parsed, contract_lookup(parsed.ticker))
    except ParseError as exc:
        return ReadBody(len(body), data, refusal=Rejection(exc.code, exc.detail, exc.field))
    except Exception:
        logger.exception("Webhook body could not be read")
        return ReadBody(len(body), data, refusal=_UNREADABLE)


def _understand(
    strategy: LiveToken, body: ReadBody, source_ip: str | None, *, contract_rows: Sequence[Sequence[Any]]
) -> dict[str, Any] | Rejection:
    """The Signal fields of an accepted body, or why it is refused (in this order: size, source,
    strategy switched off, passphrase, then what the body says)."""
    if body.size > MAX_BODY_BYTES:
        return Rejection("body_too_large", f"The body is larger than {MAX_BODY_BYTES // 1024} KB; it is kept cut.")
    if strategy.allowed_ips and source_ip not in strategy.allowed_ips:
        return Rejection("source_not_allowed", f"Requests from {source_ip or 'an unknown address'} are not allowed.")
    if not strategy.is_enabled:
        return Rejection("strategy_disabled", "The strategy is switched off; its signals are refused.")
    if body.data is None:
        return body.refusal or _UNREADABLE
    wanted = strategy.passphrase_hash
    if wanted and not strategies.passphrase_matches(wanted, passphrase_of(body.data)):
        return Rejection("bad_passphrase", "The body's passphrase is missing or wrong.", "passphrase")
    if body.refusal is not None or body.parsed is None or body.lookup is None:
        return body.refusal or _UNREADABLE
    try:
        return _signal_fields(body.parsed, body.lookup.contract_from(contract_rows))
    except ParseError as exc:
        return Rejection(exc.code, exc.detail, exc.field)
    except Exception:
        logger.exception("Webhook body could not be read")
        return _UNREADABLE


_UNREADABLE = Rejection("unreadable", "We could not read this signal; it is stored for a person to look at.")


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
        "status": SignalStatus.RECEIVED.value,
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


def _store(fields: dict[str, Any], understood: dict[str, Any] | Rejection) -> Generator[Step, Any, WebhookAnswer]:
    stored = yield StoreSignal(fields)
    signal_id = stored[0][0] if stored else None
    if signal_id is None:
        sql, params = _first_of_duplicates_query(fields)
        rows = yield Fetch(sql, params)
        if not rows:  # pragma: no cover - the insert saw one; it cannot have gone since
            raise RuntimeError("A duplicate signal vanished.")
        return _duplicate_answer(rows[0])
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
# The channel the insert notifies with the id of each RECEIVED signal (signals_in.handoff listens).
SIGNAL_RECEIVED_CHANNEL = "signal_received"
# Lock, duplicate check, insert and notify in one round trip: two statements in one simple-protocol
# query (parameters are bound client-side). Outside a transaction PostgreSQL runs them as one
# implicit transaction, committed before the answer comes back, so the advisory lock is held until
# the row is durable; under READ COMMITTED the INSERT takes its snapshot after the lock is granted,
# so it sees a duplicate that an earlier holder of the lock committed. Inside a transaction (tests,
# a caller's atomic block) the lock is held until that one ends, and the notification, like every
# NOTIFY, is delivered only if it commits. The NOT EXISTS is the duplicate rule (the same body
# within the window, or the same id); the unique (strategy, external_id) index backs the latter up.
# Written out because the ORM's insert and an atomic block cost more than the database work here
# (BEGIN, lock, insert and COMMIT were four round trips).
_INSERT_SQL = f"""
SELECT pg_advisory_xact_lock(%s);
WITH stored AS (
INSERT INTO signals_in_signal ({", ".join(SIGNAL_COLUMNS)})
SELECT {", ".join("%s::jsonb" if c == "payload" else "%s::inet" if c == "source_ip" else "%s" for c in SIGNAL_COLUMNS)}
 WHERE NOT EXISTS (
       SELECT 1 FROM signals_in_signal d
        WHERE d.strategy_id = %s
          AND ((d.body_hash = %s AND d.received_at >= %s
                AND NOT (d.status = 'rejected' AND d.reject_code IN ({", ".join(["%s"] * len(SETTING_REJECTIONS))})))
               OR (%s <> '' AND d.external_id = %s)))
ON CONFLICT (strategy_id, external_id) WHERE NOT (external_id = '') DO NOTHING
RETURNING id, status
)
SELECT id, CASE WHEN status = 'received' THEN pg_notify('{SIGNAL_RECEIVED_CHANNEL}', id::text) END
  FROM stored
"""  # noqa: S608 - built from constants only; every value is a parameter


def insert_statement(fields: dict[str, Any]) -> tuple[str, list[Any]]:
    """PostgreSQL: the statement that stores the signal unless it is a duplicate, and its
    parameters. Its last result is one row (id, _) when stored, none for a duplicate."""
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
    return _INSERT_SQL, [_lock_id(fields), *values, *duplicate_args]


def _store_with_orm(fields: dict[str, Any]) -> list[tuple[int]]:
    """SQLite (the demo): it takes the write lock at BEGIN IMMEDIATE, so writers queue anyway. No
    notification: the hand-off polls there."""
    with transaction.atomic():
        sql, params = _first_of_duplicates_query(fields)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            if cursor.fetchone() is not None:
                return []
        return [(Signal.objects.create(**fields).pk,)]


_DEFAULTS: dict[str, Any] = {
    "status": SignalStatus.RECEIVED.value,
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


def _first_of_duplicates_query(fields: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """The query for the first signal the new one duplicates: (pk, status, reject_code, reject_reason)."""
    same_body = Q(body_hash=fields["body_hash"], received_at__gte=fields["received_at"] - DUPLICATE_WINDOW) & ~Q(
        status=SignalStatus.REJECTED, reject_code__in=SETTING_REJECTIONS
    )
    external_id = fields.get("external_id", "")
    same = same_body | Q(external_id=external_id) if external_id else same_body
    return (
        Signal.objects.filter(Q(strategy_id=fields["strategy_id"]) & same)
        .order_by("received_at", "pk")
        .values_list("pk", "status", "reject_code", "reject_reason")[:1]
        .query.sql_with_params()
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
