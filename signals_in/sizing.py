"""How many contracts a signal means for one subscription, and how far its stop is (pure).

Rounding is always down: a subscription never trades more than its sizing asks for (with risk
sizing, rounding up would risk more than the amount). A result of 0 means "too small to trade"
and the account is skipped (`size_zero`); it is never bumped up to 1, except by confidence
scaling, which (as the prediction feed promises) only scales a quantity of 1 or more down to at
least 1.
"""

from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from config.errors import DomainError
from orders.domain import Level

FIXED, MULTIPLIER, RISK = "fixed", "multiplier", "risk"


class InvalidSizing(DomainError):
    code = "invalid_sizing"


@dataclass(frozen=True)
class SizingRule:
    """A subscription's sizing, as plain values (signals_in.models.Subscription)."""

    mode: str = FIXED
    fixed_quantity: int = 1
    multiplier: Decimal = Decimal(1)
    risk_amount: Decimal | None = None
    max_quantity: int | None = None


@dataclass(frozen=True)
class Sized:
    quantity: int
    code: str = ""  # why it is 0 (size_zero, no_stop, ...); blank when quantity >= 1
    detail: str = ""


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def base_quantity(
    rule: SizingRule, *, signal_quantity: Decimal | None, stop_distance: Decimal | None, point_value: Decimal
) -> Sized:
    """The quantity before caps and confidence. `stop_distance` is in points (price units)."""
    if rule.mode == FIXED:
        return Sized(max(rule.fixed_quantity, 0))
    if rule.mode == MULTIPLIER:
        # A signal without a quantity counts as one contract.
        asked = signal_quantity if signal_quantity is not None and signal_quantity > 0 else Decimal(1)
        return Sized(_floor(asked * rule.multiplier))
    if rule.mode == RISK:
        if rule.risk_amount is None or rule.risk_amount <= 0:
            return Sized(0, "no_risk_amount", "Risk sizing needs a risk amount on the subscription.")
        if stop_distance is None or stop_distance <= 0:
            return Sized(0, "no_stop", "Risk sizing needs the signal's stop loss; the signal has none.")
        return Sized(_floor(rule.risk_amount / (stop_distance * point_value)))
    raise InvalidSizing(f"Unknown sizing mode {rule.mode!r}.")


def size_entry(
    rule: SizingRule,
    *,
    signal_quantity: Decimal | None,
    stop_distance: Decimal | None,
    point_value: Decimal,
    confidence: Decimal | None = None,
) -> Sized:
    """Contracts to open for one subscription: 0 <= quantity <= max_quantity (when set)."""
    sized = base_quantity(rule, signal_quantity=signal_quantity, stop_distance=stop_distance, point_value=point_value)
    quantity = max(sized.quantity, 0)
    if confidence is not None and quantity >= 1:
        scale = min(max(confidence, Decimal(0)), Decimal(1))
        quantity = max(_floor(quantity * scale), 1)
    if rule.max_quantity is not None:
        quantity = min(quantity, rule.max_quantity)
    if quantity >= 1:
        return Sized(quantity)
    if sized.code:
        return Sized(0, sized.code, sized.detail)
    return Sized(0, "size_zero", f"Sizing ({rule.mode}) gives less than one contract.")


def size_exit(rule: SizingRule, *, signal_quantity: Decimal) -> int:
    """Contracts a partial exit of `signal_quantity` (the signal's own contracts) takes off this
    account: scaled by the multiplier in multiplier mode (at least 1), as sent otherwise. The
    caller caps it at the position."""
    if rule.mode == MULTIPLIER:
        return max(_floor(signal_quantity * rule.multiplier), 1)
    return max(_floor(signal_quantity), 1)


# -- Stop distance and bracket levels ------------------------------------------------------------


def positive_decimal(value: Any, *, field: str) -> Decimal:
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        number = None
    if number is None or not number.is_finite() or number <= 0 or isinstance(value, bool):
        raise InvalidSizing(f"{field} must be a positive number (got {value!r}).", code="invalid_bracket", field=field)
    return number


def parse_level(spec: Any, *, tick_size: Decimal, field: str) -> Level | None:
    """{"price": "..."}, {"ticks": n} or {"amount": "<points>"} (rounded to the nearest whole
    tick, at least 1) as a level; None for an absent level."""
    if spec is None or spec == {}:
        return None
    if not isinstance(spec, dict):
        raise InvalidSizing(
            f'{field} must be {{"price": ...}}, {{"ticks": n}} or {{"amount": points}}.',
            code="invalid_bracket",
            field=field,
        )
    if "price" in spec:
        return Level(price=positive_decimal(spec["price"], field=field))
    if "ticks" in spec:
        ticks = positive_decimal(spec["ticks"], field=field)
        if ticks != ticks.to_integral_value():
            raise InvalidSizing(f"{field} ticks must be a whole number.", code="invalid_bracket", field=field)
        return Level(ticks=int(ticks))
    if "amount" in spec:
        points = positive_decimal(spec["amount"], field=field)
        ticks = int((points / tick_size).to_integral_value(rounding=ROUND_HALF_UP))
        return Level(ticks=max(ticks, 1))
    raise InvalidSizing(
        f'{field} must be {{"price": ...}}, {{"ticks": n}} or {{"amount": points}}.',
        code="invalid_bracket",
        field=field,
    )


def stop_distance(*, stop_loss: Level | None, reference: Decimal | None, tick_size: Decimal) -> Decimal | None:
    """Points from the entry to the signal's stop loss (for risk sizing): a tick offset, or a
    stop price against the entry's reference price (limit, stop, signal or last price). None: unknown."""
    if stop_loss is not None and stop_loss.ticks is not None:
        return stop_loss.ticks * tick_size
    stop = stop_loss.price if stop_loss is not None else None
    if stop is not None and reference is not None and stop != reference:
        return abs(reference - stop)
    return None
