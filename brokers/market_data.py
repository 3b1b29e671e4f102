"""Last prices per instrument, kept in Redis; every write is also pushed to the symbol's quote group."""

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from django.utils import timezone
from redis.client import Pipeline

from brokers import bars
from brokers.realtime import publish_quote
from config.redis_client import get_redis, key


def _prices_key() -> str:
    return key("prices", "last")


def record_last_price(*, symbol: str, price: Decimal, at: datetime | None = None) -> None:
    at = at or timezone.now()
    # One round trip: the last price and the current one-minute bar (brokers.bars) together.
    pipeline = get_redis().pipeline(transaction=False)
    pipeline.hset(_prices_key(), mapping={symbol: str(price), f"{symbol}@": at.isoformat()})
    bars.add_price(pipeline, symbol=symbol, price=price, at=at)
    pipeline.execute()
    publish_quote(symbol=symbol, price=price, at=at)


def get_last_price(symbol: str) -> Decimal | None:
    return last_price_from(get_redis().hget(_prices_key(), symbol))


def ask_last_price(pipeline: Pipeline, symbol: str) -> None:
    """Queue the read of `symbol`'s last price on a caller's pipeline (its answer: `last_price_from`)."""
    pipeline.hget(_prices_key(), symbol)


def last_price_from(value: str | None) -> Decimal | None:
    return Decimal(value) if value is not None else None


def get_last_prices(symbols: Iterable[str]) -> dict[str, Decimal]:
    symbols = list(dict.fromkeys(symbols))
    if not symbols:
        return {}
    values = get_redis().hmget(_prices_key(), symbols)
    return {s: Decimal(v) for s, v in zip(symbols, values, strict=True) if v is not None}
