"""Sending to Channels groups from synchronous code, and the quote groups.

`async_to_sync(group_send)` would start a new event loop, and new Redis connections, for every
message. Services publish often (every fill, every mark), so each process keeps one publisher
loop in a daemon thread and hands it the sends; its connections are reused.
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

SEND_TIMEOUT_SECONDS = 2.0
_loop: asyncio.AbstractEventLoop | None = None
_loop_pid: int | None = None
_loop_lock = threading.Lock()


def _publisher_loop() -> asyncio.AbstractEventLoop:
    global _loop, _loop_pid
    with _loop_lock:
        # A forked worker inherits the variable but not the thread: start its own.
        if _loop is None or _loop_pid != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="channel-publisher", daemon=True).start()
            _loop, _loop_pid = loop, os.getpid()
        return _loop


def send_to_group(group: str, message: dict[str, Any]) -> None:
    """Best-effort push: live updates must never fail the work that produced them."""
    layer = get_channel_layer()
    if layer is None:
        return
    future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), _publisher_loop())
    try:
        future.result(timeout=SEND_TIMEOUT_SECONDS)
    except Exception:
        logger.exception("Could not publish %s to %s", message.get("type"), group)


def quotes_group(symbol: str) -> str:
    return f"quotes.{symbol}"


def publish_quote(*, symbol: str, price: Decimal, at: datetime) -> None:
    send_to_group(
        quotes_group(symbol),
        {"type": "quote", "data": {"symbol": symbol, "price": str(price), "at": at.isoformat()}},
    )
