"""Order groups: brackets (an entry with its stop loss and take profit) and OCO pairs.

A bracket's legs are stored HELD with the entry, in the same transaction, and released by us
when the entry fills, sized to what filled. From then on the bracket is the context of the
account's position in that instrument (at most one per account and instrument):

- its stop and target always cover the open position: a partial entry fill, a scale-in, a
  partial exit or a partial fill of one leg resizes the others (a broker modify);
- a second bracket whose entry fills merges into it (its own legs are cancelled, the context's
  legs move to its levels); a plain order on the same side only resizes;
- when the position goes flat the rest is cancelled and the context ends; one leg cancelled
  cancels the other.

`sync_groups` makes all of that true again after every batch of broker reports, under the
account's row lock, so it runs once per change however the change arrived (pushed event,
answer, reconciliation). All state is in rows: a restart of any process loses nothing, and the
legs of a filled entry are committed before they are sent (exactly once, as every order).

Where the broker links orders one-cancels-other (Capability.OCO) the legs go out linked and
the broker cancels or reduces the sibling itself, atomically; elsewhere we cancel and resize.
"""

import logging
from decimal import Decimal

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from accounts.models import TradingAccount
from brokers import registry
from brokers.interface import Capability
from brokers.models import Instrument
from config.errors import DomainError
from orders import services, tasks
from orders.domain import (
    LIVE_STATUSES,
    PROTECTIVE_ROLES,
    BracketSpec,
    Level,
    OrderEventType,
    OrderIntent,
    OrderRole,
    OrderSide,
    OrderSource,
    OrderStatus,
    OrderType,
    exit_side,
    level_price,
)
from orders.events import move_order, record_event
from orders.models import Order, OrderGroup, OrderGroupKind, OrderGroupStatus, Position
from orders.realtime import publish_order_on_commit

logger = logging.getLogger(__name__)

User = AbstractBaseUser
ENDED_UNFILLED = frozenset({OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED, OrderStatus.DENIED})


def links_natively(account: TradingAccount) -> bool:
    return Capability.OCO in registry.get_adapter(account.broker_connection).capabilities


def oco_link(order: Order) -> str | None:
    """The link sent with a leg to a broker that keeps OCO groups itself."""
    if order.group_id and order.role in (*PROTECTIVE_ROLES, OrderRole.OCO_LEG) and order.group.native_oco:
        return f"pd-g{order.group_id}"
    return None


# -- Creating groups ------------------------------------------------------------------------------


def _held_leg(
    group: OrderGroup,
    *,
    role: str,
    side: str,
    quantity: int,
    price: Decimal | None,
    client_order_id: str,
    time_in_force: str,
    source: str,
    created_by: User | None,
    detail: str = "",
) -> Order:
    """A stop-loss (stop) or take-profit (limit) leg stored HELD, released by sync_groups."""
    is_stop = role == OrderRole.STOP_LOSS
    leg = Order.objects.create(
        client_order_id=client_order_id,
        account_id=group.account_id,
        instrument_id=group.instrument_id,
        side=side,
        quantity=quantity,
        order_type=OrderType.STOP if is_stop else OrderType.LIMIT,
        stop_price=price if is_stop else None,
        limit_price=None if is_stop else price,
        time_in_force=time_in_force,
        source=source,
        created_by=created_by if created_by is not None and created_by.is_authenticated else None,
        status=OrderStatus.HELD,
        group=group,
        role=role,
    )
    record_event(leg, OrderEventType.CREATED, to_status=OrderStatus.HELD, detail=detail, actor=created_by)
    return leg


def attach_bracket(
    *, entry: Order, spec: BracketSpec, created_by: User | None, plan: dict[str, object] | None = None
) -> OrderGroup:
    """Store the group and its HELD legs with a new entry (the caller's transaction); `plan`
    (already validated) starts on the position when the entry fills."""
    group = OrderGroup.objects.create(
        account=entry.account,
        instrument=entry.instrument,
        kind=OrderGroupKind.BRACKET,
        side="long" if entry.side == OrderSide.BUY else "short",
        stop_loss_price=spec.stop_loss.price if spec.stop_loss else None,
        stop_loss_ticks=spec.stop_loss.ticks if spec.stop_loss else None,
        take_profit_price=spec.take_profit.price if spec.take_profit else None,
        take_profit_ticks=spec.take_profit.ticks if spec.take_profit else None,
        native_oco=links_natively(entry.account),
        plan=plan or {},
        created_by=created_by if created_by is not None and created_by.is_authenticated else None,
    )
    entry.group, entry.role = group, OrderRole.ENTRY
    entry.save(update_fields=["group", "role", "updated_at"])
    for role, level in ((OrderRole.STOP_LOSS, spec.stop_loss), (OrderRole.TAKE_PROFIT, spec.take_profit)):
        if level is None:
            continue
        _held_leg(
            group,
            role=role,
            side=exit_side(entry.side),
            quantity=entry.quantity,
            price=level.price,
            client_order_id=services.client_order_id_for(scope=entry.client_order_id, key=role),
            time_in_force=entry.time_in_force,
            source=entry.source,
            created_by=entry.created_by,
            detail="Held until the entry fills." if level.price else f"{level.ticks} ticks from the entry's fill.",
        )
    return group


def submit_oco(
    *, account: TradingAccount, intents: tuple[OrderIntent, OrderIntent], source: OrderSource, created_by: User | None
) -> OrderGroup:
    """Two orders, one cancels the other: when either fills (even partly) or ends, the other is
    cancelled. Each leg is risk-checked; if either is denied neither is sent."""
    symbols = {services.resolve_instrument(intent.symbol).pk for intent in intents}
    if len(symbols) != 1:
        raise DomainError("Both legs of an OCO pair must be in the same contract.", code="oco_mixed_instruments")
    with transaction.atomic():
        group = OrderGroup.objects.create(
            account=account,
            instrument=Instrument.objects.get(pk=symbols.pop()),
            kind=OrderGroupKind.OCO,
            status=OrderGroupStatus.ACTIVE,
            native_oco=links_natively(account),
            created_by=created_by if created_by is not None and created_by.is_authenticated else None,
        )
        legs = [
            services.submit_order(
                account=account, intent=intent, source=source, created_by=created_by, group=(group, OrderRole.OCO_LEG)
            ).order
            for intent in intents
        ]
        denied = [leg for leg in legs if leg.status == OrderStatus.DENIED]
        if denied:
            # Neither goes out: roll back nothing (the denial is kept), but cancel the other.
            for leg in legs:
                if leg.status == OrderStatus.NEW:
                    leg.reason = "Its OCO partner was denied."
                    move_order(leg, OrderStatus.CANCELED, OrderEventType.CANCELED, detail=leg.reason)
            group.status = OrderGroupStatus.CANCELED
            group.detail = "A leg was denied by the pre-trade checks."
            group.save(update_fields=["status", "detail", "updated_at"])
    return group


# -- Keeping groups true ---------------------------------------------------------------------------


def sync_groups(*, account: TradingAccount, instrument_ids: set[int]) -> None:
    """Bring every open group of these instruments in line with the position and its legs.
    Call with the account's row lock held (apply_broker_reports, cancels)."""
    sync_groups_of({account.pk: instrument_ids})


def sync_groups_of(touched: dict[int, set[int]]) -> None:
    """sync_groups for many accounts (instrument ids by account id) with three queries in all:
    a batch of broker reports touches hundreds. Call with those accounts' row locks held."""
    if not touched:
        return
    instrument_ids = set().union(*touched.values())
    open_groups = [
        group
        for group in OrderGroup.objects.select_for_update()
        .filter(
            account_id__in=list(touched),
            instrument_id__in=instrument_ids,
            status__in=(OrderGroupStatus.PENDING, OrderGroupStatus.ACTIVE),
        )
        .order_by("pk")
        if group.instrument_id in touched[group.account_id]
    ]
    if not open_groups:
        return
    held = {
        (account_id, instrument_id): quantity
        for account_id, instrument_id, quantity in Position.objects.filter(
            account_id__in=list(touched), instrument_id__in=instrument_ids
        ).values_list("account_id", "instrument_id", "quantity")
    }
    legs = _legs_by_group(open_groups)
    by_position: dict[tuple[int, int], list[OrderGroup]] = {}
    for group in open_groups:
        by_position.setdefault((group.account_id, group.instrument_id), []).append(group)
    for key in sorted(by_position):
        _sync_position(by_position[key], legs, held=held.get(key, 0))


def _sync_position(open_groups: list[OrderGroup], legs: dict[int, list[Order]], *, held: int) -> None:
    """One position's open groups (oldest first) in line with it."""
    for group in open_groups:
        if group.kind == OrderGroupKind.OCO:
            _sync_oco(group, legs[group.pk])
    brackets = [g for g in open_groups if g.kind == OrderGroupKind.BRACKET]
    context = next((g for g in brackets if g.status == OrderGroupStatus.ACTIVE), None)
    for group in brackets:
        if group.status == OrderGroupStatus.PENDING:
            context = _sync_pending_bracket(group, legs[group.pk], held=held, context=context, legs=legs)
    if context is not None:
        _sync_context(context, legs[context.pk], held=held)


def _legs_by_group(groups: list[OrderGroup]) -> dict[int, list[Order]]:
    by_group: dict[int, list[Order]] = {g.pk: [] for g in groups}
    for leg in Order.objects.locked().filter(group__in=groups).order_by("pk"):
        by_group[leg.group_id].append(leg)
    return by_group


def _is_live(order: Order) -> bool:
    return order.status in LIVE_STATUSES


def _end(group: OrderGroup, status: OrderGroupStatus, detail: str, legs: list[Order]) -> None:
    for leg in legs:
        _cancel_leg(leg, detail)
    group.status, group.detail = status, detail[:300]
    group.save(update_fields=["status", "detail", "updated_at"])


def _cancel_leg(leg: Order, why: str) -> None:
    if leg.status == OrderStatus.HELD:
        leg.reason = why[:500]
        move_order(leg, OrderStatus.CANCELED, OrderEventType.CANCELED, detail=why)
    elif _is_live(leg) and leg.status != OrderStatus.PENDING_CANCEL:
        services.request_cancel(order=leg, sync=False)


def _sync_oco(group: OrderGroup, legs: list[Order]) -> None:
    """The first leg to fill (even partly) or end decides: the others are cancelled."""
    trigger = next((leg for leg in legs if leg.filled_quantity > 0 or leg.status in ENDED_UNFILLED), None)
    if trigger is None:
        return
    why = f"Its OCO partner {trigger.client_order_id} {'filled' if trigger.filled_quantity else trigger.status}."
    for leg in legs:
        if leg.pk == trigger.pk or not _is_live(leg):
            continue
        # A broker that links them cancels the sibling itself, atomically with the fill.
        if not group.native_oco or leg.status in (OrderStatus.HELD, OrderStatus.NEW):
            _cancel_leg(leg, why)
    group.status, group.detail = OrderGroupStatus.DONE, why[:300]
    group.save(update_fields=["status", "detail", "updated_at"])


def _entry_of(legs: list[Order]) -> Order:
    return next(leg for leg in legs if leg.role == OrderRole.ENTRY)


def _resolved_levels(group: OrderGroup, entry: Order) -> dict[str, Decimal | None]:
    """The group's levels as prices, anchored on the entry's average fill."""
    anchor = entry.avg_fill_price
    assert anchor is not None
    tick = entry.instrument.tick_size
    prices: dict[str, Decimal | None] = {}
    for role, price, ticks in (
        (OrderRole.STOP_LOSS, group.stop_loss_price, group.stop_loss_ticks),
        (OrderRole.TAKE_PROFIT, group.take_profit_price, group.take_profit_ticks),
    ):
        if price is None and ticks is None:
            prices[role] = None
            continue
        level = Level(price=price) if price is not None else Level(ticks=ticks)
        prices[role] = level_price(
            level, entry_side=entry.side, anchor=anchor, tick_size=tick, is_stop=role == OrderRole.STOP_LOSS
        )
    return prices


def _sync_pending_bracket(
    group: OrderGroup, own: list[Order], *, held: int, context: OrderGroup | None, legs: dict[int, list[Order]]
) -> OrderGroup | None:
    """A bracket whose entry has not filled before: nothing, cancel, activate, or merge."""
    entry = _entry_of(own)
    waiting = [leg for leg in own if leg.role in PROTECTIVE_ROLES and _is_live(leg)]
    if entry.filled_quantity == 0:
        if entry.status in ENDED_UNFILLED:
            _end(group, OrderGroupStatus.CANCELED, f"The entry was {entry.status}.", waiting)
        return context
    same_side = held != 0 and (held > 0) == (entry.side == OrderSide.BUY)
    if not same_side:
        if not _is_live(entry):
            _end(group, OrderGroupStatus.DONE, "The entry's position was closed before its bracket began.", waiting)
        return context
    prices = _resolved_levels(group, entry)
    if context is None:
        for leg in waiting:
            price = prices[leg.role]
            if leg.role == OrderRole.STOP_LOSS:
                leg.stop_price = price
            else:
                leg.limit_price = price
        group.status = OrderGroupStatus.ACTIVE
        group.save(update_fields=["status", "updated_at"])
        return group
    # A scale-in: this bracket joins the position's context; the context's legs move to its levels.
    _end(group, OrderGroupStatus.DONE, f"Merged into the position's bracket {context.pk}.", waiting)
    group.merged_into = context
    group.save(update_fields=["merged_into", "updated_at"])
    for leg in legs[context.pk]:
        price = prices.get(leg.role)
        if price is None or not _is_live(leg):
            continue
        field = "stop_price" if leg.role == OrderRole.STOP_LOSS else "limit_price"
        if getattr(leg, field) != price:
            _change_leg(leg, **{field: price}, why=f"Moved to the levels of the scale-in {entry.client_order_id}.")
    return context


def _sync_context(context: OrderGroup, legs: list[Order], *, held: int) -> None:
    """The position's bracket: end it when flat (or reversed), else size every leg to the position."""
    live = [leg for leg in legs if leg.role in PROTECTIVE_ROLES and _is_live(leg)]
    if held == 0 or (held > 0) != (context.side == "long"):
        _end(context, OrderGroupStatus.DONE, "The position is flat: its protection is no longer needed.", live)
        return
    ended_by_cancel = [
        leg
        for leg in legs
        if leg.role in PROTECTIVE_ROLES and leg.status in ENDED_UNFILLED and leg.filled_quantity == 0
    ]
    if ended_by_cancel:
        leg = ended_by_cancel[0]
        _end(context, OrderGroupStatus.DONE, f"Its {leg.get_role_display().lower()} was {leg.status}.", live)
        logger.warning("Bracket %s on %s ended: %s leg %s", context.pk, context.account_id, leg.role, leg.status)
        return
    wanted = abs(held)
    for role in PROTECTIVE_ROLES:
        if not any(leg.role == role for leg in live) and _filled_out(legs, role):
            live.append(_replace_filled_leg(context, legs, role, quantity=wanted))
    for leg in live:
        if leg.status == OrderStatus.HELD:
            _release(leg, quantity=wanted)
        elif leg.remaining_quantity != wanted:
            _change_leg(leg, quantity=leg.filled_quantity + wanted, why=f"Sized to the position of {wanted}.")


def _filled_out(legs: list[Order], role: str) -> bool:
    last = [leg for leg in legs if leg.role == role]
    return bool(last) and last[-1].status == OrderStatus.FILLED


def _replace_filled_leg(context: OrderGroup, legs: list[Order], role: str, *, quantity: int) -> Order:
    """A leg filled in full while the position is still open (it grew meanwhile): the rest of
    the position gets a new leg at the same price, so it is never left without its stop."""
    last = [leg for leg in legs if leg.role == role][-1]
    return _held_leg(
        context,
        role=role,
        side=last.side,
        quantity=quantity,
        price=last.stop_price if role == OrderRole.STOP_LOSS else last.limit_price,
        client_order_id=services.client_order_id_for(scope=last.client_order_id, key="again"),
        time_in_force=last.time_in_force,
        source=last.source,
        created_by=last.created_by,
        detail=f"Replaces {last.client_order_id}.",
    )


def _release(leg: Order, *, quantity: int) -> None:
    """A held leg goes out: committed NEW (with its size and price) before the send."""
    leg.quantity = quantity
    move_order(leg, OrderStatus.NEW, OrderEventType.RELEASED, detail=f"Entry filled: {leg.side} {quantity}.")
    tasks.send_orders_to_broker_task.delay_on_commit([leg.pk])


def _change_leg(leg: Order, *, why: str, **terms: object) -> None:
    """Resize or move a leg; the broker's answer (or its refusal) comes back as a report."""
    if leg.pending_change or leg.status == OrderStatus.SUBMITTED:
        return  # settled by the answer in flight: that report runs this sync again
    if leg.status in (OrderStatus.HELD, OrderStatus.NEW):
        for field, value in terms.items():
            setattr(leg, field, value)
        leg.save()
        record_event(leg, OrderEventType.MODIFIED, detail=why, payload={k: str(v) for k, v in terms.items()})
        publish_order_on_commit(leg)
        return
    try:
        services.modify_order(order=leg, change=services.OrderChange(**terms), managed=True, detail=why)  # type: ignore[arg-type]
    except DomainError as exc:
        record_event(leg, OrderEventType.MODIFY_REJECTED, detail=f"{why} Not possible: {exc.detail}")


# -- Protecting a position that is already open -------------------------------------------------


def position_context(*, account_id: int, instrument_id: int) -> OrderGroup | None:
    return OrderGroup.objects.filter(
        account_id=account_id, instrument_id=instrument_id, kind=OrderGroupKind.BRACKET, status=OrderGroupStatus.ACTIVE
    ).first()


def contexts_with_plans(*, account_id: int, instrument_ids: set[int]) -> bool:
    """Whether any of these positions' contexts carries a plan the trader sent with the bracket."""
    return (
        OrderGroup.objects.filter(
            account_id=account_id,
            instrument_id__in=instrument_ids,
            kind=OrderGroupKind.BRACKET,
            status=OrderGroupStatus.ACTIVE,
        )
        .exclude(plan={})
        .exists()
    )


def protective_leg(*, account_id: int, instrument_id: int, role: OrderRole) -> Order | None:
    """The live stop (or target) of the position's context, if it has one."""
    return (
        Order.objects.filter(
            group__account_id=account_id,
            group__instrument_id=instrument_id,
            group__kind=OrderGroupKind.BRACKET,
            group__status=OrderGroupStatus.ACTIVE,
            role=role,
            status__in=LIVE_STATUSES,
        )
        .select_related("instrument", "account")
        .order_by("-pk")
        .first()
    )


def protect_position(
    *,
    position: Position,
    stop_loss: Decimal | None = None,
    take_profit: Decimal | None = None,
    created_by: User | None = None,
    source: OrderSource = OrderSource.API,
) -> OrderGroup:
    """Give an open position a stop and/or target (a context without an entry), or move the
    ones its context has. Prices must sit on the right side of the market. `source` is who asks
    (a plan, a trader through the API)."""
    if stop_loss is None and take_profit is None:
        raise DomainError("Give a stop loss, a take profit or both.", code="empty_bracket")
    with transaction.atomic():
        account = TradingAccount.objects.select_for_update().get(pk=position.account_id)
        position = Position.objects.select_related("instrument").get(pk=position.pk)
        if position.quantity == 0:
            raise DomainError(f"The {position.instrument.symbol} position is flat.", code="nothing_to_protect")
        tick = position.instrument.tick_size
        market = services.get_last_price(position.instrument.symbol)
        levels = {}
        for role, price in ((OrderRole.STOP_LOSS, stop_loss), (OrderRole.TAKE_PROFIT, take_profit)):
            if price is None:
                continue
            price = services.validate_price(price, tick_size=tick, field=role)
            services.check_protective_price(position_quantity=position.quantity, role=role, price=price, market=market)
            levels[role] = price
        context = position_context(account_id=account.pk, instrument_id=position.instrument_id)
        if context is None:
            context = OrderGroup.objects.create(
                account=account,
                instrument=position.instrument,
                kind=OrderGroupKind.BRACKET,
                status=OrderGroupStatus.ACTIVE,
                side=position.side,
                native_oco=links_natively(account),
                created_by=created_by if created_by is not None and created_by.is_authenticated else None,
                detail="Protection added to an open position.",
            )
        for role, price in levels.items():
            leg = protective_leg(account_id=account.pk, instrument_id=position.instrument_id, role=role)
            field = "stop_price" if role == OrderRole.STOP_LOSS else "limit_price"
            if leg is not None:
                if getattr(leg, field) != price:
                    services.modify_order(
                        order=leg, change=services.OrderChange(**{field: price}), actor=created_by, managed=True
                    )
                continue
            _held_leg(
                context,
                role=role,
                side=OrderSide.SELL if position.quantity > 0 else OrderSide.BUY,
                quantity=abs(position.quantity),
                price=price,
                client_order_id=services.new_client_order_id(),
                time_in_force="gtc",
                source=source,
                created_by=created_by,
            )
        sync_groups(account=account, instrument_ids={position.instrument_id})
    return context
