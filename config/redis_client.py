"""The process-wide Redis connection for propdesk's own keys (prices, debounce flags, venue state)."""

from functools import cache

import redis
from django.conf import settings


@cache
def get_redis() -> redis.Redis:
    # One pool per process; redis-py connections are thread-safe through the pool.
    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=True, socket_timeout=5)


def key(*parts: str) -> str:
    """A key under this deployment's prefix, e.g. key("prices", "last") -> "propdesk:prices:last"."""
    return ":".join((settings.REDIS_KEY_PREFIX, *parts))
