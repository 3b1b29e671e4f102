"""Placing, sending, cancelling and closing orders, and applying what brokers report.

The order path is exactly once: an order row with its client id is committed before anything
leaves the process; a worker claims it with a compare-and-set and calls the broker once; an
answer that never came leaves it unresolved until reconciliation asks the broker by client id.
Broker reports (acks, status changes, fills) all enter through `apply_broker_reports`; a fill
is applied once per broker fill id, with the position, realized P&L and
account balance changed in the same transaction.

Lock order, everywhere: account, then order, then position.
"""

import base64
import hashlib
import logging
import time
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import TradingAccount
from brokers import registry
from brokers.errors import BrokerAuthError, BrokerError, BrokerRejected, BrokerUnavailable, OutcomeUnknown
from brokers.interface import BrokerFill, BrokerOrder, OrderRequest, ReportedStatus
from brokers.models import BrokerConnection, Instrument
from brokers.selectors import resolve_instrument
from brokers.services import disable_connection
from config.errors import ConflictError, DomainError
from orders import tasks
from orders.domain import (
    AUTOMATED_SOURCES,
    CANCELABLE_STATUSES,
    LIQUIDATING_SOURCES,
    OrderEventType,
    OrderIntent,
    OrderSide,
    OrderSource,
    OrderStatus,
    OrderType,
    PositionState,
    average_fill_price,
    can_transition,
    position_after_fill,
    status_after_fill,
    status_for_report,
    validate_order_intent,
    validate_quantity,
)
from orders.models import Fill, Order, OrderEvent, Position
from orders.realtime import publish_fill_on_commit, publish_order_on_commit
from orders.selectors import liquidating_quantity
from risk import services as risk_services
from risk.trading_day import trade_date_for

logger = logging.getLogger(__name__)

# Pauses before each further attempt when the broker was unreachable (the request never got
# there, so trying again is safe). Kept short on purpose: a market order sent half a minute
# late is a different trade, so after these it is rejected and the trader decides.
SEND_RETRY_DELAYS = (0.2, 0.5, 1.0)
RECONCILE_AFTER_UNKNOWN_SECONDS = 2


class IdempotencyConflict(ConflictError):
    code = "idempotency_key_reused"


class BrokerNotReady(ConflictError):
    code = "broker_unavailable"


class OrderNotCancelable(ConflictError):
    code = "order_not_cancelable"


class NothingToClose(ConflictError):
    code = "nothing_to_close"


User = AbstractBaseUser


# -- Client order ids ----------------------------------------------------------------------


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().lower().rstrip("=")[:26]


def client_order_id_for(*, scope: str, key: str) -> str:
    """A deterministic client id: the same scope and key always give the same id (idempotency)."""
    return "pd-" + _b32(hashlib.sha256(f"{scope}\x00{key}".encode()).digest())


def new_client_order_id() -> str:
    return "pd-" + _b32(uuid.uuid4().bytes + uuid.uuid4().bytes)


def request_fingerprint(*, account_id: int, intent: OrderIntent) -> str:
    fields = (
        account_id,
        intent.symbol,
        intent.side,
        intent.quantity,
        intent.order_type,
        intent.time_in_force,
        intent.limit_price,
        intent.stop_price,
    )
    return hashlib.sha256(repr(fields).encode()).hexdigest()


# -- Events -----------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _record(
    order: Order,
    event_type: OrderEventType,
    *,
    from_status: str = "",
    to_status: str = "",
    detail: str = "",
    payload: Any = None,
    actor: User | None = None,
    occurred_at: datetime | None = None,
) -> OrderEvent:
    return OrderEvent.objects.create(
        order=order,
        type=event_type,
        from_status=from_status,
        to_status=to_status,
        detail=detail[:500],
        payload=_jsonable(payload) if payload is not None else {},
        actor=actor if actor is not None and actor.is_authenticated else None,
        occurred_at=occurred_at or timezone.now(),
    )


def _move(order: Order, target: OrderStatus, event_type: OrderEventType, **event: Any) -> None:
    """Transition, save and log one status change (caller holds the order's row lock)."""
    previous = order.status
    order.transition_to(target)
    order.save()
    _record(order, event_type, from_status=previous, to_status=target, **event)
    publish_order_on_commit(order)


# -- Placing orders ---------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitOutcome:
    order: Order
    created: bool  # False: an earlier request with the same idempotency key made this order


def _replay(client_order_id: str, fingerprint: str) -> Order | None:
    existing = Order.objects.filter(client_order_id=client_order_id).first()
    if existing is None:
        return None
    if existing.request_fingerprint != fingerprint:
        raise IdempotencyConflict(
            "This Idempotency-Key was already used for a different order; use a new key for a new order.",
            field="Idempotency-Key",
        )
    return existing


def _check_connection_ready(connection: BrokerConnection) -> None:
    if not connection.is_enabled:
        raise BrokerNotReady(
            f"The broker connection {connection.name} is disabled: {connection.last_error or 'by staff'}."
        )
    if reason := registry.unavailable_reason(connection.kind):
        raise BrokerNotReady(reason)


def submit_order(
    *,
    account: TradingAccount,
    intent: OrderIntent,
    source: OrderSource,
    created_by: User | None = None,
    client_order_id: str | None = None,
) -> SubmitOutcome:
    """Validate, risk-check and store an order, then send it after commit.

    A denied order is stored as DENIED with its denials and never sent. Giving a deterministic
    `client_order_id` makes the call idempotent: the same id with the same request returns the
    first order, with a different request raises IdempotencyConflict.
    """
    instrument = resolve_instrument(intent.symbol)
    intent = validate_order_intent(
        replace(intent, symbol=instrument.symbol, is_automated=source in AUTOMATED_SOURCES),
        tick_size=instrument.tick_size,
    )
    fingerprint = request_fingerprint(account_id=account.pk, intent=intent)
    if client_order_id and (existing := _replay(client_order_id, fingerprint)):
        return SubmitOutcome(existing, created=False)
    _check_connection_ready(account.broker_connection)

    try:
        with transaction.atomic():
            # The row lock makes pre-trade checks of one account run one at a time, so two
            # orders cannot both pass a check that only one of them should.
            locked = TradingAccount.objects.select_for_update().get(pk=account.pk)
            denials = risk_services.check_pre_trade(account=locked, intent=intent, instrument=instrument)
            order = Order(
                client_order_id=client_order_id or new_client_order_id(),
                account=locked,
                instrument=instrument,
                side=intent.side,
                quantity=intent.quantity,
                order_type=intent.order_type,
                limit_price=intent.limit_price,
                stop_price=intent.stop_price,
                time_in_force=intent.time_in_force,
                source=source,
                created_by=created_by if created_by is not None and created_by.is_authenticated else None,
                request_fingerprint=fingerprint,
                status=OrderStatus.NEW,
            )
            order.save()
            _record(
                order, OrderEventType.CREATED, to_status=OrderStatus.NEW, actor=created_by, payload={"source": source}
            )
            if denials:
                order.denials = [d.as_dict() for d in denials]
                order.reason = " ".join(d.detail for d in denials)[:500]
                _move(order, OrderStatus.DENIED, OrderEventType.DENIED, detail=order.reason, payload=order.denials)
            else:
                # On-commit callbacks run in order: the send goes first, the live update after it.
                tasks.send_order_to_broker_task.delay_on_commit(order.pk)
                publish_order_on_commit(order)
    except IntegrityError:
        # Another request with the same idempotency key won the race; answer as its replay.
        if client_order_id and (existing := _replay(client_order_id, fingerprint)):
            return SubmitOutcome(existing, created=False)
        raise
    return SubmitOutcome(order, created=True)


# -- Sending to the broker ----------------------------------------------------------------


def _order_request(order: Order) -> OrderRequest:
    return OrderRequest(
        account_ref=order.account.broker_account_id,
        client_order_id=order.client_order_id,
        symbol=order.instrument.symbol,
        side=order.side,
        quantity=order.quantity,
        order_type=order.order_type,
        time_in_force=order.time_in_force,
        limit_price=order.limit_price,
        stop_price=order.stop_price,
    )


def _claim_for_sending(order_id: int) -> Order | None:
    """Compare-and-set NEW -> SUBMITTED: exactly one worker wins the right to call the broker."""
    now = timezone.now()
    with transaction.atomic():
        claimed = Order.objects.filter(pk=order_id, status=OrderStatus.NEW).update(
            status=OrderStatus.SUBMITTED, submitted_at=now, updated_at=now
        )
        if not claimed:
            return None
        order = Order.objects.select_related("account__broker_connection", "instrument").get(pk=order_id)
        # No live update yet: the broker's answer, a moment later, publishes the order.
        _record(order, OrderEventType.SUBMITTED, from_status=OrderStatus.NEW, to_status=OrderStatus.SUBMITTED)
    return order


def _reject_unresolved(order_id: int, reason: str, *, payload: Any = None) -> None:
    with transaction.atomic():
        order = Order.objects.locked().get(pk=order_id)
        if can_transition(OrderStatus(order.status), OrderStatus.REJECTED):
            order.reason = reason[:500]
            _move(order, OrderStatus.REJECTED, OrderEventType.REJECTED, detail=reason, payload=payload)


def _note(order_id: int, event_type: OrderEventType, detail: str) -> None:
    order = Order.objects.get(pk=order_id)
    _record(order, event_type, detail=detail)


def send_order_to_broker(*, order_id: int) -> None:
    order = _claim_for_sending(order_id)
    if order is None:
        return  # already sent by another worker, or cancelled before it went out
    connection = order.account.broker_connection
    request = _order_request(order)
    answer: BrokerOrder | None = None
    unavailable: BrokerUnavailable | None = None
    for delay in (0.0, *SEND_RETRY_DELAYS):
        if unavailable is not None:
            if unavailable.retry_after and unavailable.retry_after > SEND_RETRY_DELAYS[-1]:
                break
            time.sleep(max(delay, unavailable.retry_after or 0))
        try:
            answer = registry.get_adapter(connection).submit_order(request)
            break
        except BrokerUnavailable as exc:
            unavailable = exc
            _note(order_id, OrderEventType.BROKER_UNAVAILABLE, exc.message)
        except BrokerRejected as exc:
            _reject_unresolved(order_id, f"Rejected by the broker: {exc.message}")
            return
        except BrokerAuthError as exc:
            disable_connection(connection=connection, reason=f"Credentials refused: {exc.message}")
            _reject_unresolved(order_id, f"The broker refused our credentials ({exc.message}); connection disabled.")
            return
        except OutcomeUnknown as exc:
            # It may be at the broker: never send again. Ask the broker by client id instead.
            _note(order_id, OrderEventType.OUTCOME_UNKNOWN, f"{exc.message} Reconciling by client id.")
            publish_order_on_commit(order)
            tasks.reconcile_order_task.apply_async((order_id,), countdown=RECONCILE_AFTER_UNKNOWN_SECONDS)
            return
    if answer is None:
        assert unavailable is not None
        _reject_unresolved(order_id, f"Broker unreachable, order not sent: {unavailable.message}")
        return
    apply_broker_reports(connection_id=order.account.broker_connection_id, reports=[answer])


# -- Broker reports in ----------------------------------------------------------------------

_EVENT_FOR_STATUS = {
    OrderStatus.ACCEPTED: OrderEventType.ACCEPTED,
    OrderStatus.REJECTED: OrderEventType.REJECTED,
    OrderStatus.CANCELED: OrderEventType.CANCELED,
    OrderStatus.EXPIRED: OrderEventType.EXPIRED,
}


def _apply_order_report(*, account: TradingAccount, report: BrokerOrder) -> Order | None:
    """Apply one status report. Call only from apply_broker_reports (it holds the account lock)."""
    if not report.client_order_id:
        logger.warning("Order %s on %s was placed outside propdesk; not adopted yet", report.broker_order_id, account)
        return None
    order = Order.objects.locked().filter(account=account, client_order_id=report.client_order_id).first()
    if order is None:
        logger.warning("Report for unknown client order id %s on %s", report.client_order_id, account)
        return None
    new_broker_id = not order.broker_order_id
    if new_broker_id:
        order.broker_order_id = report.broker_order_id
    target = status_for_report(OrderStatus(order.status), report.status)
    if target is None:
        if new_broker_id:
            order.save(update_fields=["broker_order_id", "updated_at"])
        return order
    if target in (OrderStatus.REJECTED, OrderStatus.CANCELED, OrderStatus.EXPIRED):
        order.reason = report.reason[:500]
    _move(
        order,
        target,
        _EVENT_FOR_STATUS[target],
        detail=report.reason,
        payload=asdict(report),
        occurred_at=report.occurred_at,
    )
    return order


def _apply_fill(*, account: TradingAccount, fill: BrokerFill) -> Fill | None:
    """Apply one fill exactly once (None: already applied, or not an order of ours).

    Call only from apply_broker_reports: it holds the account's row lock, which serializes every
    write to the account's fills, positions and balance.
    """
    if not fill.client_order_id:
        logger.warning(
            "Fill %s on %s belongs to an order placed outside propdesk; not adopted yet", fill.fill_id, account
        )
        return None
    order = Order.objects.locked().filter(account=account, client_order_id=fill.client_order_id).first()
    if order is None:
        logger.warning("Fill %s for unknown client order id %s on %s", fill.fill_id, fill.client_order_id, account)
        return None
    if Fill.objects.filter(account=account, broker_fill_id=fill.fill_id).exists():
        return None
    instrument: Instrument = order.instrument
    position, _ = Position.objects.get_or_create(account=account, instrument=instrument)
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
    _record(
        order,
        OrderEventType.FILL,
        from_status=previous,
        to_status=order.status,
        detail=detail,
        payload=asdict(fill),
        occurred_at=fill.occurred_at,
    )
    publish_fill_on_commit(order=order, position=position, account_id=account.pk)
    return applied


# Status reports that fills make redundant: fill progress comes from fills (see status_for_report).
_FILL_PROGRESS = frozenset({ReportedStatus.WORKING, ReportedStatus.PARTIALLY_FILLED, ReportedStatus.FILLED})


def apply_broker_reports(*, connection_id: int, reports: list[BrokerOrder | BrokerFill]) -> list[Fill]:
    """The one way broker reports reach our books (pushed events, answers, reconciliation).

    Per account, one transaction holding the account's row lock: fills first, in order, then the
    newest status report of each order (older ones are stale by the state table). Live updates
    go out once the account's batch is committed. Returns the fills newly applied.
    """
    applied: list[Fill] = []
    for ref in dict.fromkeys(report.account_ref for report in reports):
        mine = [report for report in reports if report.account_ref == ref]
        fills = [report for report in mine if isinstance(report, BrokerFill)]
        filled_orders = {fill.client_order_id for fill in fills}
        newest = {r.client_order_id or r.broker_order_id: r for r in mine if isinstance(r, BrokerOrder)}
        with transaction.atomic():
            account = (
                TradingAccount.objects.select_for_update()
                .filter(broker_connection_id=connection_id, broker_account_id=ref)
                .first()
            )
            if account is None:
                logger.warning(
                    "Reports for account %s, which no propdesk account on connection %s uses", ref, connection_id
                )
                continue
            for fill in fills:
                if done := _apply_fill(account=account, fill=fill):
                    applied.append(done)
            for report in newest.values():
                if report.status in _FILL_PROGRESS and report.client_order_id in filled_orders:
                    continue  # the fills just applied already moved the order further
                _apply_order_report(account=account, report=report)
    return applied


def ingest_broker_events(*, connection_id: int, events: list[dict[str, Any]]) -> None:
    """Events a broker pushed (its stream) -> reports -> our books."""
    connection = BrokerConnection.objects.get(pk=connection_id)
    apply_broker_reports(connection_id=connection_id, reports=registry.get_adapter(connection).parse_events(events))


# -- Cancelling ------------------------------------------------------------------------------


def request_cancel(*, order: Order, actor: User | None = None) -> Order:
    with transaction.atomic():
        order = Order.objects.locked().get(pk=order.pk)
        if order.status == OrderStatus.PENDING_CANCEL:
            return order
        if order.status not in CANCELABLE_STATUSES:
            raise OrderNotCancelable(
                f"The order is {order.get_status_display().lower()}; only working orders can be cancelled."
            )
        if order.status == OrderStatus.NEW:
            order.reason = "Canceled before it was sent."
            _move(order, OrderStatus.CANCELED, OrderEventType.CANCELED, detail=order.reason, actor=actor)
            return order
        _move(order, OrderStatus.PENDING_CANCEL, OrderEventType.CANCEL_REQUESTED, actor=actor)
        tasks.send_cancel_to_broker_task.delay_on_commit(order.pk)
        return order


def send_cancel_to_broker(*, order_id: int) -> None:
    order = Order.objects.select_related("account__broker_connection").get(pk=order_id)
    if order.status != OrderStatus.PENDING_CANCEL:
        return
    try:
        report = registry.get_adapter(order.account.broker_connection).cancel_order(
            account_ref=order.account.broker_account_id, client_order_id=order.client_order_id
        )
    except BrokerRejected as exc:
        # Usually "already filled": the broker's own reports tell what happened; ask now.
        _note(order_id, OrderEventType.CANCEL_REJECTED, exc.message)
        reconcile_order(order_id=order_id, cancel_refused=True)
        return
    except BrokerError as exc:
        _note(order_id, OrderEventType.OUTCOME_UNKNOWN, f"Cancel: {exc.message} Reconciling.")
        tasks.reconcile_order_task.apply_async((order_id,), countdown=RECONCILE_AFTER_UNKNOWN_SECONDS)
        return
    apply_broker_reports(connection_id=order.account.broker_connection_id, reports=[report])


# -- Closing and flattening ---------------------------------------------------------------------


def close_position(
    *,
    position: Position,
    quantity: int | None = None,
    actor: User | None = None,
    source: OrderSource = OrderSource.CLOSE,
) -> Order:
    """Send a market order that takes off all (or `quantity`) of a position.

    Close orders already on their way count against what is left to close, so a double click
    can never reverse the position.
    """
    if quantity is not None:
        validate_quantity(quantity)
    with transaction.atomic():
        account = (
            TradingAccount.objects.select_for_update(of=("self",))
            .select_related("broker_connection")
            .get(pk=position.account_id)
        )
        position = Position.objects.select_related("instrument").get(pk=position.pk)
        if position.quantity == 0:
            raise NothingToClose(f"The {position.instrument.symbol} position is already flat.")
        side = OrderSide.SELL if position.quantity > 0 else OrderSide.BUY
        in_flight = liquidating_quantity(account_id=account.pk, instrument_id=position.instrument_id, side=side)
        closable = abs(position.quantity) - in_flight
        if closable <= 0:
            raise NothingToClose(f"Orders closing the whole {position.instrument.symbol} position are already working.")
        if quantity is not None and quantity > closable:
            raise DomainError(
                f"Can close at most {closable} of the {abs(position.quantity)} {position.instrument.symbol} contracts"
                + (f" ({in_flight} already being closed)." if in_flight else "."),
                code="close_quantity_too_large",
                field="quantity",
            )
        intent = OrderIntent(
            symbol=position.instrument.symbol,
            side=side,
            quantity=quantity or closable,
            order_type=OrderType.MARKET,
            is_liquidation=True,
        )
        return submit_order(account=account, intent=intent, source=source, created_by=actor).order


@dataclass(frozen=True)
class FlattenResult:
    canceled: list[Order]
    closing: list[Order]


def flatten_account(
    *,
    account: TradingAccount,
    actor: User | None = None,
    source: OrderSource = OrderSource.FLATTEN,
    instrument_ids: set[int] | None = None,
) -> FlattenResult:
    """Cancel every working order and close every position (market orders, normal order path);
    with `instrument_ids`, only those instruments (e.g. a product past its early close)."""
    canceled, closing = [], []
    with transaction.atomic():
        TradingAccount.objects.select_for_update().get(pk=account.pk)
        working = Order.objects.filter(account=account, status__in=CANCELABLE_STATUSES).exclude(
            source__in=LIQUIDATING_SOURCES, order_type=OrderType.MARKET
        )
        positions = Position.objects.open().filter(account=account)
        if instrument_ids is not None:
            working = working.filter(instrument_id__in=instrument_ids)
            positions = positions.filter(instrument_id__in=instrument_ids)
        for order in working:
            canceled.append(request_cancel(order=order, actor=actor))
        for position in positions:
            try:
                closing.append(close_position(position=position, actor=actor, source=source))
            except NothingToClose:
                continue
    return FlattenResult(canceled=canceled, closing=closing)


# -- Reconciliation ------------------------------------------------------------------------------


def reconcile_order(*, order_id: int, cancel_refused: bool = False) -> None:
    """Ask the broker about one order by client id and bring ours in line (fills first)."""
    order = Order.objects.select_related("account__broker_connection").get(pk=order_id)
    if order.status not in (
        OrderStatus.SUBMITTED,
        OrderStatus.ACCEPTED,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.PENDING_CANCEL,
    ):
        return
    account = order.account
    adapter = registry.get_adapter(account.broker_connection)
    try:
        report = adapter.get_order(account_ref=account.broker_account_id, client_order_id=order.client_order_id)
    except BrokerError as exc:
        logger.info("Reconcile of %s deferred: %s", order.client_order_id, exc.message)
        return
    if report is None:
        lost_before = timezone.now() - settings.ORDER_LOST_AFTER
        if order.status == OrderStatus.SUBMITTED and order.submitted_at and order.submitted_at < lost_before:
            _reject_unresolved(order_id, "The broker has no record of this order: it never arrived. It was not resent.")
        return
    was_unresolved = order.status == OrderStatus.SUBMITTED
    fills: list[BrokerFill] = []
    if report.filled_quantity > order.filled_quantity:
        since = (order.submitted_at or order.created_at) - settings.ORDER_LOST_AFTER
        fills = [
            fill
            for fill in adapter.list_fills(account_ref=account.broker_account_id, since=since)
            if fill.client_order_id == order.client_order_id
        ]
    apply_broker_reports(connection_id=account.broker_connection_id, reports=[*fills, report])
    with transaction.atomic():
        order = Order.objects.locked().get(pk=order_id)
        if (
            order.status == OrderStatus.PENDING_CANCEL
            and report.status in (ReportedStatus.WORKING, ReportedStatus.PARTIALLY_FILLED)
            and cancel_refused
        ):
            back = OrderStatus.PARTIALLY_FILLED if order.filled_quantity else OrderStatus.ACCEPTED
            _move(order, back, OrderEventType.STATUS_CHANGED, detail="The broker kept the order working.")
        if was_unresolved:
            _record(
                order, OrderEventType.RECONCILED, detail=f"Broker reports it {report.status}.", payload=asdict(report)
            )


def reconcile_unresolved_orders() -> int:
    """The safety net for the order path; returns how many orders it looked at."""
    now = timezone.now()
    stale = now - settings.ORDER_UNRESOLVED_AFTER
    # Committed but never enqueued (the process died between commit and enqueue): the claim
    # makes a second send impossible, so enqueueing again is safe.
    for order_id in Order.objects.filter(status=OrderStatus.NEW, created_at__lt=stale).values_list("pk", flat=True):
        tasks.send_order_to_broker_task.delay(order_id)
    unresolved = list(
        Order.objects.filter(status=OrderStatus.SUBMITTED, submitted_at__lt=stale).values_list("pk", flat=True)
    ) + list(Order.objects.filter(status=OrderStatus.PENDING_CANCEL, updated_at__lt=stale).values_list("pk", flat=True))
    for order_id in unresolved:
        reconcile_order(order_id=order_id, cancel_refused=True)
    return len(unresolved)
