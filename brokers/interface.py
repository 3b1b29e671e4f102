"""The broker adapter contract: one Protocol exchanging frozen dataclasses with Decimal prices.

Adapters only translate: our requests into the venue's wire format, the venue's answers and
pushed events into the reports below, and the venue's errors into `brokers.errors`.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from brokers.errors import BrokerError


class Capability(StrEnum):
    MODIFY = "modify"
    PARTIAL_CLOSE = "partial_close"
    NATIVE_BRACKETS = "native_brackets"
    OCO = "oco"
    TRAILING_STOP = "trailing_stop"
    FUTURES = "futures"
    EQUITIES = "equities"
    OPTIONS = "options"


class ReportedStatus(StrEnum):
    """An order's state as the broker reports it (its vocabulary, before we map it to ours)."""

    WORKING = "working"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"


@dataclass(frozen=True)
class OrderRequest:
    account_ref: str
    client_order_id: str
    symbol: str
    side: str  # "buy" | "sell"
    quantity: int
    order_type: str  # "market" | "limit" | "stop" | "stop_limit"
    time_in_force: str  # "day" | "gtc"
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_amount: Decimal | None = None  # trailing stops (brokers with Capability.TRAILING_STOP)
    oco_group: str | None = None  # orders sharing it are one-cancels-other (brokers with Capability.OCO)


@dataclass(frozen=True)
class BrokerOrder:
    """An order status report: what the broker says about one order right now."""

    account_ref: str
    broker_order_id: str
    client_order_id: str | None  # None for orders placed outside propdesk
    symbol: str
    side: str
    quantity: int
    order_type: str
    status: ReportedStatus
    filled_quantity: int
    avg_fill_price: Decimal | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    reason: str
    occurred_at: datetime
    # When we sent the request this report answers (set by the sender on answers to a change, kept
    # in the MODIFIED event beside the broker's own time); None for pushes and reconciliation.
    requested_at: datetime | None = None


@dataclass(frozen=True)
class BrokerFill:
    """A fill report. `fill_id` is unique at the broker; we apply each one exactly once."""

    account_ref: str
    fill_id: str
    broker_order_id: str
    client_order_id: str | None
    symbol: str
    side: str
    quantity: int
    price: Decimal
    fee: Decimal
    occurred_at: datetime


@dataclass(frozen=True)
class BrokerPosition:
    account_ref: str
    symbol: str
    quantity: int  # signed: long > 0, short < 0
    avg_price: Decimal


@dataclass(frozen=True)
class Balance:
    account_ref: str
    currency: str
    cash: Decimal


@dataclass(frozen=True)
class Quote:
    symbol: str
    last: Decimal
    occurred_at: datetime


@dataclass(frozen=True)
class HealthReport:
    ok: bool
    detail: str


Report = BrokerOrder | BrokerFill

_DECIMALS = ("avg_fill_price", "limit_price", "stop_price", "price", "fee")


def report_to_json(report: Report) -> dict[str, Any]:
    """A report as JSON (to book it in another process): Decimals and times as strings."""
    data: dict[str, Any] = {"kind": "fill" if isinstance(report, BrokerFill) else "order"}
    for name, value in vars(report).items():
        data[name] = (
            str(value) if isinstance(value, Decimal) else value.isoformat() if isinstance(value, datetime) else value
        )
    return data


def report_from_json(data: dict[str, Any]) -> Report:
    fields = {k: v for k, v in data.items() if k != "kind"}
    for name in _DECIMALS:
        if fields.get(name) is not None:
            fields[name] = Decimal(fields[name])
    for name in ("occurred_at", "requested_at"):
        if fields.get(name) is not None:
            fields[name] = datetime.fromisoformat(fields[name])
    if data["kind"] == "fill":
        return BrokerFill(**fields)
    fields["status"] = ReportedStatus(fields["status"])
    return BrokerOrder(**fields)


class BrokerAdapter(Protocol):
    capabilities: ClassVar[frozenset[Capability]]

    def submit_orders(self, requests: Sequence[OrderRequest]) -> list[BrokerOrder | BrokerError]:
        """Place orders, in one request where the broker takes batches, else one after the other
        on the same session. One answer per request, in order: the broker's report, or the
        BrokerRejected that refused that order. An error that concerns the whole call (not
        reached, outcome unknown, credentials) is raised, and then holds for every order in it."""
        ...

    def modify_orders(self, changes: Sequence[dict[str, Any]]) -> list[BrokerOrder | BrokerError]:
        """Change working orders: each change holds account_ref, client_order_id and the new
        quantity, limit_price and/or stop_price (None: unchanged). In one request where the broker
        takes batches, else one after the other. Answers as submit_orders: per change, the broker's
        report or the BrokerRejected that refused it; an error of the whole call is raised."""
        ...

    def cancel_order(self, *, account_ref: str, client_order_id: str) -> BrokerOrder: ...

    def get_order(self, *, account_ref: str, client_order_id: str) -> BrokerOrder | None: ...

    def list_open_orders(self, *, account_ref: str) -> list[BrokerOrder]: ...

    def list_fills(self, *, account_ref: str, since: datetime) -> list[BrokerFill]: ...

    def get_positions(self, *, account_ref: str) -> list[BrokerPosition]: ...

    def get_balances(self, *, account_ref: str) -> list[Balance]: ...

    def close_position(self, *, account_ref: str, symbol: str, quantity: int | None = None) -> BrokerOrder: ...

    def get_quotes(self, symbols: Sequence[str]) -> list[Quote]: ...

    def health(self) -> HealthReport: ...

    def parse_events(self, events: Sequence[dict[str, object]]) -> list[Report]:
        """Translate events the broker pushed (its stream / callbacks) into reports."""
        ...
