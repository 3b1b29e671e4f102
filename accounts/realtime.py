"""Live-update groups for accounts and users, and publishing to them after commit.

Every account event goes to `account.<id>` (its traders) and `staff` (all staff), so a
consumer never has to filter: it only joins groups it is allowed to hear.
"""

from collections.abc import Callable
from typing import Any

from django.db import transaction

from brokers.realtime import send_to_group

STAFF_GROUP = "staff"


def account_group(account_id: int) -> str:
    return f"account.{account_id}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def publish_account_event(account_id: int, event_type: str, data: dict[str, Any]) -> None:
    message = {"type": event_type, "account": account_id, "data": data}
    send_to_group(account_group(account_id), message)
    send_to_group(STAFF_GROUP, message)


def on_commit(publish: Callable[[], None]) -> None:
    """Run a publish after the current transaction commits (at once when none is open)."""
    transaction.on_commit(publish)


def publish_access_changed(user_id: int) -> None:
    """Tell the user's open connections to re-check which accounts they may hear."""
    send_to_group(user_group(user_id), {"type": "access.changed"})
