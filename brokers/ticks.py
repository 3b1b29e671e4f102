"""Tick-grid arithmetic for prices (pure): every price we send or store sits on the instrument's grid."""

from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal


def is_on_tick(price: Decimal, tick_size: Decimal) -> bool:
    steps = price / tick_size
    return steps == steps.to_integral_value()


def neighbouring_ticks(price: Decimal, tick_size: Decimal) -> tuple[Decimal, Decimal]:
    """The valid prices just below and just above `price` (both equal to it when it is on the grid)."""
    lower = (price / tick_size).to_integral_value(rounding=ROUND_FLOOR) * tick_size
    if lower == price:
        return price, price
    return lower, lower + tick_size


def round_to_tick(price: Decimal, tick_size: Decimal, rounding: str = ROUND_HALF_UP) -> Decimal:
    return (price / tick_size).to_integral_value(rounding=rounding) * tick_size


def normalize_price(price: Decimal, tick_size: Decimal) -> Decimal:
    """Same value written with the tick's number of decimals (5000.5 -> 5000.50 for a 0.25 tick)."""
    exponent = min(int(tick_size.normalize().as_tuple().exponent), 0)
    return price.quantize(Decimal(1).scaleb(exponent))


def display_price(price: Decimal, tick_size: Decimal) -> str:
    """A price as text: with the tick's decimals when on the grid, else as precise as it is
    (averages of several fills can sit between ticks)."""
    if is_on_tick(price, tick_size):
        return format(normalize_price(price, tick_size), "f")
    return format(price.normalize(), "f")
