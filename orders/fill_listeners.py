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


def _call(listener: FillListener, *, account_id: int, fill_ids: list[int]) -> None:
    try:
        listener(account_id=account_id, fill_ids=fill_ids)
    except Exception:  # one listener's failure must not undo or block booking, nor other listeners
        logger.exception("Fill listener %s failed for account %s", listener, account_id)


def announce_fills(*, account_id: int, fill_ids: list[int]) -> None:
    """After the current transaction commits, tell every listener about these booked fills."""
    if not fill_ids:
        return
    for listener in _listeners():
        transaction.on_commit(partial(_call, listener, account_id=account_id, fill_ids=list(fill_ids)))
