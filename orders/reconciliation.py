"""Reconciliation with the broker: an account's working orders, fills and positions compared with
its broker's, ours brought in line through the one ingestion path, every difference recorded.

A run covers one account (a connection's run: one per account on it) and happens at worker
start, on a beat and on staff request. The order of work matters: unresolved submissions first
(asked by client id), then fills we never applied (adopting the outside orders they belong to),
the broker's working orders (outside ones adopted, changed terms taken), our working orders the
broker no longer lists (settled, or marked vanished), and positions last, once every fill we can
see is in. Each run is stored with its discrepancies; a failed or stale last run keeps the
account from opening new risk (risk.rules.reconciliation_allows). See docs/decisions/0010.
"""

import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import asdict, is_dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from accounts.domain import AccountStatus
from accounts.models import TradingAccount
from brokers import registry
from brokers.errors import BrokerError
from brokers.interface import BrokerAdapter, BrokerFill, BrokerOrder, BrokerPosition
from brokers.market_data import get_last_price
from brokers.models import BrokerConnection
from brokers.selectors import resolve_instrument
from config.errors import DomainError
from orders import booking, groups, services, tasks
from orders.domain import (
    AVG_PRICE_QUANTUM,
    WORKING_STATUSES,
    OrderEventType,
    OrderSide,
    OrderSource,
    OrderStatus,
    OrderType,
    can_transition,
)
from orders.events import move_order
from orders.models import (
    Discrepancy,
    DiscrepancyKind,
    Fill,
    Order,
    Position,
    ReconciliationOutcome,
    ReconciliationRun,
)

logger = logging.getLogger(__name__)

# Fills are fetched from the last good run's start minus this margin, so a fill stamped a little
# earlier by the broker's clock, or recorded late on its side, is still seen. Applying is
# idempotent by fill id, so the overlap costs nothing but a longer list.
FILL_OVERLAP = timedelta(minutes=5)

# Acknowledged orders the broker should still list as working.
ACKNOWLEDGED_STATUSES = (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING_CANCEL)


class ReconciliationTrigger(StrEnum):
    STARTUP = "startup"  # a Celery worker started
    BEAT = "beat"
    STAFF = "staff"
    SEED = "seed"  # seed_demo, so the demo trades at once


# -- Entry points ------------------------------------------------------------------------------


def enqueue_reconciliations(*, trigger: str) -> int:
    """One reconciliation task per enabled connection that has accounts; returns how many."""
    connection_ids = list(
        BrokerConnection.objects.filter(is_enabled=True, accounts__isnull=False)
        .distinct()
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for connection_id in connection_ids:
        tasks.reconcile_connection_task.delay(connection_id, trigger)
    return len(connection_ids)


def request_reconciliation(*, accounts: Iterable[TradingAccount], trigger: str = ReconciliationTrigger.STAFF) -> int:
    """Queue a run per account (staff's "Reconcile now"): broker calls stay out of web requests."""
    count = 0
    for account in accounts:
        tasks.reconcile_account_task.delay_on_commit(account.pk, str(trigger))
        count += 1
    return count


def reconcile_connection(*, connection_id: int, trigger: str) -> int:
    """One task per account of the connection (a connection can hold thousands: one long task
    would outlive its time limit); returns how many were queued."""
    account_ids = list(
        TradingAccount.objects.filter(broker_connection_id=connection_id, broker_connection__is_enabled=True)
        .exclude(status=AccountStatus.CLOSED)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for account_id in account_ids:
        tasks.reconcile_account_task.delay(account_id, trigger)
    return len(account_ids)


def reconcile_account(*, account_id: int, trigger: str) -> ReconciliationRun:
    """Compare one account with its broker and correct our books. Always stores a run: a broker
    that could not be asked, or a run that broke half way, is a FAILED run (which closes the gate
    on new risk); corrections already made stay made, as each one is idempotent."""
    account = TradingAccount.objects.select_related("broker_connection").get(pk=account_id)
    started_at = timezone.now()
    found: list[Discrepancy] = []
    error = ""
    try:
        _reconcile(account, found)
    except BrokerError as exc:
        error = f"The broker could not be asked: {exc.message}"
    except Exception as exc:  # a run that broke must be recorded as failed, not vanish from the record
        logger.exception("Reconciliation of account %s failed", account_id)
        error = f"Reconciliation broke off: {exc!r}"
    if error:
        outcome = ReconciliationOutcome.FAILED
    else:
        outcome = ReconciliationOutcome.CORRECTED if found else ReconciliationOutcome.CLEAN
    with transaction.atomic():
        run = ReconciliationRun.objects.create(
            account=account,
            trigger=trigger,
            outcome=outcome,
            discrepancies=len(found),
            error=error[:500],
            started_at=started_at,
            finished_at=timezone.now(),
        )
        for discrepancy in found:
            discrepancy.run = run
        Discrepancy.objects.bulk_create(found)
    if outcome != ReconciliationOutcome.CLEAN:
        logger.warning("Reconciliation of %s: %s, %d discrepancies %s", account, outcome, len(found), error)
    return run


def _reconcile(account: TradingAccount, found: list[Discrepancy]) -> None:
    adapter = registry.get_adapter(account.broker_connection)
    ref = account.broker_account_id
    _settle_unresolved_submissions(account, adapter, found)
    # Positions are read before the fills and again at the end: a position that moved in
    # between is being traded right now and is left to the next run (see _align_positions).
    positions_before = _broker_positions(adapter, ref)
    fills = adapter.list_fills(account_ref=ref, since=_fills_since(account))
    listed = adapter.list_open_orders(account_ref=ref)
    _apply_missed_fills(account, fills, found)
    _apply_listed_orders(account, adapter, listed, found)
    _settle_unlisted_orders(account, adapter, listed, found)
    _align_positions(account, adapter, positions_before, found)


# -- Orders and fills ------------------------------------------------------------------------


def _settle_unresolved_submissions(account: TradingAccount, adapter: BrokerAdapter, found: list[Discrepancy]) -> None:
    """Orders sent whose answer never came (a timeout, a worker killed mid-call): asked by
    client id, never resent. Younger ones may still be on their way and are left alone."""
    stale = timezone.now() - settings.ORDER_UNRESOLVED_AFTER
    unresolved = Order.objects.filter(account=account, status=OrderStatus.SUBMITTED, submitted_at__lt=stale)
    for order in unresolved.select_related("instrument").order_by("pk"):
        report = adapter.get_order(account_ref=account.broker_account_id, client_order_id=order.client_order_id)
        applied = services.bring_order_in_line(order_id=order.pk, report=report)
        after = Order.objects.get(pk=order.pk)
        if after.status == OrderStatus.SUBMITTED:
            continue  # unknown at the broker but still inside ORDER_LOST_AFTER: the next run asks again
        said = f"the broker reports it {report.status}" if report else "the broker has no record of it"
        correction = f"{OrderStatus.SUBMITTED} -> {after.status}"
        if applied:
            correction += f", {len(applied)} fill(s) applied"
        if after.status == OrderStatus.REJECTED:
            correction += "; not resent"
        found.append(
            Discrepancy(
                kind=DiscrepancyKind.UNRESOLVED_ORDER,
                order=after,
                symbol=order.instrument.symbol,
                detail=f"Sent at {order.submitted_at:%Y-%m-%d %H:%M:%S} UTC with no broker answer recorded; {said}.",
                correction=correction,
                payload=_payload(report) if report else {},
            )
        )


def _apply_missed_fills(account: TradingAccount, fills: list[BrokerFill], found: list[Discrepancy]) -> None:
    # Most of the window is known already: one read here keeps the ingestion path's account
    # lock short. The ingestion path still checks each fill id itself (the stream may race us).
    known = set(
        Fill.objects.filter(account=account, broker_fill_id__in=[f.fill_id for f in fills]).values_list(
            "broker_fill_id", flat=True
        )
    )
    unknown = [fill for fill in fills if fill.fill_id not in known]
    if not unknown:
        return
    newest = _newest_order_pk()
    reported = {fill.fill_id: fill for fill in unknown}
    # The one ingestion path: fills of orders we never placed adopt their order as external.
    applied = booking.apply_broker_reports(connection_id=account.broker_connection_id, reports=list(unknown))
    _record_missed_fills(applied, found, reported)
    _record_adopted(account, newest, found)


def _record_missed_fills(applied: list[Fill], found: list[Discrepancy], reported: dict[str, BrokerFill]) -> None:
    for fill in applied:
        order: Order = fill.order
        outside = " of an order placed outside propdesk" if order.source == OrderSource.EXTERNAL else ""
        found.append(
            Discrepancy(
                kind=DiscrepancyKind.MISSED_FILL,
                order=order,
                symbol=fill.instrument.symbol,
                detail=(
                    f"Fill {fill.broker_fill_id}{outside}: {fill.side} {fill.quantity} @ {fill.price} at "
                    f"{fill.occurred_at:%Y-%m-%d %H:%M:%S} UTC never reached our books."
                ),
                correction=f"Applied once: position, realized P&L and balance updated; the order is {order.status}.",
                payload=_payload(reported[fill.broker_fill_id]) if fill.broker_fill_id in reported else {},
            )
        )


def _apply_listed_orders(
    account: TradingAccount, adapter: BrokerAdapter, listed: list[BrokerOrder], found: list[Discrepancy]
) -> None:
    """The broker's working orders: outside ones adopted, changed terms taken, contradictions kept."""
    if not listed:
        return
    newest = _newest_order_pk()
    client_ids = [r.client_order_id for r in listed if r.client_order_id]
    broker_ids = [r.broker_order_id for r in listed if r.broker_order_id]
    by_client_id = {o.client_order_id: o for o in Order.objects.filter(account=account, client_order_id__in=client_ids)}
    by_broker_id = {o.broker_order_id: o for o in Order.objects.filter(account=account, broker_order_id__in=broker_ids)}
    to_apply: list[BrokerOrder | BrokerFill] = []
    for report in listed:
        order = by_client_id.get(report.client_order_id or "") or by_broker_id.get(report.broker_order_id)
        if order is None:
            to_apply.append(report)  # placed outside propdesk: the ingestion path adopts it
            continue
        if order.status in (OrderStatus.HELD, OrderStatus.NEW):
            continue  # being sent this very moment; its own answer will settle it
        if order.status not in WORKING_STATUSES:
            found.append(
                Discrepancy(
                    kind=DiscrepancyKind.STATUS,
                    order=order,
                    symbol=report.symbol,
                    detail=(
                        f"Our order is {order.status}, but the broker still lists it working "
                        f"({report.filled_quantity} of {report.quantity} filled)."
                    ),
                    correction=_cancel_unwanted(adapter, account, order),
                    payload=_payload(report),
                )
            )
            continue
        if report.filled_quantity > order.filled_quantity:
            # Fills older than the window fetched above: ask for this order's own.
            applied = services.bring_order_in_line(order_id=order.pk, report=report)
            _record_missed_fills(applied, found, {})
            continue
        changed = _changed_terms(order, report)
        if changed and not order.pending_change:
            found.append(
                Discrepancy(
                    kind=DiscrepancyKind.STATUS,
                    order=order,
                    symbol=report.symbol,
                    detail="The broker's terms differ from ours: " + "; ".join(changed) + ".",
                    correction="Took the broker's terms.",
                    payload=_payload(report),
                )
            )
        if changed or order.status == OrderStatus.SUBMITTED or order.pending_change:
            to_apply.append(report)
    if to_apply:
        booking.apply_broker_reports(connection_id=account.broker_connection_id, reports=to_apply)
    _record_adopted(account, newest, found)


# Orders we hold as never going to fill: one still working at the broker is risk nobody meant to
# keep, so it is cancelled there. A FILLED one is not touched: the contradiction is about fills,
# and a person decides (the discrepancy says so).
_CANCEL_IF_WORKING = frozenset({OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED})


def _cancel_unwanted(adapter: BrokerAdapter, account: TradingAccount, order: Order) -> str:
    """Cancel at the broker an order we hold as over; returns the correction to record. Our record
    cannot move back from a final status, so the broker's answer is kept, not applied."""
    if order.status not in _CANCEL_IF_WORKING:
        return ""
    try:
        adapter.cancel_order(account_ref=account.broker_account_id, client_order_id=order.client_order_id)
    except BrokerError as exc:
        return f"Asked the broker to cancel it; not done ({exc.message}); asked again next run."
    return "Cancelled at the broker."


def _changed_terms(order: Order, report: BrokerOrder) -> list[str]:
    terms = [("quantity", report.quantity), ("limit price", report.limit_price)]
    if order.order_type != OrderType.TRAILING_STOP:  # a native trailing stop moves at the broker by design
        terms.append(("stop price", report.stop_price))
    return [
        f"{name} {getattr(order, name.replace(' ', '_'))} here, {value} at the broker"
        for name, value in terms
        if value is not None and value != getattr(order, name.replace(" ", "_"))
    ]


def _settle_unlisted_orders(
    account: TradingAccount, adapter: BrokerAdapter, listed: list[BrokerOrder], found: list[Discrepancy]
) -> None:
    """Our acknowledged orders the broker does not list as working: asked one by one by client id.
    Over at the broker (filled, cancelled, expired): brought in line. Unknown there: vanished."""
    listed_client_ids = {r.client_order_id for r in listed if r.client_order_id}
    listed_broker_ids = {r.broker_order_id for r in listed if r.broker_order_id}
    candidates = Order.objects.filter(account=account, status__in=ACKNOWLEDGED_STATUSES).select_related("instrument")
    for order in candidates.order_by("pk"):
        if order.client_order_id in listed_client_ids or (
            order.broker_order_id and order.broker_order_id in listed_broker_ids
        ):
            continue
        # An adopted order has no client id of ours at the broker: it cannot be looked up, and
        # not being listed is all the broker will tell about it.
        report = (
            None
            if order.source == OrderSource.EXTERNAL
            else adapter.get_order(account_ref=account.broker_account_id, client_order_id=order.client_order_id)
        )
        if report is None:
            if vanished := _mark_vanished(account, order.pk):
                found.append(
                    Discrepancy(
                        kind=DiscrepancyKind.VANISHED_ORDER,
                        order=vanished,
                        symbol=order.instrument.symbol,
                        detail=(
                            f"Our {order.status} order ({order.remaining_quantity} left to fill) is not working at "
                            "the broker, which has no record of it."
                        ),
                        correction=f"{order.status} -> {vanished.status} (gone at the broker); nothing resent.",
                    )
                )
            continue
        applied = services.bring_order_in_line(order_id=order.pk, report=report)
        _record_missed_fills(applied, found, {})
        after = Order.objects.get(pk=order.pk)
        if after.status != order.status:
            reason = f": {report.reason}" if report.reason else ""
            found.append(
                Discrepancy(
                    kind=DiscrepancyKind.STATUS,
                    order=after,
                    symbol=order.instrument.symbol,
                    detail=f"Our order was {order.status}; the broker reports it {report.status}{reason}.",
                    correction=f"{order.status} -> {after.status}",
                    payload=_payload(report),
                )
            )


def _mark_vanished(account: TradingAccount, order_id: int) -> Order | None:
    """Settle an order the broker no longer knows: CANCELED through the state table, with a
    VANISHED event saying why. None when it moved on meanwhile (a late report settled it)."""
    with transaction.atomic():
        locked_account = TradingAccount.objects.select_for_update().get(pk=account.pk)  # lock order: account, order
        order = Order.objects.locked().get(pk=order_id)
        if order.status not in ACKNOWLEDGED_STATUSES or not can_transition(
            OrderStatus(order.status), OrderStatus.CANCELED
        ):
            return None
        order.reason = "Gone at the broker: no longer working there and no record of it (found by reconciliation)."
        move_order(order, OrderStatus.CANCELED, OrderEventType.VANISHED, detail=order.reason)
        if order.group_id:
            # A vanished leg leaves its group to be repaired like any cancelled leg.
            groups.sync_groups(account=locked_account, instrument_ids={order.instrument_id})
    return order


def _record_adopted(account: TradingAccount, newest_before: int, found: list[Discrepancy]) -> None:
    adopted = Order.objects.filter(account=account, source=OrderSource.EXTERNAL, pk__gt=newest_before)
    for order in adopted.select_related("instrument").order_by("pk"):
        price = order.limit_price or order.stop_price
        found.append(
            Discrepancy(
                kind=DiscrepancyKind.EXTERNAL_ORDER,
                order=order,
                symbol=order.instrument.symbol,
                detail=(
                    f"{order.side} {order.quantity} {order.instrument.symbol} {order.order_type}"
                    + (f" @ {price}" if price is not None else "")
                    + f" (broker order {order.broker_order_id}) was placed outside propdesk."
                ),
                correction=f"Adopted as an external order; it is {order.status}.",
            )
        )


def _newest_order_pk() -> int:
    return Order.objects.aggregate(newest=Max("pk"))["newest"] or 0


def _fills_since(account: TradingAccount) -> datetime:
    last_good = (
        ReconciliationRun.objects.filter(
            account=account, outcome__in=(ReconciliationOutcome.CLEAN, ReconciliationOutcome.CORRECTED)
        )
        .values_list("started_at", flat=True)
        .first()
    )
    # The first run looks back to when propdesk first knew the account: older fills opened
    # positions that the position comparison adopts as they are.
    return (last_good or account.created_at) - FILL_OVERLAP


# -- Positions -------------------------------------------------------------------------------


def _broker_positions(adapter: BrokerAdapter, ref: str) -> dict[str, BrokerPosition]:
    return {p.symbol: p for p in adapter.get_positions(account_ref=ref) if p.quantity}


def _our_positions(account: TradingAccount) -> dict[str, Position]:
    return {
        p.instrument.symbol: p for p in Position.objects.filter(account=account).open().select_related("instrument")
    }


def _quantity(positions: dict[str, BrokerPosition] | dict[str, Position], symbol: str) -> int:
    position = positions.get(symbol)
    return position.quantity if position else 0


def _align_positions(
    account: TradingAccount, adapter: BrokerAdapter, before: dict[str, BrokerPosition], found: list[Discrepancy]
) -> None:
    """Positions that still differ once every visible fill is in: ours set to the broker's.

    Only a position the broker reported the same before the fills were fetched and again now
    is corrected, and only after a third look under the account's lock (which holds back our
    own fills meanwhile): a position traded during the run is explained by fills we have not
    seen yet, and "correcting" it would count them twice. The next run looks again.
    """
    ref = account.broker_account_id
    after = _broker_positions(adapter, ref)
    ours = _our_positions(account)
    symbols = sorted(set(before) | set(after) | set(ours))
    suspects = [
        s for s in symbols if _quantity(before, s) == _quantity(after, s) and _quantity(after, s) != _quantity(ours, s)
    ]
    if moving := [s for s in symbols if _quantity(before, s) != _quantity(after, s)]:
        logger.info("Positions in %s moved during reconciliation of %s; left to the next run", moving, account)
    if not suspects:
        return
    with transaction.atomic():
        TradingAccount.objects.select_for_update().get(pk=account.pk)
        now = _broker_positions(adapter, ref)
        ours = _our_positions(account)
        for symbol in suspects:
            wanted = _quantity(now, symbol)
            if wanted != _quantity(after, symbol) or wanted == _quantity(ours, symbol):
                continue
            found.append(_adopt_position(account, symbol, broker=now.get(symbol), ours=ours.get(symbol)))


def _adopt_position(
    account: TradingAccount, symbol: str, *, broker: BrokerPosition | None, ours: Position | None
) -> Discrepancy:
    """Take the broker's position as placed outside propdesk: synthetic fills (fee 0, ids of
    their own) through the one ingestion path, so the position, its P&L and the audit trail
    move together. The caller holds the account's lock."""
    wanted, wanted_avg = (broker.quantity, broker.avg_price) if broker else (0, Decimal(0))
    held, held_avg = (ours.quantity, ours.avg_price) if ours else (0, Decimal(0))
    detail = (
        f"The broker holds {wanted:+d} {symbol}"
        + (f" @ {wanted_avg}" if wanted else "")
        + f"; our books had {held:+d}"
        + (f" @ {held_avg}" if held else "")
        + ", and no fill we can see explains the difference."
    )
    payload = {"broker": _payload(broker) if broker else None, "ours": {"quantity": held, "avg_price": str(held_avg)}}
    try:
        instrument = resolve_instrument(symbol)
    except DomainError:
        return Discrepancy(
            kind=DiscrepancyKind.POSITION,
            symbol=symbol,
            detail=detail + " propdesk does not list this contract.",
            correction="",
            payload=payload,
        )
    close_price = get_last_price(instrument.symbol) or held_avg
    trades = correcting_trades(
        held=held, held_avg=held_avg, wanted=wanted, wanted_avg=wanted_avg, close_price=close_price
    )
    key = uuid.uuid4().hex[:20]
    occurred_at = timezone.now()
    reports: list[BrokerOrder | BrokerFill] = [
        BrokerFill(
            account_ref=account.broker_account_id,
            fill_id=f"reconcile-{key}-{n}",
            broker_order_id=f"reconcile-{key}-{n}",
            client_order_id=None,
            symbol=instrument.symbol,
            side=side,
            quantity=quantity,
            price=price,
            fee=Decimal(0),
            occurred_at=occurred_at,
        )
        for n, (side, quantity, price) in enumerate(trades, 1)
    ]
    booking.apply_broker_reports(connection_id=account.broker_connection_id, reports=reports)
    adopted = Order.objects.filter(account=account, broker_order_id__in=[r.broker_order_id for r in reports])
    payload["fills"] = [r.broker_order_id for r in reports]
    reduced = held and (wanted == 0 or (wanted > 0) != (held > 0) or abs(wanted) < abs(held))
    return Discrepancy(
        kind=DiscrepancyKind.POSITION,
        order=adopted.order_by("-pk").first(),
        symbol=instrument.symbol,
        detail=detail,
        correction=(
            "Adopted as placed outside propdesk: "
            + "; ".join(f"{side} {quantity} @ {price}" for side, quantity, price in trades)
            + (f" (the closed part booked at {close_price}, the last price we had)" if reduced else "")
            + f". Our position is now {wanted:+d}."
        ),
        payload=payload,
    )


def correcting_trades(
    *, held: int, held_avg: Decimal, wanted: int, wanted_avg: Decimal, close_price: Decimal
) -> list[tuple[str, int, Decimal]]:
    """Trades (side, quantity, price) taking a position from `held` to `wanted` (signed).

    What must be taken off goes first, at `close_price`; what must be added (or opened) is
    priced so the resulting average is the broker's `wanted_avg`.
    """
    trades: list[tuple[str, int, Decimal]] = []
    if held and (wanted == 0 or (wanted > 0) != (held > 0) or abs(wanted) < abs(held)):
        keep = wanted if wanted and (wanted > 0) == (held > 0) else 0
        trades.append((OrderSide.SELL if held > 0 else OrderSide.BUY, abs(held - keep), close_price))
        held = keep
    if wanted != held:
        quantity = abs(wanted - held)
        price = (abs(wanted) * wanted_avg - abs(held) * held_avg) / quantity
        if price <= 0:
            price = wanted_avg
        trades.append((OrderSide.BUY if wanted > 0 else OrderSide.SELL, quantity, price.quantize(AVG_PRICE_QUANTUM)))
    return trades


def _payload(report: object) -> dict[str, Any]:
    data = asdict(report) if is_dataclass(report) and not isinstance(report, type) else {}
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))
