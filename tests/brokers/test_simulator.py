"""Pure tests of brokers/paper/simulator.py: the demo price walk stays on the grid, positive and near its anchor."""

import random
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokers.paper import simulator
from brokers.paper.simulator import next_price
from brokers.ticks import is_on_tick

PURE = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class Scripted(random.Random):
    """A Random whose draws are given in advance (first: move or stay, second: up or down)."""

    def __init__(self, *draws: float) -> None:
        super().__init__(0)
        self.draws = list(draws)

    def random(self) -> float:
        return self.draws.pop(0)


def walk(start: Decimal, *, tick: Decimal, anchor: Decimal, seed: int, steps: int) -> list[Decimal]:
    rng, price, path = random.Random(seed), start, []
    for _ in range(steps):
        price = next_price(price, tick_size=tick, anchor=anchor, rng=rng)
        path.append(price)
    return path


def drift(price: Decimal, anchor: Decimal) -> Decimal:
    return abs(price - anchor) / anchor


@pytest.mark.parametrize(
    ("start", "tick"),
    [
        (Decimal("5000.00"), Decimal("0.25")),
        (Decimal("112.000000"), Decimal("0.015625")),
        (Decimal("1.16"), Decimal("0.00005")),
    ],
)
def test_walk_stays_on_tick_grid_and_moves_one_tick_at_a_time(start, tick):
    path = walk(start, tick=tick, anchor=start, seed=7, steps=2_000)

    assert all(is_on_tick(price, tick) for price in path)
    steps = {b - a for a, b in zip([start, *path], path, strict=False)}
    assert steps == {-tick, Decimal(0), tick}


def test_price_stays_when_no_move_is_drawn():
    assert next_price(Decimal("5000.25"), tick_size=Decimal("0.25"), anchor=Decimal("5000"), rng=Scripted(0.71)) == (
        Decimal("5000.25")
    )


def test_price_never_reaches_zero_when_a_down_move_from_one_tick_is_drawn():
    # A move, then "down" (0.99 is above any up probability): one tick minus one tick would be 0.
    price = next_price(Decimal("0.25"), tick_size=Decimal("0.25"), anchor=Decimal("0.25"), rng=Scripted(0.0, 0.99))
    assert price == Decimal("0.50")


@PURE
@given(seed=st.integers(0, 2**32), start_ticks=st.integers(1, 5), anchor_ticks=st.integers(1, 5))
def test_walk_stays_positive_when_started_near_zero(seed, start_ticks, anchor_ticks):
    tick = Decimal("0.25")
    path = walk(start_ticks * tick, tick=tick, anchor=anchor_ticks * tick, seed=seed, steps=300)
    assert min(path) >= tick


def test_seeded_walk_is_reproducible():
    first = walk(Decimal("5000"), tick=Decimal("0.25"), anchor=Decimal("5000"), seed=42, steps=1_000)
    again = walk(Decimal("5000"), tick=Decimal("0.25"), anchor=Decimal("5000"), seed=42, steps=1_000)
    other = walk(Decimal("5000"), tick=Decimal("0.25"), anchor=Decimal("5000"), seed=43, steps=1_000)
    assert first == again
    assert first != other


@pytest.mark.parametrize(
    ("price", "low", "high"),
    [
        (Decimal("100"), Decimal("0.45"), Decimal("0.55")),  # at the anchor: a fair coin
        (Decimal("104"), Decimal("0.25"), Decimal("0.35")),  # 4% above: 0.5 - 0.05 * 4 = 0.3
        (Decimal("96"), Decimal("0.65"), Decimal("0.75")),  # 4% below: 0.7
        (Decimal("120"), Decimal("0.07"), Decimal("0.13")),  # far above: clamped to 0.1
        (Decimal("80"), Decimal("0.87"), Decimal("0.93")),  # far below: clamped to 0.9
    ],
)
def test_walk_leans_back_to_anchor_in_proportion_to_drift(price, low, high):
    rng = random.Random(1)
    moves = [
        next_price(price, tick_size=Decimal("0.25"), anchor=Decimal("100"), rng=rng) - price for _ in range(10_000)
    ]

    moved = [move for move in moves if move]
    assert 0.67 < len(moved) / len(moves) < 0.73  # MOVE_PROBABILITY
    assert low < Decimal(sum(1 for move in moved if move > 0)) / len(moved) < high


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_long_walk_stays_within_a_few_percent_of_anchor(seed):
    # A coarse tick (0.25 on 100: 1% is 4 ticks) so that an unchecked walk would wander tens of percent.
    anchor = Decimal("100")
    path = walk(anchor, tick=Decimal("0.25"), anchor=anchor, seed=seed, steps=20_000)
    assert max(drift(price, anchor) for price in path) < Decimal("0.08")
    assert drift(path[-1], anchor) < Decimal("0.05")


def test_long_walk_on_es_stays_within_a_few_percent_of_anchor():
    anchor = Decimal("5000")
    path = walk(Decimal("5000"), tick=Decimal("0.25"), anchor=anchor, seed=2026, steps=20_000)
    assert max(drift(price, anchor) for price in path) < Decimal("0.02")


def test_long_walk_wanders_far_when_reversion_is_off(monkeypatch):
    # The control for the test above: it is the reversion, not the short walk, that keeps prices near.
    monkeypatch.setattr(simulator, "REVERSION_PER_PERCENT", 0)
    anchor = Decimal("100")
    farthest = [
        max(drift(price, anchor) for price in walk(anchor, tick=Decimal("0.25"), anchor=anchor, seed=s, steps=20_000))
        for s in (0, 1, 2)
    ]
    assert max(farthest) > Decimal("0.10")
