"""One-minute bars built from the last prices we see (docs/decisions/0013-bars-for-automation.md).

The price path only adds one Lua call to the Redis pipeline it already sends: the current bar of
each symbol lives in a Redis hash and is updated there; when a price of a later minute arrives, the
finished bar is pushed onto a list. `persist_finished_bars` (a beat, and before bars are read)
moves finished bars, and bars whose minute has passed without a new price, into brokers.Bar.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from brokers.indicators import OHLC
from brokers.models import Bar, Instrument
from brokers.ticks import normalize_price
from config.redis_client import get_redis, key

INTERVAL_SECONDS = 60

# KEYS: current bar hash, finished list, symbols set. ARGV: symbol, minute start (epoch s), price.
# A price of an earlier minute than the current bar (late, out of order) is ignored.
_ADD_PRICE = """
local start = tonumber(ARGV[2])
local current = tonumber(redis.call('HGET', KEYS[1], 's') or '-1')
if current == start then
  local price = tonumber(ARGV[3])
  if price > tonumber(redis.call('HGET', KEYS[1], 'h')) then redis.call('HSET', KEYS[1], 'h', ARGV[3]) end
  if price < tonumber(redis.call('HGET', KEYS[1], 'l')) then redis.call('HSET', KEYS[1], 'l', ARGV[3]) end
  redis.call('HSET', KEYS[1], 'c', ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'n', 1)
  return 0
end
if current > start then return 0 end
if current >= 0 then
  local b = redis.call('HMGET', KEYS[1], 's', 'o', 'h', 'l', 'c', 'n')
  redis.call('RPUSH', KEYS[2], table.concat({ARGV[1], b[1], b[2], b[3], b[4], b[5], b[6]}, '|'))
else
  redis.call('SADD', KEYS[3], ARGV[1])
end
redis.call('HSET', KEYS[1], 's', ARGV[2], 'o', ARGV[3], 'h', ARGV[3], 'l', ARGV[3], 'c', ARGV[3], 'n', 1)
return 1
"""

# KEYS: current bar hash, finished list. ARGV: symbol, the current minute's start. A bar whose
# minute is over (no price since) is finished now.
_CLOSE_STALE = """
local b = redis.call('HMGET', KEYS[1], 's', 'o', 'h', 'l', 'c', 'n')
if b[1] and tonumber(b[1]) < tonumber(ARGV[2]) then
  redis.call('RPUSH', KEYS[2], table.concat({ARGV[1], b[1], b[2], b[3], b[4], b[5], b[6]}, '|'))
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


def _current_key(symbol: str) -> str:
    return key("bars", "current", symbol)


def _finished_key() -> str:
    return key("bars", "finished")


def _symbols_key() -> str:
    return key("bars", "symbols")


def minute_start(at: datetime) -> int:
    epoch = int(at.timestamp())
    return epoch - epoch % INTERVAL_SECONDS


def add_price(pipeline: Any, *, symbol: str, price: Decimal, at: datetime) -> None:
    """Queue the bar update on the caller's pipeline (no round trip of its own)."""
    pipeline.eval(
        _ADD_PRICE, 3, _current_key(symbol), _finished_key(), _symbols_key(), symbol, minute_start(at), str(price)
    )


def current_bar(symbol: str) -> dict[str, str]:
    return get_redis().hgetall(_current_key(symbol))


def persist_finished_bars(*, now: datetime | None = None) -> int:
    """Store every finished bar (closing the ones whose minute has passed); returns how many."""
    redis = get_redis()
    this_minute = minute_start(now or timezone.now())
    symbols = sorted(redis.smembers(_symbols_key()))
    if symbols:
        pipe = redis.pipeline(transaction=False)
        for symbol in symbols:
            pipe.eval(_CLOSE_STALE, 2, _current_key(symbol), _finished_key(), symbol, this_minute)
        pipe.execute()
    # Take the list atomically: bars pushed meanwhile stay for the next run.
    pipe = redis.pipeline(transaction=True)
    pipe.lrange(_finished_key(), 0, -1)
    pipe.delete(_finished_key())
    rows, _ = pipe.execute()
    if not rows:
        return 0
    parsed = [row.split("|") for row in rows]
    instruments = {i.symbol: i for i in Instrument.objects.filter(symbol__in={p[0] for p in parsed})}
    bars = []
    for symbol, start, o, h, low, c, n in parsed:
        instrument = instruments.get(symbol)
        if instrument is None:
            continue
        tick = instrument.tick_size
        bars.append(
            Bar(
                instrument=instrument,
                interval_seconds=INTERVAL_SECONDS,
                start=datetime.fromtimestamp(int(start), tz=UTC),
                open=normalize_price(Decimal(o), tick),
                high=normalize_price(Decimal(h), tick),
                low=normalize_price(Decimal(low), tick),
                close=normalize_price(Decimal(c), tick),
                ticks=int(n),
            )
        )
    Bar.objects.bulk_create(
        bars,
        update_conflicts=True,
        unique_fields=["instrument", "interval_seconds", "start"],
        update_fields=["open", "high", "low", "close", "ticks"],
    )
    return len(bars)


def recent_bars(*, instrument: Instrument, count: int, now: datetime | None = None) -> list[OHLC]:
    """The last `count` finished one-minute bars of an instrument, oldest first (finished bars
    still in Redis are stored first). Minutes without a price have no bar: they are not invented."""
    now = now or timezone.now()
    persist_finished_bars(now=now)
    since = now - timedelta(seconds=INTERVAL_SECONDS * count * 4)  # bounded scan, gaps allowed
    rows = list(
        Bar.objects.filter(instrument=instrument, interval_seconds=INTERVAL_SECONDS, start__gte=since)
        .order_by("-start")
        .values_list("open", "high", "low", "close")[:count]
    )
    return [OHLC(*row) for row in reversed(rows)]
