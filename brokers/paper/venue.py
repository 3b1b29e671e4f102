"""The paper venue's API: what a broker's servers would do, kept in the venue's own tables.

Every function answers in the venue's wire format (JSON-ready dicts, prices as strings) and
pushes what happened (order updates, fills) to the account's stream after its transaction
commits, as a broker's user stream would. Only the paper adapter calls these functions.
"""

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from brokers.paper.matching import WorkingOrder, execution_at, fill_quantities
from brokers.paper.models import (
    VenueAccount,
    VenueContract,
    VenueFill,
    VenueOrder,
    VenueOrderStatus,
    VenuePosition,
)
from brokers.ticks import is_on_tick
from config.redis_client import get_redis, key
from orders.domain import PositionState, average_fill_price, position_after_fill

Wire = dict[str, Any]
ORDER_TYPES = ("market", "limit", "stop", "stop_limit", "trailing_stop")


class VenueError(Exception):
    """The venue refused a request that changed nothing (unknown account or order, not working)."""


# -- Wire format ------------------------------------------------------------------


def _money(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def order_wire(order: VenueOrder) -> Wire:
    return {
        "type": "order",
        "accountId": order.account.ref,
        "orderId": str(order.pk),
        "clientOrderId": order.client_order_id,
        "symbol": order.symbol,
        "side": order.side,
        "quantity": order.quantity,
        "orderType": order.order_type,
        "timeInForce": order.time_in_force,
        "limitPrice": _money(order.limit_price),
        "stopPrice": _money(order.stop_price),
        "trailAmount": _money(order.trail_amount),
        "ocoGroup": order.oco_group or None,
        "status": order.status,
        "filledQuantity": order.filled_quantity,
        "avgFillPrice": _money(order.avg_fill_price),
        "reason": order.reason,
        "timestamp": order.updated_at.isoformat(),
    }


def fill_wire(fill: VenueFill) -> Wire:
    return {
        "type": "fill",
        "accountId": fill.account.ref,
        "fillId": fill.fill_id,
        "orderId": str(fill.order_id),
        "clientOrderId": fill.order.client_order_id,
        "symbol": fill.symbol,
        "side": fill.side,
        "quantity": fill.quantity,
        "price": _money(fill.price),
        "fee": _money(fill.fee),
        "timestamp": fill.executed_at.isoformat(),
    }


# -- Push stream and market prices ------------------------------------------------------


@cache
def _push_target() -> Callable[[str, list[Wire]], None]:
    return import_string(settings.PAPER_VENUE_PUSH)


def _push_on_commit(stream_key: str, events: list[Wire]) -> None:
    """After commit, push the events to the stream (one batch per stream, as a broker's user
    stream sends what happened in one request together)."""
    if events:

        def push() -> None:
            if not take_fault("lose_events"):
                _push_target()(stream_key, events)

        transaction.on_commit(push)


def _prices_key() -> str:
    return key("paper", "prices")


def market_price(symbol: str) -> Decimal | None:
    value = get_redis().hget(_prices_key(), symbol)
    return Decimal(value) if value is not None else None


def market_prices(symbols: list[str]) -> list[Decimal | None]:
    """Each symbol's market price, in one read."""
    if not symbols:
        return []
    return [Decimal(v) if v is not None else None for v in get_redis().hmget(_prices_key(), symbols)]


# -- Test and demo controls: faults the venue (or the network to it) can be told to produce ----

# unavailable: the request never reaches the venue; lose_response: the venue acts but its answer
# is lost; lose_events: one batch of pushed events is lost; reject_next_order: the venue says no.
FAULTS = ("lose_response", "unavailable", "lose_events", "reject_next_order")


def inject_fault(name: str, times: int = 1) -> None:
    if name not in FAULTS:
        raise VenueError(f"Unknown fault {name!r}; choose from {', '.join(FAULTS)}.")
    get_redis().hset(key("paper", "faults"), name, times)


# Decrement-if-positive in one round trip: fault checks sit on every order's path.
_TAKE_FAULT = """
local left = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if left > 0 then redis.call('HINCRBY', KEYS[1], ARGV[1], -1) return 1 end
return 0
"""


@cache
def _take_fault_script():  # type: ignore[no-untyped-def]
    return get_redis().register_script(_TAKE_FAULT)


def fault_pending(name: str) -> bool:
    """Whether a fault of this kind waits (one read; a batch checks once, not per order)."""
    return int(get_redis().hget(key("paper", "faults"), name) or 0) > 0


def take_fault(name: str) -> bool:
    """Consume one pending fault of this kind; True when there was one."""
    return bool(_take_fault_script()(keys=[key("paper", "faults")], args=[name]))


def clear_faults() -> None:
    get_redis().delete(key("paper", "faults"))


# Drift: the venue's books change and nothing is pushed, as when a broker purges an order or a
# position was opened before the account was connected to propdesk. Reconciliation must find these.


def drop_order(*, account_ref: str, client_order_id: str) -> None:
    """Forget a working, unfilled order without a word: no longer listed, unknown by client id."""
    with transaction.atomic():
        account = _locked_account(account_ref)
        order = _working_order(account, client_order_id)
        if order.filled_quantity:
            raise VenueError(f"Order {client_order_id} has fills; only an unfilled order can be dropped.")
        order.delete()


def open_position_directly(*, account_ref: str, symbol: str, quantity: int, avg_price: Decimal) -> None:
    """Set a position (signed quantity) with no order or fill behind it that propdesk could see."""
    with transaction.atomic():
        account = _locked_account(account_ref)
        VenuePosition.objects.update_or_create(
            account=account, symbol=symbol, defaults={"quantity": quantity, "avg_price": avg_price}
        )


# -- Accounts and contracts --------------------------------------------------------------


def open_account(*, ref: str, stream_key: str, cash: Decimal) -> VenueAccount:
    account, created = VenueAccount.objects.get_or_create(ref=ref, defaults={"stream_key": stream_key, "cash": cash})
    if not created and account.stream_key != stream_key:
        account.stream_key = stream_key
        account.save(update_fields=["stream_key"])
    return account


def list_contract(
    *, symbol: str, tick_size: Decimal, tick_value: Decimal, start_price: Decimal, fee_per_contract: Decimal
) -> VenueContract:
    contract, _ = VenueContract.objects.update_or_create(
        symbol=symbol,
        defaults={
            "tick_size": tick_size,
            "tick_value": tick_value,
            "start_price": start_price,
            "fee_per_contract": fee_per_contract,
            "is_listed": True,
        },
    )
    return contract


def list_contracts(rows: Iterable[dict[str, Any]]) -> list[VenueContract]:
    """List the rows of an instrument data file that carry a `paper` section (start price, fee)."""
    return [
        list_contract(
            symbol=row["symbol"],
            tick_size=Decimal(str(row["tick_size"])),
            tick_value=Decimal(str(row["tick_value"])),
            start_price=Decimal(str(row["paper"]["start_price"])),
            fee_per_contract=Decimal(str(row["paper"].get("fee_per_contract", "0"))),
        )
        for row in rows
        if row.get("paper")
    ]


def _locked_account(ref: str) -> VenueAccount:
    account = VenueAccount.objects.select_for_update().filter(ref=ref).first()
    if account is None:
        raise VenueError(f"Unknown account {ref!r}.")
    return account


# -- Trading --------------------------------------------------------------------------------


def _refusal(
    *,
    contract: VenueContract | None,
    symbol: str,
    side: str,
    quantity: int,
    order_type: str,
    limit_price: Decimal | None,
    stop_price: Decimal | None,
    trail_amount: Decimal | None,
    market: Decimal | None,
    rejects_pending: bool,
) -> str:
    if contract is None:
        return f"{symbol} is not listed on this venue."
    if side not in ("buy", "sell"):
        return f"Unknown side {side!r}."
    if order_type not in ORDER_TYPES:
        return f"Unknown order type {order_type!r}."
    if quantity < 1:
        return "Quantity must be at least 1."
    if order_type in ("limit", "stop_limit") and limit_price is None:
        return "Limit price required."
    if order_type in ("stop", "stop_limit") and stop_price is None:
        return "Stop price required."
    if order_type == "trailing_stop" and (trail_amount is None or trail_amount <= 0):
        return "Trail amount required."
    if order_type == "trailing_stop" and market is None:
        return f"No market in {symbol} to trail from."
    for price in (limit_price, stop_price, trail_amount):
        if price is not None and (price <= 0 or not is_on_tick(price, contract.tick_size)):
            return f"Price {price} is not a valid price for {symbol}."
    if order_type == "market" and market is None:
        return f"No market in {symbol} right now."
    if rejects_pending and take_fault("reject_next_order"):
        return "Rejected by the venue (simulated rejection)."
    return ""


def place_order(
    *,
    account_ref: str,
    client_order_id: str | None,
    symbol: str,
    side: str,
    quantity: int,
    order_type: str,
    time_in_force: str = "day",
    limit_price: Decimal | None = None,
    stop_price: Decimal | None = None,
    trail_amount: Decimal | None = None,
    oco_group: str | None = None,
) -> Wire:
    """Place an order. Orders sharing an `oco_group` are one-cancels-other: a fill of one
    reduces the others by as much (a full fill or a cancel cancels them). A trailing stop
    starts `trail_amount` behind the market and follows it."""
    (answer,) = place_orders(
        [
            {
                "account_ref": account_ref,
                "client_order_id": client_order_id,
                "symbol": symbol,
                "side": side,
                "quantity": quantity,
                "order_type": order_type,
                "time_in_force": time_in_force,
                "limit_price": limit_price,
                "stop_price": stop_price,
                "trail_amount": trail_amount,
                "oco_group": oco_group,
            }
        ]
    )
    if isinstance(answer, VenueError):
        raise answer
    return answer


def place_orders(tickets: Sequence[Wire]) -> list[Wire | VenueError]:
    """Place several orders in one request (each ticket holds place_order's arguments), as a
    broker's batch endpoint does: all are taken in at once, then each trades as far as the
    market allows. One answer per ticket, in order: the order as placed (a refused order is
    answered with its REJECTED status and reason, as one placed alone), or the VenueError for an
    unknown account. The venue keeps one order per client id: a repeat gets the original back.
    """
    answers: list[Wire | VenueError | None] = [None] * len(tickets)
    with transaction.atomic():
        refs = {t["account_ref"] for t in tickets}
        # Locked in one order, so two batches on the same accounts cannot deadlock.
        accounts = {a.ref: a for a in VenueAccount.objects.select_for_update().filter(ref__in=refs).order_by("pk")}
        client_ids = {t["client_order_id"] for t in tickets if t.get("client_order_id")}
        known = (
            {
                (o.account.ref, o.client_order_id): o
                for o in VenueOrder.objects.filter(
                    account__in=list(accounts.values()), client_order_id__in=client_ids
                ).select_related("account")
            }
            if client_ids
            else {}
        )
        contracts = {
            c.symbol: c for c in VenueContract.objects.filter(symbol__in={t["symbol"] for t in tickets}, is_listed=True)
        }
        symbols = sorted({t["symbol"] for t in tickets})
        markets = dict(zip(symbols, market_prices(symbols), strict=True))
        rejects_pending = fault_pending("reject_next_order")
        placed: list[tuple[int, VenueOrder]] = []
        repeats: list[tuple[int, VenueOrder]] = []
        for index, ticket in enumerate(tickets):
            account = accounts.get(ticket["account_ref"])
            if account is None:
                answers[index] = VenueError(f"Unknown account {ticket['account_ref']!r}.")
                continue
            client_order_id = ticket.get("client_order_id") or None  # an empty id is no id
            if client_order_id and (repeat := known.get((account.ref, client_order_id))) is not None:
                repeats.append((index, repeat))  # answered once the batch has traded
                continue
            order = _new_venue_order(
                account,
                contracts.get(ticket["symbol"]),
                ticket,
                client_order_id=client_order_id,
                market=markets[ticket["symbol"]],
                rejects_pending=rejects_pending,
            )
            if client_order_id:
                known[(account.ref, client_order_id)] = order
            placed.append((index, order))
        VenueOrder.objects.bulk_create([order for _, order in placed])
        pushes: dict[str, list[Wire]] = {}
        for index, order in placed:
            events = [order_wire(order)]
            if order.status == VenueOrderStatus.WORKING:
                if (market := markets[order.symbol]) is not None:
                    contract = contracts[order.symbol]
                    _work(order, account=order.account, contract=contract, market=market, events=events, closed=set())
            pushes.setdefault(order.account.stream_key, []).extend(events)
            answers[index] = order_wire(order)
        for index, order in repeats:
            answers[index] = order_wire(order)
        for stream_key, events in pushes.items():
            _push_on_commit(stream_key, events)
    return [answer for answer in answers if answer is not None]


def _new_venue_order(
    account: VenueAccount,
    contract: VenueContract | None,
    ticket: Wire,
    *,
    client_order_id: str | None,
    market: Decimal | None,
    rejects_pending: bool,
) -> VenueOrder:
    """The order row for a ticket (not saved): WORKING, or REJECTED with the reason."""
    side, order_type, symbol = ticket["side"], ticket["order_type"], ticket["symbol"]
    stop_price, trail_amount = ticket.get("stop_price"), ticket.get("trail_amount")
    reason = _refusal(
        contract=contract,
        symbol=symbol,
        side=side,
        quantity=ticket["quantity"],
        order_type=order_type,
        limit_price=ticket.get("limit_price"),
        stop_price=stop_price,
        trail_amount=trail_amount,
        market=market,
        rejects_pending=rejects_pending,
    )
    if not reason and order_type == "trailing_stop":
        assert trail_amount is not None and market is not None
        stop_price = market - trail_amount if side == "sell" else market + trail_amount
    return VenueOrder(
        account=account,
        client_order_id=client_order_id,
        symbol=symbol,
        side=side,
        quantity=ticket["quantity"],
        order_type=order_type,
        time_in_force=ticket.get("time_in_force") or "day",
        limit_price=ticket.get("limit_price"),
        stop_price=stop_price,
        trail_amount=trail_amount,
        oco_group=ticket.get("oco_group") or "",
        status=VenueOrderStatus.REJECTED if reason else VenueOrderStatus.WORKING,
        reason=reason,
    )


def _working_order(account: VenueAccount, client_order_id: str) -> VenueOrder:
    order = account.orders.select_for_update().filter(client_order_id=client_order_id).first()
    if order is None:
        raise VenueError(f"No order with client id {client_order_id!r}.")
    if order.status != VenueOrderStatus.WORKING:
        raise VenueError(f"Order {client_order_id} is {order.status}, not working.")
    return order


def cancel_order(*, account_ref: str, client_order_id: str) -> Wire:
    with transaction.atomic():
        account = _locked_account(account_ref)
        order = _working_order(account, client_order_id)
        order.status = VenueOrderStatus.CANCELED
        order.reason = "Canceled by request."
        order.save()
        events = [order_wire(order)]
        _settle_oco(order, quantity=None, events=events, closed=set())
        _push_on_commit(account.stream_key, events)
        return order_wire(order)


def modify_order(
    *,
    account_ref: str,
    client_order_id: str,
    quantity: int | None = None,
    limit_price: Decimal | None = None,
    stop_price: Decimal | None = None,
) -> Wire:
    (answer,) = modify_orders(
        [
            {
                "account_ref": account_ref,
                "client_order_id": client_order_id,
                "quantity": quantity,
                "limit_price": limit_price,
                "stop_price": stop_price,
            }
        ]
    )
    if isinstance(answer, VenueError):
        raise answer
    return answer


def _modify_refusal(order: VenueOrder | None, contract: VenueContract | None, ticket: Wire) -> str:
    client_order_id = ticket["client_order_id"]
    if order is None:
        return f"No order with client id {client_order_id!r}."
    if order.status != VenueOrderStatus.WORKING:
        return f"Order {client_order_id} is {order.status}, not working."
    quantity, limit_price, stop_price = ticket.get("quantity"), ticket.get("limit_price"), ticket.get("stop_price")
    if quantity is not None and quantity <= order.filled_quantity:
        return f"Quantity {quantity} is not above the {order.filled_quantity} already filled."
    if limit_price is not None and order.order_type not in ("limit", "stop_limit"):
        return "Only limit and stop-limit orders have a limit price."
    if stop_price is not None and order.order_type not in ("stop", "stop_limit", "trailing_stop"):
        return "Only stop and stop-limit orders have a stop price."
    for price in (limit_price, stop_price):
        if price is not None and (price <= 0 or contract is None or not is_on_tick(price, contract.tick_size)):
            return f"Price {price} is not a valid price for {order.symbol}."
    return ""


def modify_orders(tickets: Sequence[Wire]) -> list[Wire | VenueError]:
    """Change several working orders in one request (each ticket holds modify_order's arguments),
    as a broker's batch endpoint does; then each trades as far as the market allows. One answer
    per ticket, in order: the order as changed, or the VenueError that refused that change.

    The changed order itself is in the answer, which the caller books; the stream carries only
    what trading it caused (fills, OCO partners). Pushing the order too had every stop move
    booked twice, once from the answer and once from the stream (bench/plans.py, decision 0017).
    """
    answers: list[Wire | VenueError] = []
    with transaction.atomic():
        refs = {t["account_ref"] for t in tickets}
        # Locked in one order (accounts, then their orders), as place_orders does.
        accounts = {a.ref: a for a in VenueAccount.objects.select_for_update().filter(ref__in=refs).order_by("pk")}
        by_id = {a.pk: a for a in accounts.values()}
        orders: dict[tuple[str, str], VenueOrder] = {}
        for o in (
            VenueOrder.objects.select_for_update()
            .filter(account__in=list(by_id), client_order_id__in={t["client_order_id"] for t in tickets})
            .order_by("pk")
        ):
            o.account = by_id[o.account_id]  # the locked instance: fills change its cash
            orders[(o.account.ref, o.client_order_id)] = o
        symbols = {o.symbol for o in orders.values()}
        contracts = {c.symbol: c for c in VenueContract.objects.filter(symbol__in=symbols)}
        changed: dict[int, VenueOrder] = {}
        now = timezone.now()
        for ticket in tickets:
            if ticket["account_ref"] not in accounts:
                answers.append(VenueError(f"Unknown account {ticket['account_ref']!r}."))
                continue
            order = orders.get((ticket["account_ref"], ticket["client_order_id"]))
            if reason := _modify_refusal(order, contracts.get(order.symbol) if order else None, ticket):
                answers.append(VenueError(reason))
                continue
            assert order is not None
            for field in ("quantity", "limit_price", "stop_price"):
                if ticket.get(field) is not None:
                    setattr(order, field, ticket[field])
            order.updated_at = now  # update() does not touch auto_now fields
            changed[order.pk] = order
            answers.append(order)  # type: ignore[arg-type]  # its wire once the market has worked it
        # One UPDATE per distinct set of terms (a batch of stop moves shares a few levels):
        # bulk_update's CASE per row and field cost more than the rest of the batch.
        same: dict[tuple[Any, ...], list[int]] = {}
        for order in changed.values():
            same.setdefault((order.quantity, order.limit_price, order.stop_price), []).append(order.pk)
        for (quantity, limit_price, stop_price), ids in same.items():
            VenueOrder.objects.filter(pk__in=ids).update(
                quantity=quantity, limit_price=limit_price, stop_price=stop_price, updated_at=now
            )
        markets = {s: market_price(s) for s in symbols} if changed else {}
        pushes: dict[str, list[Wire]] = {}
        for order in changed.values():
            market = markets.get(order.symbol)
            if market is None or order.status != VenueOrderStatus.WORKING:
                continue
            events: list[Wire] = []
            contract = contracts[order.symbol]
            _work(order, account=order.account, contract=contract, market=market, events=events, closed=set())
            pushes.setdefault(order.account.stream_key, []).extend(events)
        for stream_key, events in pushes.items():
            _push_on_commit(stream_key, events)
        return [answer if isinstance(answer, VenueError | dict) else order_wire(answer) for answer in answers]


def close_position(*, account_ref: str, symbol: str, quantity: int | None = None) -> Wire:
    """The venue's own "close position" button: a market order with no client id."""
    with transaction.atomic():
        account = _locked_account(account_ref)
        position = account.positions.filter(symbol=symbol).exclude(quantity=0).first()
        if position is None:
            raise VenueError(f"No open position in {symbol}.")
        held = abs(position.quantity)
        if quantity is not None and not 1 <= quantity <= held:
            raise VenueError(f"Can close between 1 and {held} contracts of {symbol}.")
    return place_order(
        account_ref=account_ref,
        client_order_id=None,
        symbol=symbol,
        side="sell" if position.quantity > 0 else "buy",
        quantity=quantity or held,
        order_type="market",
    )


def set_market_price(*, symbol: str, price: Decimal) -> None:
    """A new last price: store it and work every order in that contract against it."""
    get_redis().hset(_prices_key(), symbol, str(price))
    account_ids = (
        VenueOrder.objects.filter(symbol=symbol, status=VenueOrderStatus.WORKING)
        .values_list("account_id", flat=True)
        .distinct()
    )
    for account_id in list(account_ids):
        with transaction.atomic():
            account = VenueAccount.objects.select_for_update().get(pk=account_id)
            contract = VenueContract.objects.get(symbol=symbol)
            events: list[Wire] = []
            closed: set[int] = set()  # cancelled in this pass by an OCO partner's fill
            working = account.orders.select_for_update().filter(symbol=symbol, status=VenueOrderStatus.WORKING)
            for order in working.order_by("pk"):
                if order.pk not in closed:
                    _work(order, account=account, contract=contract, market=price, events=events, closed=closed)
            _push_on_commit(account.stream_key, events)


def expire_day_orders() -> int:
    """End of the trade date: day orders still working expire."""
    expired = 0
    account_ids = VenueOrder.objects.filter(status=VenueOrderStatus.WORKING, time_in_force="day").values_list(
        "account_id", flat=True
    )
    for account_id in set(account_ids):
        with transaction.atomic():
            account = VenueAccount.objects.select_for_update().get(pk=account_id)
            events = []
            for order in account.orders.select_for_update().filter(
                status=VenueOrderStatus.WORKING, time_in_force="day"
            ):
                order.status = VenueOrderStatus.EXPIRED
                order.reason = "Day order expired at the end of the trade date."
                order.save()
                events.append(order_wire(order))
                expired += 1
            _push_on_commit(account.stream_key, events)
    return expired


def _work(
    order: VenueOrder,
    *,
    account: VenueAccount,
    contract: VenueContract,
    market: Decimal,
    events: list[Wire],
    closed: set[int],
) -> None:
    """Trade as much of a working order as the market allows now (caller holds the account lock)."""
    if order.order_type == "trailing_stop":
        _follow(order, market=market, events=events)
    execution = execution_at(
        WorkingOrder(order.side, order.order_type, order.limit_price, order.stop_price, order.triggered),
        market=market,
        tick_size=contract.tick_size,
        slippage_ticks=contract.slippage_ticks,
    )
    if execution.triggered and not order.triggered:
        order.triggered = True
        order.save(update_fields=["triggered", "updated_at"])
    if execution.price is None:
        return
    sweeps = order.order_type in ("market", "stop", "trailing_stop")  # these take whatever is there
    quantity = order.remaining if sweeps else fill_quantities(order.remaining, contract.max_fill_size)
    _fill(order, account=account, contract=contract, quantity=quantity, price=execution.price, events=events)
    _settle_oco(order, quantity=quantity, events=events, closed=closed)


def _follow(order: VenueOrder, *, market: Decimal, events: list[Wire]) -> None:
    """A trailing stop's stop moves with the market, never back."""
    assert order.trail_amount is not None and order.stop_price is not None
    if order.side == "sell":
        stop = max(order.stop_price, market - order.trail_amount)
    else:
        stop = min(order.stop_price, market + order.trail_amount)
    if stop != order.stop_price:
        order.stop_price = stop
        order.save(update_fields=["stop_price", "updated_at"])
        events.append(order_wire(order))


def _settle_oco(order: VenueOrder, *, quantity: int | None, events: list[Wire], closed: set[int]) -> None:
    """One-cancels-other: after `quantity` of `order` filled (None: it was cancelled), its
    partners shrink by as much, and are cancelled once it is done or they have nothing left."""
    if not order.oco_group:
        return
    partners = VenueOrder.objects.select_for_update().filter(
        account_id=order.account_id, oco_group=order.oco_group, status=VenueOrderStatus.WORKING
    )
    for partner in partners.exclude(pk=order.pk).select_related("account"):
        left = partner.quantity - (quantity or 0)
        if quantity is None or order.status == VenueOrderStatus.FILLED or left <= partner.filled_quantity:
            partner.status = VenueOrderStatus.CANCELED
            partner.reason = f"OCO: order {order.pk} {'filled' if quantity else 'was cancelled'}."
            closed.add(partner.pk)
        else:
            partner.quantity = left
        partner.save()
        events.append(order_wire(partner))


def _fill(
    order: VenueOrder,
    *,
    account: VenueAccount,
    contract: VenueContract,
    quantity: int,
    price: Decimal,
    events: list[Wire],
) -> None:
    now = timezone.now()
    fee = contract.fee_per_contract * quantity
    fill = VenueFill.objects.create(
        order=order,
        account=account,
        symbol=order.symbol,
        side=order.side,
        quantity=quantity,
        price=price,
        fee=fee,
        executed_at=now,
    )
    order.avg_fill_price = average_fill_price(
        filled_before=order.filled_quantity, avg_before=order.avg_fill_price, quantity=quantity, price=price
    )
    order.filled_quantity += quantity
    if order.filled_quantity >= order.quantity:
        order.status = VenueOrderStatus.FILLED
    order.save()

    position, _ = VenuePosition.objects.select_for_update().get_or_create(account=account, symbol=order.symbol)
    state, realized = position_after_fill(
        PositionState(position.quantity, position.avg_price),
        side=order.side,
        quantity=quantity,
        price=price,
        point_value=contract.tick_value / contract.tick_size,
    )
    position.quantity, position.avg_price = state.quantity, state.avg_price
    position.save()
    account.cash += realized - fee
    account.save(update_fields=["cash"])
    events.extend([fill_wire(fill), order_wire(order)])


# -- Queries ------------------------------------------------------------------------------------


def get_order(*, account_ref: str, client_order_id: str) -> Wire | None:
    order = (
        VenueOrder.objects.select_related("account")
        .filter(account__ref=account_ref, client_order_id=client_order_id)
        .first()
    )
    return order_wire(order) if order else None


def list_orders(*, account_ref: str, working_only: bool = True) -> list[Wire]:
    orders = VenueOrder.objects.select_related("account").filter(account__ref=account_ref)
    if working_only:
        orders = orders.filter(status=VenueOrderStatus.WORKING)
    return [order_wire(o) for o in orders.order_by("pk")]


def list_fills(*, account_ref: str, since: datetime) -> list[Wire]:
    fills = VenueFill.objects.select_related("account", "order").filter(
        account__ref=account_ref, executed_at__gte=since
    )
    return [fill_wire(f) for f in fills.order_by("executed_at", "pk")]


def positions(*, account_ref: str) -> list[Wire]:
    rows = VenuePosition.objects.filter(account__ref=account_ref).exclude(quantity=0).order_by("symbol")
    return [
        {"accountId": account_ref, "symbol": p.symbol, "quantity": p.quantity, "avgPrice": _money(p.avg_price)}
        for p in rows
    ]


def balance(*, account_ref: str) -> Wire:
    account = VenueAccount.objects.filter(ref=account_ref).first()
    if account is None:
        raise VenueError(f"Unknown account {account_ref!r}.")
    return {"accountId": account_ref, "currency": "USD", "cash": _money(account.cash)}


def health() -> Wire:
    return {"ok": True, "listed": VenueContract.objects.filter(is_listed=True).count()}
