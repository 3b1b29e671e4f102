"""A random walk on the tick grid (pure), pulled gently back towards where it started so a
demo left running for days keeps realistic prices."""

import random
from decimal import Decimal

# Chance of a one-tick move per step; otherwise the price stays.
MOVE_PROBABILITY = 0.7
# How strongly the walk leans back to its anchor, per 1% of drift.
REVERSION_PER_PERCENT = 0.05


def next_price(price: Decimal, *, tick_size: Decimal, anchor: Decimal, rng: random.Random) -> Decimal:
    if rng.random() > MOVE_PROBABILITY:
        return price
    drift_percent = float((price - anchor) / anchor * 100)
    up_probability = min(max(0.5 - REVERSION_PER_PERCENT * drift_percent, 0.1), 0.9)
    step = tick_size if rng.random() < up_probability else -tick_size
    candidate = price + step
    return candidate if candidate > 0 else price + tick_size
