"""Telling apps downstream of orders that fills were booked.

The copier mirrors a leader's fills and a reversal waits for its exit to fill, but orders must not
import them (dependencies point one way) and Django signals do not drive the domain here. So the
listeners are named in settings.ORDER_FILL_LISTENERS and called after the booking commits; each
must be cheap (enqueue a task and return), since it runs on the broker-events path.
"""

import logging
from collections.abc import Callable
from functools import cache, partial

from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

FillListener = Callable[..., None]


@cache
def _listeners() -> tuple[FillListener, ...]:
    return tuple(import_string(path) for path in settings.ORDER_FILL_LISTENERS)


def _call(listener: FillListener, *, fills: dict[int, list[int]]) -> None:
    try:
        listener(fills=fills)
    except Exception:  # one listener's failure must not undo or block booking, nor other listeners
        logger.exception("Fill listener %s failed for accounts %s", listener, sorted(fills))


def announce_fills(fills: dict[int, list[int]]) -> None:
    """After the current transaction commits, tell every listener about these booked fills
    (fill ids by account id): one call per listener for the whole batch, however many accounts."""
    fills = {account_id: list(ids) for account_id, ids in fills.items() if ids}
    if not fills:
        return
    for listener in _listeners():
        transaction.on_commit(partial(_call, listener, fills=fills))
