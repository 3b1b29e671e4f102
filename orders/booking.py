"""Broker reports in: the one way acks, status changes and fills reach our books (answers to our
requests, what a broker pushes, what reconciliation finds).

A batch is booked in one transaction: the accounts' row locks in id order, then the rows the reports
touch, read once. A fill is applied once per broker fill id, with the position, realized P&L and the
account's balance changed in the same transaction; a status report moves the order by the state
table (orders.domain). Lock order, as everywhere: account, then order, then position.
"""

import logging
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import TradingAccount
from brokers import registry
from brokers.interface import BrokerFill, BrokerOrder, ReportedStatus, report_from_json
from brokers.models import BrokerConnection, Instrument
from brokers.selectors import resolve_instrument
from config.errors import DomainError
from orders import fill_listeners, groups, plan_service, services
from orders.domain import (
    OrderEventType,
    OrderSource,
    OrderStatus,
    OrderType,
    PositionState,
    average_fill_price,
    can_transition,
    position_after_fill,
    status_after_fill,
    status_for_report,
)
from orders.events import move_order, record_event
from orders.models import Fill, Order, Position
from orders.realtime import publish_fills_on_commit, publish_order_on_commit
from risk.trading_day import trade_date_for

logger = logging.getLogger(__name__)

_EVENT_FOR_STATUS = {
    OrderStatus.ACCEPTED: OrderEventType.ACCEPTED,
    OrderStatus.REJECTED: OrderEventType.REJECTED,
    OrderStatus.CANCELED: OrderEventType.CANCELED,
    OrderStatus.EXPIRED: OrderEventType.EXPIRED,
}


class _Books:
    """The rows a batch of broker reports touches, read once under the batch's account locks:
    our orders (locked) by client id and by broker id, the fill ids already booked, and the
    positions. Kept current as the batch books (orders adopted, fills booked, positions opened)."""

    def __init__(self, accounts: list[TradingAccount], reports: list[BrokerOrder | BrokerFill]) -> None:
        client_ids = {r.client_order_id for r in reports if r.client_order_id}
        broker_ids = {r.broker_order_id for r in reports if r.broker_order_id}
        self.by_client_id: dict[tuple[int, str], Order] = {}
        self.by_broker_id: dict[tuple[int, str], Order] = {}
        for order in Order.objects.locked().filter(
            Q(client_order_id__in=client_ids) | Q(broker_order_id__in=broker_ids), account__in=accounts
        ):
            self.add_order(order)
        fill_ids = [r.fill_id for r in reports if isinstance(r, BrokerFill)]
        self.booked_fills: set[tuple[int, str]] = (
            set(
                Fill.objects.filter(account__in=accounts, broker_fill_id__in=fill_ids).values_list(
                    "account_id", "broker_fill_id"
                )
            )
            if fill_ids
            else set()
        )
        self.positions: dict[tuple[int, int], Position] = (
            {(p.account_id, p.instrument_id): p for p in Position.objects.filter(account__in=accounts)}
            if fill_ids
            else {}
        )

    def add_order(self, order: Order) -> None:
        if order.client_order_id:
            self.by_client_id[(order.account_id, order.client_order_id)] = order
        if order.broker_order_id:
            self.by_broker_id[(order.account_id, order.broker_order_id)] = order

    def order_for(self, account: TradingAccount, *, client_order_id: str | None, broker_order_id: str) -> Order | None:
        """Our order a report is about: by our client id, else by the broker's id (orders adopted
        from outside propdesk have no client id of ours at the broker)."""
        if client_order_id and (order := self.by_client_id.get((account.pk, client_order_id))):
            return order
        return self.by_broker_id.get((account.pk, broker_order_id)) if broker_order_id else None

    def position(self, account: TradingAccount, instrument: Instrument) -> Position:
        position = self.positions.get((account.pk, instrument.pk))
        if position is None:  # the account's lock is held: no one else creates it meanwhile
            position = self.positions[(account.pk, instrument.pk)] = Position.objects.create(
                account=account, instrument=instrument
            )
        return position


def _adopt_external(account: TradingAccount, report: BrokerOrder | BrokerFill) -> Order | None:
    """An order placed outside propdesk (the broker's own platform): record it as ours to know
    about, source EXTERNAL, so its fills move our position exactly as the broker's did."""
    try:
        instrument = resolve_instrument(report.symbol)
    except DomainError:
        logger.warning("Report on %s for %s, which propdesk does not list; not adopted", account, report.symbol)
        return None
    is_order = isinstance(report, BrokerOrder)
    order = Order.objects.create(
        client_order_id=services.client_order_id_for(
            scope=f"external:{account.broker_connection_id}:{account.broker_account_id}", key=report.broker_order_id
        ),
        account=account,
        instrument=instrument,
        side=report.side,
        quantity=report.quantity,
        order_type=report.order_type if is_order else OrderType.MARKET,
        limit_price=report.limit_price if is_order else None,
        stop_price=report.stop_price if is_order else None,
        status=OrderStatus.ACCEPTED,
        broker_order_id=report.broker_order_id,
        source=OrderSource.EXTERNAL,
        submitted_at=report.occurred_at,
    )
    record_event(
        order,
        OrderEventType.ADOPTED,
        to_status=OrderStatus.ACCEPTED,
        detail="Placed outside propdesk; adopted from the broker's reports.",
        payload=asdict(report),
        occurred_at=report.occurred_at,
    )
    publish_order_on_commit(order)
    return order


def _take_reported_terms(order: Order, report: BrokerOrder) -> list[str]:
    """The broker's quantity and prices are the truth: take them from a report newer than the
    last one applied. Returns what changed (for the event)."""
    if order.broker_updated_at is not None and report.occurred_at < order.broker_updated_at:
        return []
    order.broker_updated_at = report.occurred_at
    changed = []
    for field, value in (
        ("quantity", report.quantity),
        ("limit_price", report.limit_price),
        ("stop_price", report.stop_price),
    ):
        if value is not None and value != getattr(order, field):
            changed.append(f"{field.replace('_', ' ')} {getattr(order, field)} -> {value}")
            setattr(order, field, value)
    return changed


def _change_satisfied(order: Order) -> bool:
    wanted = order.pending_change
    return all(
        str(getattr(order, field)) == str(value)
        if field == "quantity"
        else Decimal(str(value)) == getattr(order, field)
        for field, value in wanted.items()
        if field in ("quantity", "limit_price", "stop_price")
    )


def _apply_order_report(*, account: TradingAccount, report: BrokerOrder, books: _Books) -> Order | None:
    """Apply one status report. Call only from apply_broker_reports (it holds the account lock)."""
    order = books.order_for(account, client_order_id=report.client_order_id, broker_order_id=report.broker_order_id)
    if order is None:
        if report.status not in (ReportedStatus.WORKING, ReportedStatus.PARTIALLY_FILLED):
            return None  # an outside order that is already over: nothing of it to manage
        order = _adopt_external(account, report)
        if order is None:
            return None
        books.add_order(order)
    if not order.broker_order_id:
        order.broker_order_id = report.broker_order_id
        books.add_order(order)
    changed = _take_reported_terms(order, report)
    if order.pending_change and _change_satisfied(order):
        record_event(
            order,
            OrderEventType.MODIFIED,
            detail="Confirmed by the broker: " + "; ".join(changed or ["as asked"]),
            # When we sent the change and when the broker made it: the two sides of its latency.
            payload={"sent_at": report.requested_at, "broker_time": report.occurred_at},
        )
        order.pending_change = {}
    elif changed:
        record_event(order, OrderEventType.MODIFIED, detail="Reported by the broker: " + "; ".join(changed))
    target = status_for_report(OrderStatus(order.status), report.status)
    if target is None:
        order.save()
        if changed:
            publish_order_on_commit(order)
        return order
    if target in (OrderStatus.REJECTED, OrderStatus.CANCELED, OrderStatus.EXPIRED):
        order.reason = report.reason[:500]
        if order.pending_change:
            record_event(order, OrderEventType.MODIFY_REJECTED, detail=f"The order is {target} at the broker.")
            order.pending_change = {}
    move_order(
        order,
        target,
        _EVENT_FOR_STATUS[target],
        detail=report.reason,
        payload=asdict(report),
        occurred_at=report.occurred_at,
    )
    if target == OrderStatus.ACCEPTED and order.order_type == OrderType.TRAILING_STOP:
        plan_service.drop_band(order.instrument.symbol)  # an emulated trail follows from the next price on
    if target == OrderStatus.REJECTED and order.source == OrderSource.PLAN:
        plan_service.record_rejected_exit(order)
    return order


def _apply_fill(
    *, account: TradingAccount, fill: BrokerFill, books: _Books, booked: list[tuple[Order, Position]]
) -> Fill | None:
    """Apply one fill exactly once (None: already applied, or not an order of ours).

    Call only from apply_broker_reports: it holds the account's row lock, which serializes every
    write to the account's fills, positions and balance.
    """
    if (account.pk, fill.fill_id) in books.booked_fills:
        return None
    order = books.order_for(account, client_order_id=fill.client_order_id, broker_order_id=fill.broker_order_id)
    if order is None:
        order = _adopt_external(account, fill)
        if order is None:
            return None
        books.add_order(order)
    books.booked_fills.add((account.pk, fill.fill_id))
    instrument: Instrument = order.instrument
    position = books.position(account, instrument)
    state, realized = position_after_fill(
        PositionState(position.quantity, position.avg_price),
        side=fill.side,
        quantity=fill.quantity,
        price=fill.price,
        point_value=instrument.point_value,
    )
    applied = Fill.objects.create(
        order=order,
        account=account,
        instrument=instrument,
        broker_fill_id=fill.fill_id,
        side=fill.side,
        quantity=fill.quantity,
        price=fill.price,
        fee=fill.fee,
        realized_pnl=realized,
        trade_date=trade_date_for(fill.occurred_at),
        occurred_at=fill.occurred_at,
    )
    if position.quantity == 0 or (state.quantity > 0) != (position.quantity > 0):
        position.opened_at = fill.occurred_at if state.quantity else None
    position.quantity, position.avg_price = state.quantity, state.avg_price
    position.realized_pnl += realized
    position.save()
    # An UPDATE with F(): cash changes are not "who changed the account" history rows.
    TradingAccount.objects.filter(pk=account.pk).update(
        balance=F("balance") + realized - fill.fee, updated_at=timezone.now()
    )

    order.avg_fill_price = average_fill_price(
        filled_before=order.filled_quantity,
        avg_before=order.avg_fill_price,
        quantity=fill.quantity,
        price=fill.price,
    )
    order.filled_quantity += fill.quantity
    if not order.broker_order_id:
        order.broker_order_id = fill.broker_order_id
        books.add_order(order)
    previous = order.status
    target = status_after_fill(OrderStatus(previous), filled_quantity=order.filled_quantity, quantity=order.quantity)
    detail = f"{fill.side} {fill.quantity} @ {fill.price}"
    if target is not None and can_transition(OrderStatus(previous), target):
        order.transition_to(target)
    elif target is not None:
        # The broker filled an order it had told us was over: its fills are the truth for
        # the position, but the contradiction is kept on record.
        detail += f" (fill on an order that was {previous})"
    order.save()
    record_event(
        order,
        OrderEventType.FILL,
        from_status=previous,
        to_status=order.status,
        detail=detail,
        payload=asdict(fill),
        occurred_at=fill.occurred_at,
    )
    booked.append((order, position))  # published with the whole batch
    return applied


# Status reports that fills make redundant: fill progress comes from fills (see status_for_report).
_FILL_PROGRESS = frozenset({ReportedStatus.WORKING, ReportedStatus.PARTIALLY_FILLED, ReportedStatus.FILLED})


def apply_broker_reports(*, connection_id: int, reports: list[BrokerOrder | BrokerFill]) -> list[Fill]:
    """The one way broker reports reach our books (pushed events, answers, reconciliation).

    One transaction for the batch: the accounts' row locks (id order), then the rows the reports
    touch, read once (_Books). Per account, fills first, in order, then the newest status report of
    each order (older ones are stale by the state table). Fill listeners and the fills' live
    updates go out once for the whole batch, after commit. Returns the fills newly applied.
    """
    by_account: dict[str, list[BrokerOrder | BrokerFill]] = {}
    for report in reports:
        by_account.setdefault(report.account_ref, []).append(report)
    applied: list[Fill] = []
    booked: list[tuple[Order, Position]] = []
    fill_ids: dict[int, list[int]] = {}
    to_sync: dict[int, set[int]] = {}
    positions_moved: list[tuple[TradingAccount, set[int]]] = []
    with transaction.atomic():
        accounts = {
            a.broker_account_id: a
            for a in TradingAccount.objects.select_for_update()
            .filter(broker_connection_id=connection_id, broker_account_id__in=list(by_account))
            .order_by("pk")
        }
        books = _Books(list(accounts.values()), reports)
        for ref, mine in by_account.items():
            account = accounts.get(ref)
            if account is None:
                logger.warning(
                    "Reports for account %s, which no propdesk account on connection %s uses", ref, connection_id
                )
                continue
            fills = [report for report in mine if isinstance(report, BrokerFill)]
            filled_orders = {fill.client_order_id for fill in fills if fill.client_order_id}
            newest = {r.client_order_id or r.broker_order_id: r for r in mine if isinstance(r, BrokerOrder)}
            filled: set[int] = set()  # instruments whose positions changed
            for fill in fills:
                if done := _apply_fill(account=account, fill=fill, books=books, booked=booked):
                    applied.append(done)
                    fill_ids.setdefault(account.pk, []).append(done.pk)
                    filled.add(done.instrument_id)
            touched = set(filled)  # ... and those whose grouped orders changed
            for report in newest.values():
                if report.status in _FILL_PROGRESS and report.client_order_id in filled_orders:
                    continue  # the fills just applied already moved the order further
                order = _apply_order_report(account=account, report=report, books=books)
                if order is not None and order.group_id:
                    touched.add(order.instrument_id)
            if touched:
                to_sync[account.pk] = touched
            if filled:
                positions_moved.append((account, filled))
        # The groups of every account at once (three queries, not three per account), then the
        # plans, which start from the stops the groups have just released.
        groups.sync_groups_of(to_sync)
        for account, filled in positions_moved:
            # Only fills move positions: a plan starts or ends with them, never with a status or
            # price report (a confirmed stop move, the busiest report, skips this).
            plan_service.start_default_plans(account=account, instrument_ids=filled)
        fill_listeners.announce_fills(fill_ids)
        publish_fills_on_commit(booked)
    return applied


def ingest_broker_events(*, connection_id: int, events: list[dict[str, Any]]) -> None:
    """Events a broker pushed (its stream) -> reports -> our books."""
    connection = BrokerConnection.objects.get(pk=connection_id)
    apply_broker_reports(connection_id=connection_id, reports=registry.get_adapter(connection).parse_events(events))


def book_broker_reports(*, connection_id: int, reports: list[dict[str, Any]], bands_to_drop: list[str]) -> None:
    apply_broker_reports(connection_id=connection_id, reports=[report_from_json(r) for r in reports])
    for symbol in bands_to_drop:
        plan_service.drop_band(symbol, at_once=True)  # the answers are committed
