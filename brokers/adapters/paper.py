"""Adapter for the paper venue: translates our requests to the venue's API and its wire format
(JSON dicts, as a broker's REST answers and stream events would be) back into reports."""

import logging
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from django.utils import timezone

from brokers.errors import BrokerError, BrokerRejected, BrokerUnavailable, OutcomeUnknown
from brokers.interface import (
    Balance,
    BrokerFill,
    BrokerOrder,
    BrokerPosition,
    Capability,
    HealthReport,
    OrderRequest,
    Quote,
    Report,
    ReportedStatus,
)
from brokers.models import BrokerConnection
from brokers.paper import venue
from brokers.paper.venue import VenueError

logger = logging.getLogger(__name__)

_STATUSES = {
    "working": ReportedStatus.WORKING,
    "filled": ReportedStatus.FILLED,
    "canceled": ReportedStatus.CANCELED,
    "rejected": ReportedStatus.REJECTED,
    "expired": ReportedStatus.EXPIRED,
}


def _decimal(value: Any) -> Decimal | None:
    return None if value in (None, "") else Decimal(str(value))


def parse_order(wire: dict[str, Any]) -> BrokerOrder:
    status = _STATUSES[wire["status"]]
    if status == ReportedStatus.WORKING and wire["filledQuantity"] > 0:
        status = ReportedStatus.PARTIALLY_FILLED
    return BrokerOrder(
        account_ref=wire["accountId"],
        broker_order_id=wire["orderId"],
        client_order_id=wire.get("clientOrderId"),
        symbol=wire["symbol"],
        side=wire["side"],
        quantity=int(wire["quantity"]),
        order_type=wire["orderType"],
        status=status,
        filled_quantity=int(wire["filledQuantity"]),
        avg_fill_price=_decimal(wire.get("avgFillPrice")),
        limit_price=_decimal(wire.get("limitPrice")),
        stop_price=_decimal(wire.get("stopPrice")),
        reason=wire.get("reason", ""),
        occurred_at=datetime.fromisoformat(wire["timestamp"]),
    )


def parse_fill(wire: dict[str, Any]) -> BrokerFill:
    price = _decimal(wire["price"])
    fee = _decimal(wire["fee"])
    assert price is not None and fee is not None
    return BrokerFill(
        account_ref=wire["accountId"],
        fill_id=wire["fillId"],
        broker_order_id=wire["orderId"],
        client_order_id=wire.get("clientOrderId"),
        symbol=wire["symbol"],
        side=wire["side"],
        quantity=int(wire["quantity"]),
        price=price,
        fee=fee,
        occurred_at=datetime.fromisoformat(wire["timestamp"]),
    )


def parse_events(events: Sequence[dict[str, Any]]) -> list[Report]:
    parsers = {"order": parse_order, "fill": parse_fill}
    return [parsers[event["type"]](event) for event in events if event.get("type") in parsers]


def deliver_venue_events(stream_key: str, events: list[dict[str, Any]]) -> None:
    """The venue's push channel (its "user stream"), for the connection whose id is `stream_key`.

    As a real broker's stream is read by a listener of its own, the events are applied by a
    worker on the `events` queue, never by the process that called the venue: a sender goes on
    to its next order instead of booking this one's fill and publishing it. Applying is
    idempotent (fills by fill id, statuses by the state table), so a redelivery is harmless.
    """
    from brokers.tasks import ingest_broker_events_task  # imported late: tasks import the order booking

    ingest_broker_events_task.delay(int(stream_key), events)


def _ticket(request: OrderRequest) -> dict[str, Any]:
    return {
        "account_ref": request.account_ref,
        "client_order_id": request.client_order_id,
        "symbol": request.symbol,
        "side": request.side,
        "quantity": request.quantity,
        "order_type": request.order_type,
        "time_in_force": request.time_in_force,
        "limit_price": request.limit_price,
        "stop_price": request.stop_price,
        "trail_amount": request.trail_amount,
        "oco_group": request.oco_group,
    }


def _answer(answer: dict[str, Any] | VenueError) -> BrokerOrder | BrokerError:
    if isinstance(answer, VenueError):
        return BrokerRejected(str(answer))
    order = parse_order(answer)
    return BrokerRejected(order.reason) if order.status == ReportedStatus.REJECTED else order


class PaperBroker:
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.MODIFY, Capability.PARTIAL_CLOSE, Capability.OCO, Capability.TRAILING_STOP, Capability.FUTURES}
    )

    def __init__(self, connection: BrokerConnection) -> None:
        self.connection = connection

    # The venue runs in-process, so "the network" is simulated: injected faults stand for a
    # request that never arrived (unavailable) or an answer that was lost after the venue acted.
    def _call(self, operation: Any, **kwargs: Any) -> Any:
        if venue.take_fault("unavailable"):
            raise BrokerUnavailable("Paper venue unreachable (simulated).")
        try:
            answer = operation(**kwargs)
        except VenueError as exc:
            raise BrokerRejected(str(exc)) from exc
        if venue.take_fault("lose_response"):
            raise OutcomeUnknown("Paper venue answer lost (simulated timeout).")
        return answer

    def open_account(self, *, account_ref: str, cash: Decimal) -> None:
        """Paper only: open (or re-attach) an account at the venue, streaming to this connection."""
        venue.open_account(ref=account_ref, stream_key=str(self.connection.pk), cash=cash)

    def submit_orders(self, requests: Sequence[OrderRequest]) -> list[BrokerOrder | BrokerError]:
        """The venue takes a batch in one call (see venue.place_orders)."""
        answers = self._call(venue.place_orders, tickets=[_ticket(request) for request in requests])
        return [_answer(answer) for answer in answers]

    def modify_orders(self, changes: Sequence[dict[str, Any]]) -> list[BrokerOrder | BrokerError]:
        """Several changes in one call (see venue.modify_orders), each with venue.modify_order's
        keyword arguments. One answer per change, in order: the broker's report, or the BrokerRejected that
        refused it; an error of the whole call (unreachable, answer lost) is raised."""
        answers = self._call(venue.modify_orders, tickets=list(changes))
        return [BrokerRejected(str(a)) if isinstance(a, VenueError) else parse_order(a) for a in answers]

    def cancel_order(self, *, account_ref: str, client_order_id: str) -> BrokerOrder:
        return parse_order(self._call(venue.cancel_order, account_ref=account_ref, client_order_id=client_order_id))

    def get_order(self, *, account_ref: str, client_order_id: str) -> BrokerOrder | None:
        wire = self._call(venue.get_order, account_ref=account_ref, client_order_id=client_order_id)
        return parse_order(wire) if wire else None

    def list_open_orders(self, *, account_ref: str) -> list[BrokerOrder]:
        return [parse_order(w) for w in self._call(venue.list_orders, account_ref=account_ref)]

    def list_fills(self, *, account_ref: str, since: datetime) -> list[BrokerFill]:
        return [parse_fill(w) for w in self._call(venue.list_fills, account_ref=account_ref, since=since)]

    def get_positions(self, *, account_ref: str) -> list[BrokerPosition]:
        return [
            BrokerPosition(
                account_ref=w["accountId"],
                symbol=w["symbol"],
                quantity=int(w["quantity"]),
                avg_price=Decimal(w["avgPrice"]),
            )
            for w in self._call(venue.positions, account_ref=account_ref)
        ]

    def get_balances(self, *, account_ref: str) -> list[Balance]:
        wire = self._call(venue.balance, account_ref=account_ref)
        return [Balance(account_ref=wire["accountId"], currency=wire["currency"], cash=Decimal(wire["cash"]))]

    def close_position(self, *, account_ref: str, symbol: str, quantity: int | None = None) -> BrokerOrder:
        order = parse_order(self._call(venue.close_position, account_ref=account_ref, symbol=symbol, quantity=quantity))
        if order.status == ReportedStatus.REJECTED:
            raise BrokerRejected(order.reason)
        return order

    def get_quotes(self, symbols: Sequence[str]) -> list[Quote]:
        quotes = []
        for symbol in symbols:
            price = venue.market_price(symbol)
            if price is not None:
                quotes.append(Quote(symbol=symbol, last=price, occurred_at=timezone.now()))
        return quotes

    def health(self) -> HealthReport:
        try:
            wire = venue.health()
        except Exception as exc:  # the health probe reports every failure instead of raising
            return HealthReport(ok=False, detail=f"Paper venue unreachable: {exc}")
        return HealthReport(ok=bool(wire["ok"]), detail=f"{wire['listed']} contracts listed")

    def parse_events(self, events: Sequence[dict[str, Any]]) -> list[Report]:
        return parse_events(events)
