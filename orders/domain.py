"""Order vocabulary, the order state table, order validation and position arithmetic (pure)."""

from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Decimal

from django.db.models import TextChoices

from brokers.interface import ReportedStatus
from brokers.ticks import is_on_tick, neighbouring_ticks, normalize_price
from config.errors import ConflictError, DomainError

MONEY_QUANTUM = Decimal("0.0001")
AVG_PRICE_QUANTUM = Decimal("0.00000001")
# A fat-finger guard, not a risk limit: the risk engine owns real position limits.
MAX_ORDER_QUANTITY = 10_000


class OrderSide(TextChoices):
    BUY = "buy", "Buy"
    SELL = "sell", "Sell"


class OrderType(TextChoices):
    MARKET = "market", "Market"
    LIMIT = "limit", "Limit"
    STOP = "stop", "Stop"
    STOP_LIMIT = "stop_limit", "Stop limit"
    # A stop that follows the market at `trail_amount`: native where the broker has it, else
    # a plain stop at the broker that we move (orders.trailing).
    TRAILING_STOP = "trailing_stop", "Trailing stop"


class TimeInForce(TextChoices):
    DAY = "day", "Day"
    GTC = "gtc", "Good till cancelled"


class OrderSource(TextChoices):
    API = "api", "REST API"
    TICKET = "ticket", "Order ticket"
    CLOSE = "close", "Position close"
    FLATTEN = "flatten", "Flatten"
    RISK = "risk", "Risk enforcement"
    WEBHOOK = "webhook", "Webhook signal"
    AUTOMATION = "automation", "Automation rule"
    COPIER = "copier", "Trade copier"
    PLAN = "plan", "Position plan"
    EXTERNAL = "external", "Placed outside propdesk"


# Orders no person placed by hand: programs that forbid bots refuse these.
AUTOMATED_SOURCES = frozenset({OrderSource.WEBHOOK, OrderSource.AUTOMATION, OrderSource.COPIER})
# Orders that only take risk off, placed by us (close, flatten, enforcement).
LIQUIDATING_SOURCES = frozenset({OrderSource.CLOSE, OrderSource.FLATTEN, OrderSource.RISK, OrderSource.PLAN})


class OrderRole(TextChoices):
    """An order's part in a group (blank: a stand-alone order)."""

    ENTRY = "entry", "Entry"
    STOP_LOSS = "stop_loss", "Stop loss"
    TAKE_PROFIT = "take_profit", "Take profit"
    OCO_LEG = "oco_leg", "OCO leg"


PROTECTIVE_ROLES = frozenset({OrderRole.STOP_LOSS, OrderRole.TAKE_PROFIT})


class PositionEffect(TextChoices):
    """What an order may do to the position it trades against."""

    AUTO = "auto", "Open or reduce"  # refused if it would carry the position through flat
    REDUCE = "reduce", "Reduce only"
    REVERSE = "reverse", "Reverse"  # may go through flat to the other side


class OrderStatus(TextChoices):
    HELD = "held", "Held"  # a bracket leg stored by us until its entry fills; never sent while held
    NEW = "new", "New"  # stored, not yet claimed for sending
    DENIED = "denied", "Denied"  # refused by our own pre-trade checks, never sent
    SUBMITTED = "submitted", "Submitted"  # claimed and sent (or being sent); no broker answer yet
    ACCEPTED = "accepted", "Accepted"  # working at the broker
    REJECTED = "rejected", "Rejected"  # refused by the broker
    PARTIALLY_FILLED = "partially_filled", "Partially filled"
    FILLED = "filled", "Filled"
    PENDING_CANCEL = "pending_cancel", "Pending cancel"
    CANCELED = "canceled", "Canceled"
    EXPIRED = "expired", "Expired"


S = OrderStatus
ALLOWED_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.HELD: frozenset({S.NEW, S.CANCELED}),  # released when its entry fills, or cancelled with it
    S.NEW: frozenset({S.DENIED, S.SUBMITTED, S.CANCELED}),  # cancelled before it was ever sent
    S.SUBMITTED: frozenset(
        {S.ACCEPTED, S.REJECTED, S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.CANCELED, S.EXPIRED}
    ),  # a fill or a cancel report can overtake the acknowledgement
    S.ACCEPTED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.CANCELED, S.EXPIRED}),
    S.PARTIALLY_FILLED: frozenset({S.FILLED, S.PENDING_CANCEL, S.CANCELED, S.EXPIRED}),
    S.PENDING_CANCEL: frozenset(
        {S.CANCELED, S.FILLED, S.EXPIRED, S.ACCEPTED, S.PARTIALLY_FILLED}
    ),  # back to working when the broker refuses the cancel
    S.CANCELED: frozenset({S.FILLED}),  # real-world: a fill raced the cancel
    S.EXPIRED: frozenset({S.FILLED}),  # real-world: a fill raced the end-of-day expiry
    S.DENIED: frozenset(),
    S.REJECTED: frozenset(),
    S.FILLED: frozenset(),
}

WORKING_STATUSES = frozenset({S.SUBMITTED, S.ACCEPTED, S.PARTIALLY_FILLED, S.PENDING_CANCEL})
OPEN_STATUSES = WORKING_STATUSES | {S.NEW}  # may trade (held legs cannot until released)
LIVE_STATUSES = OPEN_STATUSES | {S.HELD}  # not done yet
CANCELABLE_STATUSES = frozenset({S.HELD, S.NEW, S.SUBMITTED, S.ACCEPTED, S.PARTIALLY_FILLED})
MODIFIABLE_STATUSES = frozenset({S.HELD, S.NEW, S.ACCEPTED, S.PARTIALLY_FILLED})


class OrderEventType(TextChoices):
    CREATED = "created", "Created"
    DENIED = "denied", "Denied by risk"
    SUBMITTED = "submitted", "Sent to broker"
    ACCEPTED = "accepted", "Accepted by broker"
    REJECTED = "rejected", "Rejected"
    FILL = "fill", "Fill"
    CANCEL_REQUESTED = "cancel_requested", "Cancel requested"
    CANCEL_REJECTED = "cancel_rejected", "Cancel refused by broker"
    CANCELED = "canceled", "Canceled"
    EXPIRED = "expired", "Expired"
    STATUS_CHANGED = "status_changed", "Status changed"
    OUTCOME_UNKNOWN = "outcome_unknown", "Broker answer unknown"
    BROKER_UNAVAILABLE = "broker_unavailable", "Broker unavailable"
    RECONCILED = "reconciled", "Reconciled with broker"
    RELEASED = "released", "Released (entry filled)"
    MODIFY_REQUESTED = "modify_requested", "Change requested"
    MODIFIED = "modified", "Changed"
    MODIFY_REJECTED = "modify_rejected", "Change refused"
    ADOPTED = "adopted", "Adopted from broker"
    VANISHED = "vanished", "Gone at the broker"


class InvalidTransition(Exception):
    def __init__(self, current: OrderStatus, target: OrderStatus) -> None:
        super().__init__(f"An order cannot go from {current} to {target}.")
        self.current = current
        self.target = target


def can_transition(current: OrderStatus, target: OrderStatus) -> bool:
    return target in ALLOWED_TRANSITIONS[current]


def check_transition(current: OrderStatus, target: OrderStatus) -> None:
    if not can_transition(current, target):
        raise InvalidTransition(current, target)


def status_for_report(current: OrderStatus, reported: ReportedStatus) -> OrderStatus | None:
    """Our status after a broker status report, or None when the report changes nothing.

    Fill progress is driven by fill reports only (so position and status never disagree):
    a report saying "filled" before its fills arrived only confirms the broker has the order.
    Reports that are older than what we know (an ack after a fill) are stale and ignored.
    """
    if reported in (ReportedStatus.WORKING, ReportedStatus.PARTIALLY_FILLED, ReportedStatus.FILLED):
        return S.ACCEPTED if current == S.SUBMITTED else None
    target = {
        ReportedStatus.CANCELED: S.CANCELED,
        ReportedStatus.REJECTED: S.REJECTED,
        ReportedStatus.EXPIRED: S.EXPIRED,
    }[reported]
    if current == target or not can_transition(current, target):
        return None
    return target


def status_after_fill(current: OrderStatus, *, filled_quantity: int, quantity: int) -> OrderStatus | None:
    """Our status after a fill brought the filled quantity to `filled_quantity`; None: unchanged."""
    if filled_quantity >= quantity:
        return S.FILLED if current != S.FILLED else None
    # A partial fill leaves a pending cancel pending, and a cancelled or expired order as it is.
    if current in (S.PENDING_CANCEL, S.CANCELED, S.EXPIRED, S.PARTIALLY_FILLED):
        return None
    return S.PARTIALLY_FILLED


# -- Order requests -----------------------------------------------------------------


class InvalidOrder(DomainError):
    code = "invalid_order"


@dataclass(frozen=True)
class OrderIntent:
    """What someone asks to trade, before it becomes an Order row."""

    symbol: str
    side: OrderSide
    quantity: int
    order_type: OrderType
    time_in_force: TimeInForce = TimeInForce.DAY
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    # Closing and flattening orders only ever take risk off: a halted account may still send them.
    is_liquidation: bool = False
    # The protective stop that will go with the order (brackets); the worst-case loss check uses it.
    stop_loss: Decimal | None = None
    is_automated: bool = False
    # Trailing stops: how far behind the market the stop follows (a price distance on the grid).
    trail_amount: Decimal | None = None
    position_effect: PositionEffect = PositionEffect.AUTO

    @property
    def signed_quantity(self) -> int:
        return self.quantity if self.side == OrderSide.BUY else -self.quantity


_PRICES_BY_TYPE: dict[OrderType, tuple[bool, bool]] = {  # (needs limit, needs stop)
    OrderType.MARKET: (False, False),
    OrderType.LIMIT: (True, False),
    OrderType.STOP: (False, True),
    OrderType.STOP_LIMIT: (True, True),
    OrderType.TRAILING_STOP: (False, False),  # its stop follows the market from where it is placed
}


def validate_quantity(quantity: int, *, field: str = "quantity") -> None:
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise InvalidOrder(
            "quantity must be a whole number of contracts, 1 or more.", code="invalid_quantity", field=field
        )
    if quantity > MAX_ORDER_QUANTITY:
        raise InvalidOrder(
            f"quantity {quantity} is above the {MAX_ORDER_QUANTITY}-contract limit for a single order.",
            code="quantity_too_large",
            field=field,
        )


def validate_order_intent(intent: OrderIntent, *, tick_size: Decimal) -> OrderIntent:
    """Check an intent against its instrument; returns it with prices written on the tick grid."""
    validate_quantity(intent.quantity)
    needs_limit, needs_stop = _PRICES_BY_TYPE[intent.order_type]
    prices = {}
    for field, needed, value in (
        ("limit_price", needs_limit, intent.limit_price),
        ("stop_price", needs_stop, intent.stop_price),
    ):
        if needed and value is None:
            raise InvalidOrder(
                f"A {intent.order_type.label.lower()} order needs a {field.replace('_', ' ')}.",
                code="price_required",
                field=field,
            )
        if not needed and value is not None:
            raise InvalidOrder(
                f"A {intent.order_type.label.lower()} order takes no {field.replace('_', ' ')}.",
                code="unexpected_price",
                field=field,
            )
        if value is not None:
            prices[field] = validate_price(value, tick_size=tick_size, field=field)
    trailing = intent.order_type == OrderType.TRAILING_STOP
    if trailing and intent.trail_amount is None:
        raise InvalidOrder("A trailing stop order needs a trail amount.", code="price_required", field="trail_amount")
    if not trailing and intent.trail_amount is not None:
        raise InvalidOrder(
            "Only trailing stop orders take a trail amount.", code="unexpected_price", field="trail_amount"
        )
    if intent.trail_amount is not None:
        prices["trail_amount"] = validate_price(intent.trail_amount, tick_size=tick_size, field="trail_amount")
    return replace(
        intent,
        limit_price=prices.get("limit_price"),
        stop_price=prices.get("stop_price"),
        trail_amount=prices.get("trail_amount"),
    )


def validate_price(price: Decimal, *, tick_size: Decimal, field: str) -> Decimal:
    if not price.is_finite() or price <= 0:
        raise InvalidOrder(f"{field} must be a positive number.", code="invalid_price", field=field)
    if price >= Decimal("1e11"):
        raise InvalidOrder(f"{field} {price} is too large.", code="invalid_price", field=field)
    if not is_on_tick(price, tick_size):
        lower, upper = neighbouring_ticks(price, tick_size)
        tick = format(tick_size.normalize(), "f")
        nearest = (
            f"the nearest valid prices are {normalize_price(lower, tick_size)} and {normalize_price(upper, tick_size)}"
            if lower > 0
            else f"the lowest valid price is {normalize_price(upper, tick_size)}"
        )
        raise InvalidOrder(
            f"{field} {price} is not on the {tick} tick grid; {nearest}.", code="price_off_tick", field=field
        )
    return normalize_price(price, tick_size)


# -- Positions and P&L -------------------------------------------------------------


@dataclass(frozen=True)
class PositionState:
    quantity: int  # signed: long > 0, short < 0
    avg_price: Decimal


FLAT = PositionState(0, Decimal(0))


def position_after_fill(
    position: PositionState, *, side: str, quantity: int, price: Decimal, point_value: Decimal
) -> tuple[PositionState, Decimal]:
    """The position after a fill and the P&L the fill realized (before fees)."""
    signed = quantity if side == OrderSide.BUY else -quantity
    held = position.quantity
    if held == 0 or (held > 0) == (signed > 0):
        new_quantity = held + signed
        avg = (position.avg_price * abs(held) + price * quantity) / abs(new_quantity)
        return PositionState(new_quantity, avg.quantize(AVG_PRICE_QUANTUM)), Decimal(0)

    closed = min(abs(held), quantity)
    direction = 1 if held > 0 else -1
    realized = ((price - position.avg_price) * closed * direction * point_value).quantize(
        MONEY_QUANTUM, rounding=ROUND_HALF_EVEN
    )
    new_quantity = held + signed
    if new_quantity == 0:
        return FLAT, realized
    if (new_quantity > 0) == (held > 0):
        return PositionState(new_quantity, position.avg_price), realized
    return PositionState(new_quantity, price), realized  # reversed through flat: the rest opens at the fill


def unrealized_pnl(*, quantity: int, avg_price: Decimal, last_price: Decimal, point_value: Decimal) -> Decimal:
    return ((last_price - avg_price) * quantity * point_value).quantize(MONEY_QUANTUM, rounding=ROUND_HALF_EVEN)


def average_fill_price(*, filled_before: int, avg_before: Decimal | None, quantity: int, price: Decimal) -> Decimal:
    total = (avg_before or Decimal(0)) * filled_before + price * quantity
    return (total / (filled_before + quantity)).quantize(AVG_PRICE_QUANTUM)


# -- Brackets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    """A stop-loss or take-profit level as asked: an absolute price, or whole ticks from the entry."""

    price: Decimal | None = None
    ticks: int | None = None

    def __post_init__(self) -> None:
        assert (self.price is None) != (self.ticks is None), "a level is a price or a tick offset"


@dataclass(frozen=True)
class BracketSpec:
    stop_loss: Level | None = None
    take_profit: Level | None = None


def validate_level(level: Level, *, tick_size: Decimal, field: str) -> Level:
    if level.ticks is not None:
        if isinstance(level.ticks, bool) or not isinstance(level.ticks, int) or not 1 <= level.ticks <= 100_000:
            raise InvalidOrder(
                f"{field} ticks must be a whole number from 1 to 100000.", code="invalid_ticks", field=field
            )
        return level
    assert level.price is not None
    return Level(price=validate_price(level.price, tick_size=tick_size, field=field))


def exit_side(entry_side: str) -> OrderSide:
    return OrderSide.SELL if entry_side == OrderSide.BUY else OrderSide.BUY


def level_price(level: Level, *, entry_side: str, anchor: Decimal, tick_size: Decimal, is_stop: bool) -> Decimal:
    """A level as a price on the grid.

    Tick offsets count from `anchor` (the entry's average fill price once it has filled, its
    limit/stop price or the last price before): stops below a long entry and targets above,
    the reverse for a short. An anchor between ticks (an average of several fills) is first
    rounded to the grid towards the level (down for a level below it), so each leg sits at least
    the asked number of ticks from the average fill, and less than one tick more: never a tighter
    stop or a nearer target than asked.
    """
    if level.price is not None:
        return level.price
    assert level.ticks is not None
    below = (entry_side == OrderSide.BUY) == is_stop
    lower, upper = neighbouring_ticks(anchor, tick_size)
    base = lower if below else upper
    offset = tick_size * level.ticks
    price = base - offset if below else base + offset
    if price <= 0:
        name = "stop loss" if is_stop else "take profit"
        raise InvalidOrder(
            f"A {name} {level.ticks} ticks from {normalize_price(anchor, tick_size)} would be at or below zero.",
            code="invalid_price",
            field="stop_loss" if is_stop else "take_profit",
        )
    return normalize_price(price, tick_size)


def check_bracket_sides(
    *, entry_side: str, reference: Decimal | None, stop_loss: Decimal | None, take_profit: Decimal | None
) -> None:
    """Long: stop below the entry, target above it; short: the reverse. Refused with a sentence."""
    long = entry_side == OrderSide.BUY
    word = "buy" if long else "sell"
    if stop_loss is not None and take_profit is not None and (stop_loss >= take_profit) == long:
        raise InvalidOrder(
            f"A {word} bracket's stop loss ({stop_loss}) must be {'below' if long else 'above'} "
            f"its take profit ({take_profit}).",
            code="bracket_wrong_side",
            field="stop_loss",
        )
    if reference is None:
        return
    if stop_loss is not None and (stop_loss >= reference) == long:
        raise InvalidOrder(
            f"A {word} bracket's stop loss ({stop_loss}) must be {'below' if long else 'above'} the entry "
            f"({reference}): it would trigger at once.",
            code="bracket_wrong_side",
            field="stop_loss",
        )
    if take_profit is not None and (take_profit <= reference) == long:
        raise InvalidOrder(
            f"A {word} bracket's take profit ({take_profit}) must be {'above' if long else 'below'} the entry "
            f"({reference}).",
            code="bracket_wrong_side",
            field="take_profit",
        )


def check_protective_price(*, position_quantity: int, role: str, price: Decimal, market: Decimal | None) -> None:
    """A protective leg moved by hand or by a plan must stay on its side of the market."""
    if market is None or position_quantity == 0:
        return
    long = position_quantity > 0
    stop_side_ok = price < market if long else price > market
    target_side_ok = price > market if long else price < market
    if role == OrderRole.STOP_LOSS and not stop_side_ok:
        raise InvalidOrder(
            f"A {'long' if long else 'short'} position's stop ({price}) must be {'below' if long else 'above'} "
            f"the market ({market}).",
            code="bracket_wrong_side",
            field="stop_price",
        )
    if role == OrderRole.TAKE_PROFIT and not target_side_ok:
        raise InvalidOrder(
            f"A {'long' if long else 'short'} position's target ({price}) must be {'above' if long else 'below'} "
            f"the market ({market}).",
            code="bracket_wrong_side",
            field="limit_price",
        )


# -- Position context: sides and protection sizes ------------------------------------------


class SideConflict(ConflictError):
    code = "position_side_conflict"


def check_position_effect(
    *, held: int, opposite_working: int, signed_quantity: int, effect: PositionEffect, symbol: str
) -> None:
    """Orders never mix sides inside a position's context.

    `held` is the signed position; `opposite_working` the unfilled quantity of orders already
    working against it (not its protective legs). An order against the position may take it
    to flat; past flat only as an explicit reverse. A reduce-only order must reduce.
    """
    against = held != 0 and (held > 0) != (signed_quantity > 0)
    if effect == PositionEffect.REDUCE:
        if not against:
            raise SideConflict(
                f"A reduce-only order must trade against the {symbol} position, and it is "
                + ("flat." if held == 0 else f"{'long' if held > 0 else 'short'} {abs(held)}."),
                field="position_effect",
            )
        if abs(signed_quantity) + opposite_working > abs(held):
            raise SideConflict(
                f"Reduce-only: {abs(signed_quantity)} with {opposite_working} already working would take the "
                f"{symbol} position of {abs(held)} past flat.",
                field="quantity",
            )
        return
    if effect == PositionEffect.REVERSE:
        if not against:
            raise SideConflict(
                f"A reverse order must trade against the {symbol} position, and it is "
                + ("flat." if held == 0 else f"{'long' if held > 0 else 'short'} {abs(held)}."),
                field="position_effect",
            )
        return
    if against and abs(signed_quantity) + opposite_working > abs(held):
        side = "long" if held > 0 else "short"
        other = "short" if held > 0 else "long"
        raise SideConflict(
            f"The {symbol} position is {side} {abs(held)}"
            + (f" with {opposite_working} already working against it" if opposite_working else "")
            + f"; this order would add {other} exposure. Send it as a reverse, or at most "
            f"{max(abs(held) - opposite_working, 0)} to reduce.",
            field="quantity",
        )
