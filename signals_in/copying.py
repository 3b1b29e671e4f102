"""The copier's arithmetic (pure): a follower's desired position from its leader's, the orders
that take the follower there without ever passing through flat in one order, drift and slippage.

Quantities are signed contracts (long > 0, short < 0). Nothing here touches the database.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any, TypeVar

from config.errors import DomainError

SLIPPAGE_QUANTUM = Decimal("0.01")

Key = TypeVar("Key")


class InvalidCopierLink(DomainError):
    code = "invalid_copier_link"


# -- Symbol mapping ----------------------------------------------------------------------------


def follower_root(leader_root: str, symbol_map: Mapping[str, str]) -> str:
    """The product the follower trades for a leader product: mapped ({"ES": "MES"}) or the same."""
    return symbol_map.get(leader_root.upper(), leader_root).upper()


def follower_symbol(*, leader_symbol: str, leader_root: str, symbol_map: Mapping[str, str]) -> str:
    """The follower's contract for a leader contract: the same expiry in the mapped product
    (ESZ6 -> MESZ6). A symbol that does not start with its root maps to the mapped root alone,
    which resolves to that product's front month."""
    root = follower_root(leader_root, symbol_map)
    if leader_symbol.upper().startswith(leader_root.upper()):
        return root + leader_symbol[len(leader_root) :].upper()
    return root


def validate_symbol_map(value: Any) -> dict[str, str]:
    """A symbol map as staff type it: an object of product roots to product roots, upper-cased."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise InvalidCopierLink(
            'The symbol map must be an object of product roots, e.g. {"ES": "MES"}.', code="invalid_symbol_map"
        )
    cleaned: dict[str, str] = {}
    for leader, follower in value.items():
        if not isinstance(follower, str) or not leader.strip() or not follower.strip():
            raise InvalidCopierLink(
                f"The symbol map entry {leader!r}: {follower!r} must map a product root to a product root, "
                'e.g. "ES": "MES".',
                code="invalid_symbol_map",
            )
        if not (leader.strip().isalnum() and follower.strip().isalnum()):
            raise InvalidCopierLink(
                f"The symbol map entry {leader!r}: {follower!r} is not a pair of product roots (letters and digits "
                "only, such as ES or MES).",
                code="invalid_symbol_map",
            )
        cleaned[leader.strip().upper()] = follower.strip().upper()
    return cleaned


# -- Desired state -----------------------------------------------------------------------------


def scaled_quantity(leader_quantity: int | Decimal, *, ratio: Decimal) -> Decimal:
    return Decimal(leader_quantity) * ratio


def capped(quantity: Decimal, *, max_quantity: int | None) -> int:
    """Rounded toward zero (a follower never holds more than its share), then capped by size."""
    whole = int(quantity.to_integral_value(rounding=ROUND_DOWN))
    if max_quantity is not None and abs(whole) > max_quantity:
        return max_quantity if whole > 0 else -max_quantity
    return whole


def desired_quantity(leader_quantity: int, *, ratio: Decimal, max_quantity: int | None) -> int:
    """The follower's signed position for a leader's signed position in one product."""
    return capped(scaled_quantity(leader_quantity, ratio=ratio), max_quantity=max_quantity)


def desired_positions(
    leader_positions: Iterable[tuple[Key, int]], *, ratio: Decimal, max_quantity: int | None
) -> dict[Key, int]:
    """Desired follower positions by follower instrument, from (follower instrument, leader
    quantity) pairs. Several leader products mapped onto one follower product add up before
    rounding; an instrument the leader is flat in is wanted flat."""
    totals: dict[Key, Decimal] = {}
    for key, quantity in leader_positions:
        totals[key] = totals.get(key, Decimal(0)) + scaled_quantity(quantity, ratio=ratio)
    return {key: capped(total, max_quantity=max_quantity) for key, total in totals.items()}


# -- Orders toward the desired state -----------------------------------------------------------


@dataclass(frozen=True)
class Leg:
    side: str  # "buy" or "sell"
    quantity: int  # > 0
    reduces: bool  # takes off (part of) the position, never past flat

    @property
    def signed_quantity(self) -> int:
        return self.quantity if self.side == "buy" else -self.quantity


def legs_toward(*, actual: int, desired: int) -> list[Leg]:
    """The orders that take `actual` to `desired`: none, one (open, add or reduce), or a close
    to flat then an open on the other side. No leg ever crosses flat."""
    delta = desired - actual
    if delta == 0:
        return []
    side = "buy" if delta > 0 else "sell"
    if actual == 0 or (actual > 0) == (delta > 0):
        return [Leg(side, abs(delta), reduces=False)]
    if abs(delta) <= abs(actual):
        return [Leg(side, abs(delta), reduces=True)]
    return [Leg(side, abs(actual), reduces=True), Leg(side, abs(desired), reduces=False)]


def drifted(*, desired: int, actual: int, tolerance: int) -> bool:
    return abs(desired - actual) > tolerance


# -- Slippage ----------------------------------------------------------------------------------


def slippage_ticks(*, side: str, leader_price: Decimal, follower_price: Decimal, tick_size: Decimal) -> Decimal:
    """The follower's fill against the leader's, in ticks: positive when the follower did worse
    (bought higher or sold lower), negative when better."""
    difference = follower_price - leader_price if side == "buy" else leader_price - follower_price
    return (difference / tick_size).quantize(SLIPPAGE_QUANTUM, rounding=ROUND_HALF_EVEN)
