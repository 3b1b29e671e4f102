"""Sending to Channels groups from synchronous code, and the quote groups.

`async_to_sync(group_send)` would start an event loop, and open Redis connections, for every
message, and make the caller wait. Services publish often (every fill, every mark) and must
not be slowed by it, so each process runs one publisher: a daemon thread with an event loop
that takes messages from a queue and sends them one after another, in the order they were
published, over reused connections. Publishing is best effort: a message that cannot be sent is
logged and dropped; the state it describes is in the database.
"""

import asyncio
import logging
import os
import threading
from datetime import datetime
from decimal import Decimal
from typing import Any

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

QUEUE_LIMIT = 10_000
_publisher: tuple[int, asyncio.AbstractEventLoop, "asyncio.Queue[tuple[str, dict[str, Any]]]"] | None = None
_publisher_lock = threading.Lock()


async def _send_in_order(queue: "asyncio.Queue[tuple[str, dict[str, Any]]]") -> None:
    layer = get_channel_layer()
    while True:
        group, message = await queue.get()
        try:
            await layer.group_send(group, message)
        except Exception:
            logger.exception("Could not publish %s to %s", message.get("type"), group)


def _start_publisher() -> tuple[asyncio.AbstractEventLoop, "asyncio.Queue[tuple[str, dict[str, Any]]]"]:
    global _publisher
    with _publisher_lock:
        # A forked worker inherits the variable but not the thread: it starts its own.
        if _publisher is None or _publisher[0] != os.getpid():
            loop = asyncio.new_event_loop()
            queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(maxsize=QUEUE_LIMIT)
            thread = threading.Thread(
                target=loop.run_until_complete, args=(_send_in_order(queue),), name="channel-publisher", daemon=True
            )
            thread.start()
            _publisher = (os.getpid(), loop, queue)
        return _publisher[1], _publisher[2]


def _enqueue(queue: "asyncio.Queue[tuple[str, dict[str, Any]]]", item: tuple[str, dict[str, Any]]) -> None:
    try:
        queue.put_nowait(item)
    except asyncio.QueueFull:
        logger.warning("Live-update queue full; dropped %s to %s", item[1].get("type"), item[0])


def send_to_group(group: str, message: dict[str, Any]) -> None:
    """Hand a message to this process's publisher; returns at once."""
    if get_channel_layer() is None:
        return
    loop, queue = _start_publisher()
    loop.call_soon_threadsafe(_enqueue, queue, (group, message))


def quotes_group(symbol: str) -> str:
    return f"quotes.{symbol}"


def publish_quote(*, symbol: str, price: Decimal, at: datetime) -> None:
    send_to_group(
        quotes_group(symbol),
        {"type": "quote", "data": {"symbol": symbol, "price": str(price), "at": at.isoformat()}},
    )
