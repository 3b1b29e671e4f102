"""Placing, sending, changing, cancelling and closing orders.

The order path is exactly once: an order row with its client id is committed before anything
leaves the process; a worker claims it with a compare-and-set and calls the broker once; an
answer that never came leaves it unresolved until reconciliation asks the broker by client id.
What brokers report (answers included) is booked by orders.booking.

Lock order, everywhere: account, then order, then position.
"""

import base64
import hashlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import TradingAccount
from brokers import registry
from brokers.errors import BrokerAuthError, BrokerError, BrokerRejected, BrokerUnavailable, OutcomeUnknown
from brokers.interface import (
    BrokerFill,
    BrokerOrder,
    Capability,
    OrderRequest,
    ReportedStatus,
    report_to_json,
)
from brokers.market_data import get_last_price, get_last_prices
from brokers.models import BrokerConnection, Instrument
from brokers.selectors import resolve_instrument
from brokers.services import disable_connection
from brokers.ticks import normalize_price
from config.errors import ConflictError, DomainError
from orders import booking, groups, plan_service, tasks
from orders.domain import (
    AUTOMATED_SOURCES,
    CANCELABLE_STATUSES,
    LIQUIDATING_SOURCES,
    MODIFIABLE_STATUSES,
    PROTECTIVE_ROLES,
    BracketSpec,
    InvalidOrder,
    OrderEventType,
    OrderIntent,
    OrderRole,
    OrderSide,
    OrderSource,
    OrderStatus,
    OrderType,
    PositionEffect,
    can_transition,
    check_bracket_sides,
    check_position_effect,
    check_protective_price,
    level_price,
    validate_level,
    validate_order_intent,
    validate_price,
    validate_quantity,
)
from orders.events import move_order, new_event, record_event
from orders.models import Fill, Order, OrderEvent, OrderGroup, Position
from orders.plans import parse_plan_request
from orders.realtime import publish_order_on_commit
from orders.selectors import liquidating_quantity, working_quantities
from risk import services as risk_services

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


def request_fingerprint(
    *, account_id: int, intent: OrderIntent, bracket: BracketSpec | None = None, plan: dict[str, Any] | None = None
) -> str:
    fields = (
        account_id,
        intent.symbol,
        intent.side,
        intent.quantity,
        intent.order_type,
        intent.time_in_force,
        intent.limit_price,
        intent.stop_price,
        intent.trail_amount,
        intent.position_effect,
        bracket,
        sorted((plan or {}).items(), key=repr),
    )
    return hashlib.sha256(repr(fields).encode()).hexdigest()


# -- Placing orders ---------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitOutcome:
    order: Order
    created: bool  # False: an earlier request with the same idempotency key made this order


@dataclass(frozen=True)
class OrderToSubmit:
    """One order of a submission: see submit_order for the fields."""

    account: TradingAccount
    intent: OrderIntent
    client_order_id: str | None = None
    bracket: BracketSpec | None = None
    group: tuple[OrderGroup, OrderRole] | None = None
    plan: dict[str, Any] | None = None


@dataclass(frozen=True)
class _Checked:
    """A request that passed validation, with what validation made of it."""

    index: int
    request: OrderToSubmit
    instrument: Instrument
    intent: OrderIntent
    bracket: BracketSpec | None
    fingerprint: str


def _validated(
    index: int, request: OrderToSubmit, *, source: OrderSource, instruments: dict[str, Instrument]
) -> _Checked:
    if (instrument := instruments.get(request.intent.symbol)) is None:
        instrument = instruments[request.intent.symbol] = resolve_instrument(request.intent.symbol)
    intent = validate_order_intent(
        replace(request.intent, symbol=instrument.symbol, is_automated=source in AUTOMATED_SOURCES),
        tick_size=instrument.tick_size,
    )
    bracket, plan = request.bracket, request.plan
    if plan is not None:
        if bracket is None or bracket.stop_loss is None:
            raise InvalidOrder(
                "A plan goes with a bracket that has a stop loss: R is measured from it.",
                code="plan_needs_stop",
                field="plan",
            )
        parse_plan_request(plan, now=timezone.now())  # refused now, not when the entry fills
    if bracket is not None:
        bracket, intent = _checked_bracket(intent, bracket, instrument)
    if intent.order_type == OrderType.TRAILING_STOP:
        intent = _with_trailing_start(intent, instrument)
    fingerprint = request_fingerprint(account_id=request.account.pk, intent=intent, bracket=bracket, plan=plan)
    return _Checked(index, request, instrument, intent, bracket, fingerprint)


def _replay(existing: Order, fingerprint: str) -> SubmitOutcome:
    if existing.request_fingerprint != fingerprint:
        raise IdempotencyConflict(
            "This Idempotency-Key was already used for a different order; use a new key for a new order.",
            field="Idempotency-Key",
        )
    return SubmitOutcome(existing, created=False)


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
    bracket: BracketSpec | None = None,
    group: tuple[OrderGroup, OrderRole] | None = None,
    plan: dict[str, Any] | None = None,
) -> SubmitOutcome:
    """Validate, risk-check and store an order, then send it after commit.

    A denied order is stored as DENIED with its denials and never sent. Giving a deterministic
    `client_order_id` makes the call idempotent: the same id with the same request returns the
    first order, with a different request raises IdempotencyConflict. With `bracket`, the
    stop loss and take profit are stored with it, held until it fills (orders.groups); with
    `plan` too, that position plan starts when it fills (R from the bracket's stop).
    """
    request = OrderToSubmit(account, intent, client_order_id, bracket, group, plan)
    (result,) = submit_orders([request], source=source, created_by=created_by)
    if isinstance(result, DomainError):
        raise result
    return result


def submit_orders(
    requests: Sequence[OrderToSubmit], *, source: OrderSource, created_by: User | None = None
) -> list[SubmitOutcome | DomainError]:
    """submit_order for many orders at once (a signal fanned out to many accounts, a mass
    flatten): one answer per request, in order, either its outcome or the error that refused it,
    so that one account's refusal never stops the others. The orders are checked and stored
    together (a dozen queries for the lot, not per order) and sent in batches after commit."""
    results: list[SubmitOutcome | DomainError | None] = [None] * len(requests)
    checked: list[_Checked] = []
    instruments: dict[str, Instrument] = {}  # by the symbol asked for: one query per symbol
    for index, request in enumerate(requests):
        try:
            checked.append(_validated(index, request, source=source, instruments=instruments))
        except DomainError as exc:
            results[index] = exc
    keys = [c.request.client_order_id for c in checked if c.request.client_order_id]
    known = {o.client_order_id: o for o in Order.objects.filter(client_order_id__in=keys)} if keys else {}
    connections = BrokerConnection.objects.defer("credentials").in_bulk(
        {c.request.account.broker_connection_id for c in checked}
    )
    fresh: list[_Checked] = []
    for item in checked:
        try:
            if item.request.client_order_id and (existing := known.get(item.request.client_order_id)):
                results[item.index] = _replay(existing, item.fingerprint)
                continue
            _check_connection_ready(connections[item.request.account.broker_connection_id])
        except DomainError as exc:
            results[item.index] = exc
            continue
        fresh.append(item)
    for batch in _one_order_per_account(fresh):
        try:
            with transaction.atomic():
                _store_batch(batch, source=source, created_by=created_by, results=results)
        except IntegrityError:
            if len(batch) > 1:  # someone else's order took one of these client ids: each on its own
                for item in batch:
                    results[item.index] = submit_orders([item.request], source=source, created_by=created_by)[0]
                continue
            # Another request with the same idempotency key won the race; answer as its replay.
            item = batch[0]
            existing = Order.objects.filter(client_order_id=item.request.client_order_id).first()
            if existing is None:
                raise
            try:
                results[item.index] = _replay(existing, item.fingerprint)
            except DomainError as exc:
                results[item.index] = exc
    return [result for result in results if result is not None]


def _one_order_per_account(items: list[_Checked]) -> list[list[_Checked]]:
    """Batches holding each account once: an order's pre-trade check must see the orders stored
    before it on the same account, which a batch's shared snapshot would not."""
    batches: list[list[_Checked]] = []
    for item in items:
        for batch in batches:
            if all(other.request.account.pk != item.request.account.pk for other in batch):
                batch.append(item)
                break
        else:
            batches.append([item])
    return batches


def _store_batch(
    batch: list[_Checked],
    *,
    source: OrderSource,
    created_by: User | None,
    results: list[SubmitOutcome | DomainError | None],
) -> None:
    """Check and store one batch in the caller's transaction, writing each outcome to `results`."""
    # The row locks make pre-trade checks of one account run one at a time, so two orders
    # cannot both pass a check that only one of them should. Id order: no deadlocks.
    locked = {
        account.pk: account
        for account in TradingAccount.objects.select_for_update()
        .filter(pk__in=[item.request.account.pk for item in batch])
        .order_by("pk")
    }
    refused = _position_effect_refusals(batch, locked)
    for item in batch:
        if item.index in refused:
            results[item.index] = refused[item.index]
    batch = [item for item in batch if item.index not in refused]
    denials = risk_services.check_pre_trade(
        [(locked[item.request.account.pk], item.intent, item.instrument) for item in batch]
    )
    orders = []
    for item in batch:
        order = _new_order(
            locked[item.request.account.pk],
            item.instrument,
            item.intent,
            source=source,
            created_by=created_by,
            client_order_id=item.request.client_order_id,
            fingerprint=item.fingerprint,
        )
        if item.request.group is not None:
            order.group, order.role = item.request.group
        orders.append(order)
    Order.objects.bulk_create(orders)
    OrderEvent.objects.bulk_create(
        new_event(
            order, OrderEventType.CREATED, to_status=OrderStatus.NEW, actor=created_by, payload={"source": source}
        )
        for order in orders
    )
    to_send = []
    for item, order, denied in zip(batch, orders, denials, strict=True):
        results[item.index] = SubmitOutcome(order, created=True)
        if denied:
            order.denials = [d.as_dict() for d in denied]
            order.reason = " ".join(d.detail for d in denied)[:500]
            move_order(order, OrderStatus.DENIED, OrderEventType.DENIED, detail=order.reason, payload=order.denials)
            continue
        if item.bracket is not None:
            groups.attach_bracket(entry=order, spec=item.bracket, created_by=created_by, plan=item.request.plan or {})
        to_send.append(order)
    # On-commit callbacks run in order: the sends go first, the live updates after them.
    _enqueue_sends([order.pk for order in to_send])
    for order in to_send:
        publish_order_on_commit(order)


def _position_effect_refusals(batch: list[_Checked], locked: dict[int, TradingAccount]) -> dict[int, DomainError]:
    """Orders never mix sides in a position's context (see orders.domain.check_position_effect);
    our own closes are exempt. Two queries for the batch."""
    checked = [item for item in batch if not item.intent.is_liquidation]
    if not checked:
        return {}
    account_ids = {item.request.account.pk for item in checked}
    instrument_ids = {item.instrument.pk for item in checked}
    held = {
        (account_id, instrument_id): quantity
        for account_id, instrument_id, quantity in Position.objects.filter(
            account_id__in=account_ids, instrument_id__in=instrument_ids
        ).values_list("account_id", "instrument_id", "quantity")
    }
    working = working_quantities(account_ids=account_ids, instrument_ids=instrument_ids)
    refused: dict[int, DomainError] = {}
    for item in checked:
        account_id, instrument_id = item.request.account.pk, item.instrument.pk
        quantity = held.get((account_id, instrument_id), 0)
        if quantity == 0 and item.intent.position_effect == PositionEffect.AUTO:
            continue
        against = OrderSide.SELL if quantity > 0 else OrderSide.BUY
        try:
            check_position_effect(
                held=quantity,
                opposite_working=working.get((account_id, instrument_id, against), 0),
                signed_quantity=item.intent.signed_quantity,
                effect=item.intent.position_effect,
                symbol=item.instrument.symbol,
            )
        except DomainError as exc:
            refused[item.index] = exc
    return refused


def _enqueue_sends(order_ids: list[int], *, on_commit: bool = True) -> None:
    """Send tasks for stored orders, in batches the order workers take up side by side."""
    size = settings.ORDER_SEND_BATCH_SIZE
    for start in range(0, len(order_ids), size):
        chunk = order_ids[start : start + size]
        if on_commit:
            tasks.send_orders_to_broker_task.delay_on_commit(chunk)
        else:
            tasks.send_orders_to_broker_task.delay(chunk)


def _new_order(
    account: TradingAccount,
    instrument: Instrument,
    intent: OrderIntent,
    *,
    source: OrderSource,
    created_by: User | None,
    fingerprint: str,
    client_order_id: str | None = None,
) -> Order:
    """The NEW order row for a validated intent (not saved)."""
    return Order(
        client_order_id=client_order_id or new_client_order_id(),
        account=account,
        instrument=instrument,
        side=intent.side,
        quantity=intent.quantity,
        order_type=intent.order_type,
        limit_price=intent.limit_price,
        stop_price=intent.stop_price,
        trail_amount=intent.trail_amount,
        position_effect=intent.position_effect,
        time_in_force=intent.time_in_force,
        source=source,
        created_by=created_by if created_by is not None and created_by.is_authenticated else None,
        request_fingerprint=fingerprint,
        status=OrderStatus.NEW,
    )


def _checked_bracket(
    intent: OrderIntent, bracket: BracketSpec, instrument: Instrument
) -> tuple[BracketSpec, OrderIntent]:
    """Levels on the grid and on the right sides of the entry; the intent learns its stop (for
    the worst-case loss check: a tick offset is counted from the entry's price as known now)."""
    if bracket.stop_loss is None and bracket.take_profit is None:
        raise InvalidOrder("A bracket needs a stop loss, a take profit or both.", code="empty_bracket")
    if intent.position_effect != PositionEffect.AUTO or intent.order_type == OrderType.TRAILING_STOP:
        raise InvalidOrder(
            "A bracket goes with an entry that opens or adds to a position (a market, limit, stop or stop-limit "
            "order, not reduce-only or reverse).",
            code="bracket_entry_invalid",
        )
    tick = instrument.tick_size
    bracket = BracketSpec(
        stop_loss=validate_level(bracket.stop_loss, tick_size=tick, field="stop_loss") if bracket.stop_loss else None,
        take_profit=validate_level(bracket.take_profit, tick_size=tick, field="take_profit")
        if bracket.take_profit
        else None,
    )
    reference = intent.limit_price or intent.stop_price or get_last_price(instrument.symbol)
    check_bracket_sides(
        entry_side=intent.side,
        reference=reference,
        stop_loss=bracket.stop_loss.price if bracket.stop_loss else None,
        take_profit=bracket.take_profit.price if bracket.take_profit else None,
    )
    stop = None
    if bracket.stop_loss is not None and (bracket.stop_loss.price is not None or reference is not None):
        stop = level_price(
            bracket.stop_loss, entry_side=intent.side, anchor=reference or Decimal(0), tick_size=tick, is_stop=True
        )
    return bracket, replace(intent, stop_loss=stop)


def _with_trailing_start(intent: OrderIntent, instrument: Instrument) -> OrderIntent:
    """A trailing stop starts `trail_amount` behind the last price."""
    market = get_last_price(instrument.symbol)
    if market is None:
        raise InvalidOrder(
            f"No {instrument.symbol} price yet to start a trailing stop from; try again when it trades.",
            code="no_market_price",
        )
    assert intent.trail_amount is not None
    stop = market - intent.trail_amount if intent.side == OrderSide.SELL else market + intent.trail_amount
    if stop <= 0:
        raise InvalidOrder("The trail amount is larger than the price.", code="invalid_price", field="trail_amount")
    return replace(intent, stop_price=normalize_price(stop, instrument.tick_size))


# -- Sending to the broker ----------------------------------------------------------------


def _order_request(order: Order, *, native_trailing: bool) -> OrderRequest:
    """The order as the broker gets it. A trailing stop at a broker without them goes out as a
    plain stop at its current level, which orders.trailing then moves."""
    trailing = order.order_type == OrderType.TRAILING_STOP
    return OrderRequest(
        account_ref=order.account.broker_account_id,
        client_order_id=order.client_order_id,
        symbol=order.instrument.symbol,
        side=order.side,
        quantity=order.quantity,
        order_type=OrderType.STOP if trailing and not native_trailing else order.order_type,
        time_in_force=order.time_in_force,
        limit_price=order.limit_price,
        stop_price=order.stop_price,
        trail_amount=order.trail_amount if trailing and native_trailing else None,
        oco_group=groups.oco_link(order),
    )


def _claim_for_sending(order_ids: list[int]) -> list[Order]:
    """Compare-and-set NEW -> SUBMITTED: exactly one worker wins the right to call the broker
    for each order (a row another worker claimed first is no longer NEW once its lock is free)."""
    now = timezone.now()
    with transaction.atomic():
        orders = list(
            Order.objects.select_for_update(of=("self",))
            .select_related("account", "instrument")
            .filter(pk__in=order_ids, status=OrderStatus.NEW)
            .order_by("pk")
        )
        if not orders:
            return []
        Order.objects.filter(pk__in=[o.pk for o in orders]).update(
            status=OrderStatus.SUBMITTED, submitted_at=now, updated_at=now
        )
        for order in orders:
            order.status, order.submitted_at, order.updated_at = OrderStatus.SUBMITTED, now, now
        # No live update yet: the broker's answer, a moment later, publishes the order.
        OrderEvent.objects.bulk_create(
            new_event(order, OrderEventType.SUBMITTED, from_status=OrderStatus.NEW, to_status=OrderStatus.SUBMITTED)
            for order in orders
        )
    return orders


def _reject_unresolved(order_id: int, reason: str, *, payload: Any = None) -> None:
    with transaction.atomic():
        order = Order.objects.locked().get(pk=order_id)
        if can_transition(OrderStatus(order.status), OrderStatus.REJECTED):
            order.reason = reason[:500]
            move_order(order, OrderStatus.REJECTED, OrderEventType.REJECTED, detail=reason, payload=payload)
            if order.source == OrderSource.PLAN:
                plan_service.record_rejected_exit(order)


def _note(order_ids: list[int], event_type: OrderEventType, detail: str) -> None:
    OrderEvent.objects.bulk_create(
        new_event(order, event_type, detail=detail) for order in Order.objects.filter(pk__in=order_ids)
    )


def send_orders_to_broker(*, order_ids: list[int]) -> None:
    """Send stored orders, each connection's in one call to its adapter (one request where the
    broker takes batches). Orders another worker sent already, or that were cancelled before they
    went out, are skipped."""
    claimed = _claim_for_sending(order_ids)
    by_connection: dict[int, list[Order]] = {}
    for order in claimed:
        by_connection.setdefault(order.account.broker_connection_id, []).append(order)
    connections = BrokerConnection.objects.in_bulk(list(by_connection))
    for connection_id, orders in by_connection.items():
        _send_batch(connections[connection_id], orders)


def _send_batch(connection: BrokerConnection, orders: list[Order]) -> None:
    adapter = registry.get_adapter(connection)
    native_trailing = Capability.TRAILING_STOP in adapter.capabilities
    pending = {order.pk: order for order in orders}
    answers: list[BrokerOrder] = []
    unavailable: BrokerUnavailable | None = None
    for delay in (0.0, *SEND_RETRY_DELAYS):
        if unavailable is not None:
            if unavailable.retry_after and unavailable.retry_after > SEND_RETRY_DELAYS[-1]:
                break
            time.sleep(max(delay, unavailable.retry_after or 0))
            unavailable = None
        batch = list(pending.values())
        try:
            results: list[BrokerOrder | BrokerError] = adapter.submit_orders(
                [_order_request(order, native_trailing=native_trailing) for order in batch]
            )
        except BrokerError as exc:  # about the whole call: it holds for every order in it
            results = [exc] * len(batch)
        for order, result in zip(batch, results, strict=True):
            if isinstance(result, BrokerOrder):
                answers.append(result)
                del pending[order.pk]
            elif isinstance(result, BrokerUnavailable):
                unavailable = result  # the request never got there: safe to try again
            else:
                _settle_refused(connection, order, result)
                del pending[order.pk]
        if unavailable is not None:
            _note(list(pending), OrderEventType.BROKER_UNAVAILABLE, unavailable.message)
        if not pending:
            break
    for order in pending.values():
        assert unavailable is not None
        _reject_unresolved(order.pk, f"Broker unreachable, order not sent: {unavailable.message}")
    if answers:
        _book_later(connection.pk, answers)


def _settle_refused(connection: BrokerConnection, order: Order, error: BrokerError) -> None:
    """An order the broker did not take, or whose fate is unknown."""
    if isinstance(error, OutcomeUnknown):
        # It may be at the broker: never send again. Ask the broker by client id instead.
        _note([order.pk], OrderEventType.OUTCOME_UNKNOWN, f"{error.message} Reconciling by client id.")
        publish_order_on_commit(order)
        tasks.reconcile_order_task.apply_async((order.pk,), countdown=RECONCILE_AFTER_UNKNOWN_SECONDS)
    elif isinstance(error, BrokerAuthError):
        if connection.is_enabled:
            disable_connection(connection=connection, reason=f"Credentials refused: {error.message}")
            connection.is_enabled = False  # once for the batch
        _reject_unresolved(order.pk, f"The broker refused our credentials ({error.message}); connection disabled.")
    else:
        _reject_unresolved(order.pk, f"Rejected by the broker: {error.message}")


# -- Cancelling ------------------------------------------------------------------------------


def request_cancel(*, order: Order, actor: User | None = None, sync: bool = True) -> Order:
    """Cancel an order: at once if the broker does not have it yet, else through the broker.
    (`sync=False` is for orders.groups, which is already bringing the group in line.)"""
    with transaction.atomic():
        if sync and order.group_id:
            TradingAccount.objects.select_for_update().get(pk=order.account_id)  # lock order: account first
        order = Order.objects.locked().get(pk=order.pk)
        if order.status == OrderStatus.PENDING_CANCEL:
            return order
        if order.status not in CANCELABLE_STATUSES:
            raise OrderNotCancelable(
                f"The order is {order.get_status_display().lower()}; only working orders can be cancelled."
            )
        if order.status in (OrderStatus.NEW, OrderStatus.HELD):
            order.reason = "Canceled before it was sent."
            move_order(order, OrderStatus.CANCELED, OrderEventType.CANCELED, detail=order.reason, actor=actor)
            if sync and order.group_id:
                groups.sync_groups(account=order.account, instrument_ids={order.instrument_id})
            return order
        move_order(order, OrderStatus.PENDING_CANCEL, OrderEventType.CANCEL_REQUESTED, actor=actor)
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
        _note([order_id], OrderEventType.CANCEL_REJECTED, exc.message)
        reconcile_order(order_id=order_id, cancel_refused=True)
        return
    except BrokerError as exc:
        _note([order_id], OrderEventType.OUTCOME_UNKNOWN, f"Cancel: {exc.message} Reconciling.")
        tasks.reconcile_order_task.apply_async((order_id,), countdown=RECONCILE_AFTER_UNKNOWN_SECONDS)
        return
    booking.apply_broker_reports(connection_id=order.account.broker_connection_id, reports=[report])


# -- Changing a working order ---------------------------------------------------------------


class OrderNotModifiable(ConflictError):
    code = "order_not_modifiable"


class ChangePending(ConflictError):
    code = "modify_pending"


@dataclass(frozen=True)
class OrderChange:
    quantity: int | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Decimal) else v for k, v in asdict(self).items() if v is not None}


def _validated_change(order: Order, change: OrderChange, *, managed_quantity: bool) -> OrderChange:
    if change == OrderChange():
        raise DomainError("Give a new quantity, limit price or stop price.", code="nothing_to_change")
    tick = order.instrument.tick_size
    prices: dict[str, Decimal] = {}
    for field, value, allowed in (
        ("limit_price", change.limit_price, (OrderType.LIMIT, OrderType.STOP_LIMIT)),
        ("stop_price", change.stop_price, (OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP)),
    ):
        if value is None:
            continue
        if order.order_type not in allowed:
            raise InvalidOrder(
                f"A {order.get_order_type_display().lower()} order has no {field.replace('_', ' ')}.",
                code="unexpected_price",
                field=field,
            )
        prices[field] = validate_price(value, tick_size=tick, field=field)
    if change.quantity is not None:
        validate_quantity(change.quantity)
        if managed_quantity:
            raise InvalidOrder(
                "A stop loss or take profit always covers the position: its quantity follows the position.",
                code="leg_quantity_managed",
                field="quantity",
            )
        if change.quantity <= order.filled_quantity:
            raise InvalidOrder(
                f"quantity must be above the {order.filled_quantity} already filled.",
                code="invalid_quantity",
                field="quantity",
            )
    return OrderChange(quantity=change.quantity, **prices)


def modify_order(
    *, order: Order, change: OrderChange, actor: User | None = None, managed: bool = False, detail: str = ""
) -> Order:
    """Change a working order's quantity and/or prices through the broker's modify.

    Our record changes only when the broker confirms (its report carries the new terms); until
    then the wanted change waits in `pending_change` and a second change is refused. An order
    the broker does not have yet (held or not yet sent) changes at once. `managed` is for our
    own callers (group sizing, plans), which may set a protective leg's quantity.
    """
    with transaction.atomic():
        order = Order.objects.locked().get(pk=order.pk)
        wanted = _validated_change(order, change, managed_quantity=order.role in PROTECTIVE_ROLES and not managed)
        if order.role in PROTECTIVE_ROLES and (price := wanted.stop_price or wanted.limit_price) is not None:
            held = Position.objects.filter(account_id=order.account_id, instrument_id=order.instrument_id).first()
            check_protective_price(
                position_quantity=held.quantity if held else 0,
                role=order.role,
                price=price,
                market=get_last_price(order.instrument.symbol),
            )
        if order.pending_change:
            raise ChangePending("A change of this order is waiting for the broker's answer; try again when it is done.")
        if order.status not in MODIFIABLE_STATUSES:
            word = "on its way to the broker" if order.status == OrderStatus.SUBMITTED else order.get_status_display()
            raise OrderNotModifiable(f"The order is {str(word).lower()}; only working orders can be changed.")
        terms = wanted.as_dict()
        if order.status in (OrderStatus.HELD, OrderStatus.NEW):
            before = {field: str(getattr(order, field)) for field in terms}
            for field, value in asdict(wanted).items():
                if value is not None:
                    setattr(order, field, value)
            order.save()
            record_event(
                order,
                OrderEventType.MODIFIED,
                detail=detail or "Changed before it was sent.",
                payload={"from": before, "to": terms},
                actor=actor,
            )
            publish_order_on_commit(order)
            return order
        order.pending_change = {**terms, "requested_at": timezone.now().isoformat()}
        order.save(update_fields=["pending_change", "updated_at"])
        record_event(order, OrderEventType.MODIFY_REQUESTED, detail=detail, payload=terms, actor=actor)
        publish_order_on_commit(order)
        tasks.send_modifies_to_broker_task.delay_on_commit([order.pk])
    return order


@dataclass(frozen=True)
class StopMove:
    """One protective stop to move, for modify_stops."""

    order_id: int
    stop_price: Decimal
    detail: str


_STOP_MOVE_COLUMNS = (
    "id",
    "account_id",
    "instrument",
    "status",
    "role",
    "order_type",
    "quantity",
    "filled_quantity",
    "stop_price",
    "limit_price",
    "pending_change",
)


def modify_stops(*, moves: list[StopMove]) -> dict[int, DomainError | None]:
    """Move many protective stops at once (plans after one price): the same rules as modify_order,
    but one transaction and bulk writes, and the changes sent together once it commits. Call with
    the accounts' row locks held (lock order: account, plan, orders). Returns, per order id, None
    when the move was asked of the broker (or made, for an order it does not have yet), else why not.

    The changes are sent by this process right after commit, not through the order workers'
    queue: a stop that lags the market is risk, and the queue's hop cost 20-40 ms of a 100 ms
    budget on a busy machine (bench/plans.py, decision 0018). Sending here holds back only this
    evaluation, which could not move these stops again before the broker answers anyway.
    """
    if not moves:
        return {}
    outcome: dict[int, DomainError | None] = {}
    with transaction.atomic():
        # The columns these rules read (whole Order rows were a fifth of a batch's CPU; decision 0017).
        locked = {
            o.pk: o
            for o in Order.objects.select_for_update(of=("self",))
            .select_related("instrument")
            .only(*_STOP_MOVE_COLUMNS)
            .filter(pk__in=[m.order_id for m in moves])
            .order_by("pk")
        }
        held = {
            (p.account_id, p.instrument_id): p.quantity
            for p in Position.objects.filter(
                account_id__in={o.account_id for o in locked.values()},
                instrument_id__in={o.instrument_id for o in locked.values()},
            )
        }
        markets = get_last_prices({o.instrument.symbol for o in locked.values()})
        now = timezone.now()
        asked: list[Order] = []
        events: list[OrderEvent] = []
        for move in moves:
            order = locked[move.order_id]
            if order.status in (OrderStatus.HELD, OrderStatus.NEW):  # not at the broker: changes at once
                try:
                    modify_order(order=order, change=OrderChange(stop_price=move.stop_price), managed=True)
                    outcome[order.pk] = None
                except DomainError as exc:
                    outcome[order.pk] = exc
                continue
            try:
                wanted = _validated_change(order, OrderChange(stop_price=move.stop_price), managed_quantity=False)
                check_protective_price(
                    position_quantity=held.get((order.account_id, order.instrument_id), 0),
                    role=order.role,
                    price=move.stop_price,
                    market=markets.get(order.instrument.symbol),
                )
                if order.pending_change:
                    raise ChangePending("A change of this order is waiting for the broker's answer.")
                if order.status not in MODIFIABLE_STATUSES:
                    raise OrderNotModifiable(f"The order is {order.get_status_display().lower()}.")
            except DomainError as exc:
                outcome[order.pk] = exc
                continue
            terms = wanted.as_dict()
            order.pending_change = {**terms, "requested_at": now.isoformat()}
            order.updated_at = now
            asked.append(order)
            events.append(
                OrderEvent(
                    order=order,
                    type=OrderEventType.MODIFY_REQUESTED,
                    detail=move.detail[:500],
                    payload=terms,
                    occurred_at=now,
                )
            )
            outcome[order.pk] = None
        if asked:
            # One UPDATE per distinct change (the plans a price moves share a few stop levels):
            # bulk_update's CASE per row cost more than the rest of the batch.
            same: dict[str, list[Order]] = {}
            for order in asked:
                same.setdefault(order.pending_change["stop_price"], []).append(order)
            for orders in same.values():
                Order.objects.filter(pk__in=[o.pk for o in orders]).update(
                    pending_change=orders[0].pending_change, updated_at=now
                )
            OrderEvent.objects.bulk_create(events)
            # No "order.updated" for the change asked: the plans publish the move as asked, and the
            # broker's answer (booked by the send task, a few ms later) publishes the order as it
            # then stands, or as it stays when refused (decision 0017).
            ids = [order.pk for order in asked]
            transaction.on_commit(partial(_send_modifies_now, ids))
    return outcome


def _send_modifies_now(order_ids: list[int]) -> None:
    try:
        send_modifies_to_broker(order_ids=order_ids)
    except Exception:  # committed changes must still go out: the order workers try once more
        logger.exception("Sending stop moves %s failed here; handed to the order workers", order_ids)
        tasks.send_modifies_to_broker_task.delay(order_ids)


def _drop_change(order_id: int, reason: str) -> None:
    """The broker refused (or never got) the change: ours stays as it was, and says why."""
    with transaction.atomic():
        order = Order.objects.locked().get(pk=order_id)
        if not order.pending_change:
            return
        record_event(order, OrderEventType.MODIFY_REJECTED, detail=reason, payload=order.pending_change)
        if "stop_price" in order.pending_change:
            plan_service.note_stop_refused(order.instrument.symbol)  # the plans record it
        order.pending_change = {}
        order.save(update_fields=["pending_change", "updated_at"])
        publish_order_on_commit(order)
        if order.group_id:
            groups.sync_groups(account=order.account, instrument_ids={order.instrument_id})


def send_modifies_to_broker(*, order_ids: list[int]) -> None:
    """Many changes (modify_stops): asked in one request per connection where the broker takes
    batches (else one by one), their answers booked together per connection."""
    by_connection: dict[int, list[Order]] = {}
    for order in (
        Order.objects.select_related("account", "instrument")
        .filter(pk__in=order_ids)
        .exclude(pending_change={})
        .order_by("pk")
    ):
        by_connection.setdefault(order.account.broker_connection_id, []).append(order)
    connections = BrokerConnection.objects.in_bulk(list(by_connection))  # credentials decrypted once each
    for connection_id, orders in by_connection.items():
        reports = _ask_broker_to_modify_all(connections[connection_id], orders)
        # Once booked (or refused now), the plans of these stops may move them again, so the next
        # price evaluates them (their triggers left the stop out while the move was in flight).
        symbols = sorted({order.instrument.symbol for order in orders})
        if reports:
            _book_later(connection_id, reports, bands_to_drop=symbols)
        else:
            for symbol in symbols:
                plan_service.drop_band(symbol, at_once=True)


def _book_later(connection_id: int, reports: list[BrokerOrder], *, bands_to_drop: list[str] | None = None) -> None:
    """The broker's answers are booked by the events workers, as what it pushes is: a sender
    goes on to its next request at once instead of booking (a busy sender would hold back every
    order and change queued behind it). Lost, they are found by reconciliation like a lost push."""
    tasks.book_broker_reports_task.delay(connection_id, [report_to_json(r) for r in reports], bands_to_drop)


def _modify_request(order: Order) -> dict[str, Any]:
    wanted = order.pending_change
    return {
        "account_ref": order.account.broker_account_id,
        "client_order_id": order.client_order_id,
        "quantity": wanted.get("quantity"),
        "limit_price": Decimal(wanted["limit_price"]) if "limit_price" in wanted else None,
        "stop_price": Decimal(wanted["stop_price"]) if "stop_price" in wanted else None,
    }


def _ask_broker_to_modify_all(connection: BrokerConnection, orders: list[Order]) -> list[BrokerOrder]:
    """The pending changes of orders of one connection, in one call to the adapter; the answers
    to book. A refusal drops that order's change only (ours stays as it was); an error of the whole
    call holds for every order in it: unreachable after the retries drops the changes, an
    unknown outcome is reconciled (never sent again)."""
    adapter = registry.get_adapter(connection)
    results: list[BrokerOrder | BrokerError] | None = None
    requests = [_modify_request(order) for order in orders]
    for delay in (0.0, *SEND_RETRY_DELAYS):
        time.sleep(delay)
        try:
            sent_at = timezone.now()
            results = adapter.modify_orders(requests)
            break
        except BrokerUnavailable as exc:
            for order in orders:
                record_event(order, OrderEventType.BROKER_UNAVAILABLE, detail=f"Change: {exc.message}")
        except BrokerRejected as exc:
            results = [exc] * len(orders)
            break
        except BrokerError as exc:
            results = [exc] * len(orders)
            break
    if results is None:
        for order in orders:
            _drop_change(order.pk, "Broker unreachable: the change was not sent; the order stands as it was.")
        return []
    answers: list[BrokerOrder] = []
    for order, result in zip(orders, results, strict=True):
        if isinstance(result, BrokerRejected):
            _drop_change(order.pk, f"Refused by the broker: {result.message}")
        elif isinstance(result, BrokerError):
            # It may have been applied: never send it again; ask the broker what the order is now.
            record_event(order, OrderEventType.OUTCOME_UNKNOWN, detail=f"Change: {result.message} Reconciling.")
            tasks.reconcile_order_task.apply_async((order.pk,), countdown=RECONCILE_AFTER_UNKNOWN_SECONDS)
        else:
            answers.append(replace(result, requested_at=sent_at))
    return answers


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
    return flatten_accounts(accounts=[account], source=source, actor=actor, instrument_ids=instrument_ids)[account.pk]


def flatten_accounts(
    *,
    accounts: list[TradingAccount],
    source: OrderSource,
    actor: User | None = None,
    instrument_ids: set[int] | None = None,
) -> dict[int, FlattenResult]:
    """Flatten many accounts in one transaction: risk enforcement after a price move that
    breached many at once, where one close order after the other would take too long.

    The accounts are locked in id order (so two batches cannot deadlock) and the close orders
    inserted together; each is the order close_position would place (same validation,
    pre-trade check, CREATED event, sent after commit), for what is not already being closed.
    Raises BrokerNotReady, before anything is written, when an account's connection cannot
    take orders.
    """
    ids = sorted({a.pk for a in accounts})
    results = {account_id: FlattenResult(canceled=[], closing=[]) for account_id in ids}
    with transaction.atomic():
        locked = {
            a.pk: a
            for a in TradingAccount.objects.select_for_update(of=("self",))
            .select_related("broker_connection")
            .filter(pk__in=ids)
            .order_by("pk")
        }
        for account in locked.values():
            _check_connection_ready(account.broker_connection)
        working = (
            Order.objects.filter(account_id__in=ids, status__in=CANCELABLE_STATUSES)
            .exclude(source__in=LIQUIDATING_SOURCES, order_type=OrderType.MARKET)
            .order_by("account_id", "pk")
        )
        positions = Position.objects.open().filter(account_id__in=ids).select_related("instrument")
        if instrument_ids is not None:
            working = working.filter(instrument_id__in=instrument_ids)
            positions = positions.filter(instrument_id__in=instrument_ids)
        for order in working:
            results[order.account_id].canceled.append(request_cancel(order=order, actor=actor))
        # What liquidating_quantity counts, for all the accounts in one query.
        in_flight: dict[tuple[int, int, str], int] = {}
        for account_id, instrument_id, side, quantity, filled in (
            Order.objects.open()
            .filter(account_id__in=ids, source__in=LIQUIDATING_SOURCES)
            .exclude(role__in=PROTECTIVE_ROLES)
            .values_list("account_id", "instrument_id", "side", "quantity", "filled_quantity")
        ):
            key = (account_id, instrument_id, side)
            in_flight[key] = in_flight.get(key, 0) + quantity - filled
        closes: list[OrderToSubmit] = []
        for position in positions.order_by("account_id", "pk"):
            account, instrument = locked[position.account_id], position.instrument
            side = OrderSide.SELL if position.quantity > 0 else OrderSide.BUY
            left = abs(position.quantity) - in_flight.get((account.pk, instrument.pk, side), 0)
            if left <= 0:
                continue  # closes for all of it are already working
            intent = OrderIntent(
                symbol=instrument.symbol, side=side, quantity=left, order_type=OrderType.MARKET, is_liquidation=True
            )
            closes.append(OrderToSubmit(account, intent))
        for result in submit_orders(closes, source=source, created_by=actor):
            if isinstance(result, DomainError):
                raise result  # a close is never refused; were one ever, the whole flatten says so
            results[result.order.account_id].closing.append(result.order)
    return results


# -- Reconciliation ------------------------------------------------------------------------------


# Orders the broker should know about: sent, and not over as far as we know.
RECONCILABLE_STATUSES = frozenset(
    {OrderStatus.SUBMITTED, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING_CANCEL}
)


def reconcile_order(*, order_id: int, cancel_refused: bool = False) -> None:
    """Ask the broker about one order by client id and bring ours in line (fills first)."""
    order = Order.objects.select_related("account__broker_connection").get(pk=order_id)
    if order.status not in RECONCILABLE_STATUSES:
        return
    account = order.account
    adapter = registry.get_adapter(account.broker_connection)
    try:
        report = adapter.get_order(account_ref=account.broker_account_id, client_order_id=order.client_order_id)
    except BrokerError as exc:
        logger.info("Reconcile of %s deferred: %s", order.client_order_id, exc.message)
        return
    bring_order_in_line(order_id=order_id, report=report, cancel_refused=cancel_refused)


def bring_order_in_line(*, order_id: int, report: BrokerOrder | None, cancel_refused: bool = False) -> list[Fill]:
    """Bring one order in line with `report`, what the broker just said of it by client id (None:
    it has no record), fetching the fills it counts that we lack. Returns the fills applied.

    A submission the broker never heard of is rejected once ORDER_LOST_AFTER has passed (never
    resent); an acknowledged order it no longer knows is left to account reconciliation, which
    also sees the broker's list of working orders (orders.reconciliation).
    """
    order = Order.objects.select_related("account__broker_connection").get(pk=order_id)
    if order.status not in RECONCILABLE_STATUSES:
        return []
    account = order.account
    if report is None:
        lost_before = timezone.now() - settings.ORDER_LOST_AFTER
        if order.status == OrderStatus.SUBMITTED and order.submitted_at and order.submitted_at < lost_before:
            _reject_unresolved(order_id, "The broker has no record of this order: it never arrived. It was not resent.")
        return []
    was_unresolved = order.status == OrderStatus.SUBMITTED
    fills: list[BrokerFill] = []
    if report.filled_quantity > order.filled_quantity:
        since = (order.submitted_at or order.created_at) - settings.ORDER_LOST_AFTER
        adapter = registry.get_adapter(account.broker_connection)
        fills = [
            fill
            for fill in adapter.list_fills(account_ref=account.broker_account_id, since=since)
            if fill.client_order_id == order.client_order_id
        ]
    applied = booking.apply_broker_reports(connection_id=account.broker_connection_id, reports=[*fills, report])
    with transaction.atomic():
        order = Order.objects.locked().get(pk=order_id)
        if (
            order.status == OrderStatus.PENDING_CANCEL
            and report.status in (ReportedStatus.WORKING, ReportedStatus.PARTIALLY_FILLED)
            and cancel_refused
        ):
            back = OrderStatus.PARTIALLY_FILLED if order.filled_quantity else OrderStatus.ACCEPTED
            move_order(order, back, OrderEventType.STATUS_CHANGED, detail="The broker kept the order working.")
        if was_unresolved:
            record_event(
                order, OrderEventType.RECONCILED, detail=f"Broker reports it {report.status}.", payload=asdict(report)
            )
    if order.pending_change:
        # The broker's terms were just applied: a change still pending was not made.
        _drop_change(order_id, "The broker reports the order unchanged: the change did not reach it.")
    return applied


def reconcile_unresolved_orders() -> int:
    """The safety net for the order path; returns how many orders it looked at."""
    now = timezone.now()
    stale = now - settings.ORDER_UNRESOLVED_AFTER
    # Committed but never enqueued (the process died between commit and enqueue): the claim
    # makes a second send impossible, so enqueueing again is safe.
    never_sent = list(Order.objects.filter(status=OrderStatus.NEW, created_at__lt=stale).values_list("pk", flat=True))
    _enqueue_sends(never_sent, on_commit=False)
    unresolved = list(
        Order.objects.filter(status=OrderStatus.SUBMITTED, submitted_at__lt=stale).values_list("pk", flat=True)
    ) + list(Order.objects.filter(status=OrderStatus.PENDING_CANCEL, updated_at__lt=stale).values_list("pk", flat=True))
    for order_id in unresolved:
        reconcile_order(order_id=order_id, cancel_refused=True)
    return len(unresolved)
