"""Position-management plans (pure): what a plan asks for, and what it does at a new price.

A plan manages one open position: partial exits at R multiples (R = the distance from the entry
to the initial stop), a breakeven move of the stop, a trailing stop that tightens as R grows, and
a time exit. `evaluate` takes the plan's rules, where it stands and the market, and returns its
new standing with the actions to take; orders.plan_service carries them out through the order
path. `followed_stop` is the one way a stop follows the market: plans' trailing stops and
emulated trailing stop orders (orders.trailing) both use it.

Rounding rules, all on the instrument's tick grid:
- partial exit quantities are floored against the plan's initial quantity, cumulatively, so the
  exits never add up to more than it (the last level takes what the floors left), and each is
  capped by what is still open and not already being closed;
- a breakeven stop off the grid (an average entry) is rounded in the position's favour;
- a trailing stop off the grid is rounded away from the market (never tighter than asked);
- every stop stays at least one tick on the protective side of the market, and only ever moves
  in the position's favour.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from itertools import pairwise
from typing import Any

from brokers.ticks import normalize_price, round_to_tick
from config.errors import DomainError

LONG, SHORT = "long", "short"
MAX_TICKS = 100_000
MAX_R = Decimal(100)


class InvalidPlan(DomainError):
    code = "invalid_plan"


@dataclass(frozen=True)
class PartialExitRule:
    r: Decimal  # take profit when the price is this many R in the position's favour
    percent: int  # of the plan's initial quantity


@dataclass(frozen=True)
class TrailStep:
    r: Decimal  # from this many R of best profit on,
    ticks: int  # trail by this many ticks


DEFAULT_PARTIAL_EXITS = (
    PartialExitRule(Decimal("1.5"), 50),
    PartialExitRule(Decimal("2.5"), 30),
    PartialExitRule(Decimal("4"), 20),
)


@dataclass(frozen=True)
class PlanRules:
    partial_exits: tuple[PartialExitRule, ...] = DEFAULT_PARTIAL_EXITS
    breakeven_after_ticks: int | None = None
    breakeven_offset_ticks: int = 0
    trail_after_ticks: int | None = None
    trail_ticks: int | None = None
    trail_steps: tuple[TrailStep, ...] = ()
    exit_at: datetime | None = None


@dataclass(frozen=True)
class PlanRequest:
    """A plan as asked (API body or a program's default): its rules and where R's stop is."""

    rules: PlanRules
    initial_stop: Decimal | None = None  # a price,
    initial_stop_ticks: int | None = None  # or ticks from the entry (used when the position has no stop)


@dataclass(frozen=True)
class PlanState:
    side: str  # long or short
    entry_price: Decimal
    initial_stop_price: Decimal
    initial_quantity: int
    best_price: Decimal
    exits_done: int = 0
    breakeven_done: bool = False
    trailing: bool = False
    time_exit_done: bool = False


@dataclass(frozen=True)
class Market:
    price: Decimal
    now: datetime
    tick_size: Decimal
    open_quantity: int  # contracts held (unsigned)
    closing_quantity: int = 0  # contracts already being closed by orders on their way
    stop_price: Decimal | None = None  # the position's live stop; None: no stop to move


@dataclass(frozen=True)
class ExitPart:
    index: int  # which partial exit rule
    r: Decimal
    quantity: int


@dataclass(frozen=True)
class MoveStop:
    price: Decimal
    reason: str  # "breakeven" or "trail"
    detail: str


@dataclass(frozen=True)
class ExitAll:
    quantity: int


Action = ExitPart | MoveStop | ExitAll


@dataclass(frozen=True)
class Evaluation:
    state: PlanState
    actions: tuple[Action, ...] = field(default_factory=tuple)


# -- Reading a plan request -------------------------------------------------------------------

PLAN_FIELDS = (
    "partial_exits",
    "breakeven_after_ticks",
    "breakeven_offset_ticks",
    "trail_after_ticks",
    "trail_ticks",
    "trail_steps",
    "exit_at",
    "initial_stop",
    "initial_stop_ticks",
)


def _decimal(value: Any, *, field_name: str) -> Decimal:
    number = None
    if isinstance(value, int | str | Decimal) and not isinstance(value, bool):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            number = None
    if number is None or not number.is_finite():
        raise InvalidPlan(
            f'{field_name} must be a number such as "1.5" (got {value!r}).', code="invalid_number", field=field_name
        )
    return number


def _ticks(value: Any, *, field_name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_TICKS:
        raise InvalidPlan(
            f"{field_name} must be a whole number of ticks from {minimum} to {MAX_TICKS} (got {value!r}).",
            code="invalid_ticks",
            field=field_name,
        )
    return value


def _optional_ticks(data: Mapping[str, Any], name: str) -> int | None:
    value = data.get(name)
    return None if value is None else _ticks(value, field_name=name)


def _r(value: Any, *, field_name: str) -> Decimal:
    r = _decimal(value, field_name=field_name)
    if not 0 < r <= MAX_R:
        raise InvalidPlan(
            f"{field_name} must be above 0 and at most {MAX_R} R (got {r}).", code="invalid_r", field=field_name
        )
    return r


def _list_of_objects(data: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    items = data.get(name)
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise InvalidPlan(f"{name} must be a list of objects.", code="invalid_list", field=name)
    return items


def _partial_exits(data: Mapping[str, Any]) -> tuple[PartialExitRule, ...]:
    if "partial_exits" not in data:
        return DEFAULT_PARTIAL_EXITS
    rules = []
    for i, item in enumerate(_list_of_objects(data, "partial_exits")):
        name = f"partial_exits[{i}]"
        if set(item) != {"r", "percent"}:
            raise InvalidPlan(f'{name} must have exactly "r" and "percent".', code="invalid_partial_exit", field=name)
        percent = item["percent"]
        if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 100:
            raise InvalidPlan(
                f"{name}.percent must be a whole percent from 1 to 100 (got {percent!r}).",
                code="invalid_percent",
                field=name,
            )
        rules.append(PartialExitRule(_r(item["r"], field_name=f"{name}.r"), percent))
    if sum(rule.percent for rule in rules) > 100:
        raise InvalidPlan(
            f"The partial exits add up to {sum(rule.percent for rule in rules)}% of the position; at most 100%.",
            code="partial_exits_over_100",
            field="partial_exits",
        )
    if any(b.r <= a.r for a, b in pairwise(rules)):
        raise InvalidPlan(
            "Partial exits must be in rising R order, each level above the one before.",
            code="partial_exits_not_rising",
            field="partial_exits",
        )
    return tuple(rules)


def _trail_steps(data: Mapping[str, Any], trail_ticks: int | None) -> tuple[TrailStep, ...]:
    steps = []
    for i, item in enumerate(_list_of_objects(data, "trail_steps")):
        name = f"trail_steps[{i}]"
        if set(item) != {"r", "ticks"}:
            raise InvalidPlan(f'{name} must have exactly "r" and "ticks".', code="invalid_trail_step", field=name)
        steps.append(
            TrailStep(_r(item["r"], field_name=f"{name}.r"), _ticks(item["ticks"], field_name=f"{name}.ticks"))
        )
    if steps and trail_ticks is None:
        raise InvalidPlan(
            "Trail steps tighten a trailing stop: give trail_ticks too.",
            code="trail_steps_without_trail",
            field="trail_steps",
        )
    previous_r, previous_ticks = Decimal(0), trail_ticks or 0
    for i, step in enumerate(steps):
        if step.r <= previous_r or step.ticks >= previous_ticks:
            raise InvalidPlan(
                f"trail_steps[{i}]: each step must start at a higher R and trail tighter (fewer ticks) than the one "
                f"before ({previous_ticks} ticks).",
                code="trail_steps_not_tightening",
                field="trail_steps",
            )
        previous_r, previous_ticks = step.r, step.ticks
    return tuple(steps)


def parse_plan_request(data: Any, *, now: datetime) -> PlanRequest:
    """A plan request from JSON (an API body or Program.default_position_plan); InvalidPlan says what is wrong."""
    if not isinstance(data, dict):
        raise InvalidPlan("The plan must be a JSON object.", code="malformed_body")
    unknown = sorted(set(data) - set(PLAN_FIELDS))
    if unknown:
        raise InvalidPlan(
            f"Unknown field {unknown[0]!r}; expected some of: {', '.join(PLAN_FIELDS)}.",
            code="unknown_field",
            field=unknown[0],
        )
    breakeven_after = _optional_ticks(data, "breakeven_after_ticks")
    offset = data.get("breakeven_offset_ticks", 0)
    if isinstance(offset, bool) or not isinstance(offset, int) or abs(offset) > MAX_TICKS:
        raise InvalidPlan(
            "breakeven_offset_ticks must be a whole number of ticks.",
            code="invalid_ticks",
            field="breakeven_offset_ticks",
        )
    if breakeven_after is not None and offset >= breakeven_after:
        raise InvalidPlan(
            f"The breakeven stop ({offset} ticks past the entry) must be below the profit that triggers it "
            f"({breakeven_after} ticks), or it would sit at or beyond the market.",
            code="breakeven_offset_too_large",
            field="breakeven_offset_ticks",
        )
    trail_ticks = _optional_ticks(data, "trail_ticks")
    trail_after = data.get("trail_after_ticks")
    if trail_after is not None:
        trail_after = _ticks(trail_after, field_name="trail_after_ticks", minimum=0)
        if trail_ticks is None:
            raise InvalidPlan(
                "trail_after_ticks needs trail_ticks (how far behind the stop trails).",
                code="trail_without_distance",
                field="trail_ticks",
            )
    exit_at = data.get("exit_at")
    if exit_at is not None:
        try:
            exit_at = datetime.fromisoformat(str(exit_at).replace("Z", "+00:00"))
        except ValueError:
            exit_at = None
        if exit_at is None or exit_at.tzinfo is None:
            raise InvalidPlan(
                'exit_at must be a date and time with its zone, such as "2026-11-21T20:55:00Z".',
                code="invalid_datetime",
                field="exit_at",
            )
        if exit_at <= now:
            raise InvalidPlan(f"exit_at {exit_at.isoformat()} is already past.", code="exit_at_past", field="exit_at")
    initial_stop = data.get("initial_stop")
    initial_stop_ticks = data.get("initial_stop_ticks")
    if initial_stop is not None and initial_stop_ticks is not None:
        raise InvalidPlan(
            "Give initial_stop (a price) or initial_stop_ticks, not both.",
            code="initial_stop_twice",
            field="initial_stop",
        )
    if initial_stop is not None:
        initial_stop = _decimal(initial_stop, field_name="initial_stop")
        if initial_stop <= 0:
            raise InvalidPlan("initial_stop must be above zero.", code="invalid_price", field="initial_stop")
    if initial_stop_ticks is not None:
        initial_stop_ticks = _ticks(initial_stop_ticks, field_name="initial_stop_ticks")
    rules = PlanRules(
        partial_exits=_partial_exits(data),
        breakeven_after_ticks=breakeven_after,
        breakeven_offset_ticks=offset,
        trail_after_ticks=trail_after,
        trail_ticks=trail_ticks,
        trail_steps=_trail_steps(data, trail_ticks),
        exit_at=exit_at,
    )
    return PlanRequest(rules=rules, initial_stop=initial_stop, initial_stop_ticks=initial_stop_ticks)


def check_initial_stop(*, side: str, entry: Decimal, stop: Decimal) -> None:
    """R needs a stop on the losing side of the entry."""
    if (stop >= entry) if side == LONG else (stop <= entry):
        raise InvalidPlan(
            f"A {side} position's initial stop ({stop}) must be {'below' if side == LONG else 'above'} its entry "
            f"({entry}): R is the distance between them.",
            code="initial_stop_wrong_side",
            field="initial_stop",
        )


def stop_from_ticks(*, side: str, entry: Decimal, ticks: int, tick_size: Decimal) -> Decimal:
    """A stop `ticks` from an entry, rounded away from it (never a tighter stop than asked)."""
    if side == LONG:
        return normalize_price(round_to_tick(entry - ticks * tick_size, tick_size, ROUND_FLOOR), tick_size)
    return normalize_price(round_to_tick(entry + ticks * tick_size, tick_size, ROUND_CEILING), tick_size)


# -- Following the market: shared by plans and emulated trailing stop orders --------------------


def improves(*, long: bool, current: Decimal | None, candidate: Decimal) -> bool:
    """A stop protecting a long only ever goes up, a short's only down."""
    return current is None or (candidate > current if long else candidate < current)


def followed_stop(
    *, long: bool, reference: Decimal, distance: Decimal, current: Decimal | None, tick_size: Decimal
) -> Decimal | None:
    """Where a stop following `reference` (the best price) at `distance` goes, or None when that
    is not better than `current`. `long`: the stop protects a long (a sell stop, below)."""
    if long:
        candidate = round_to_tick(reference - distance, tick_size, ROUND_FLOOR)
    else:
        candidate = round_to_tick(reference + distance, tick_size, ROUND_CEILING)
    if candidate <= 0 or not improves(long=long, current=current, candidate=candidate):
        return None
    return normalize_price(candidate, tick_size)


# -- Evaluating a plan at a price -----------------------------------------------------------


def _cumulative_quantity(rules: PlanRules, upto: int, initial: int) -> int:
    percent = sum(rule.percent for rule in rules.partial_exits[:upto])
    return initial * percent // 100


def r_distance(state: PlanState) -> Decimal:
    return abs(state.entry_price - state.initial_stop_price)


def trail_ticks_at(rules: PlanRules, *, best_r: Decimal) -> int | None:
    """The trailing distance in ticks with progressive tightening at this much R of best profit."""
    if rules.trail_ticks is None:
        return None
    ticks = rules.trail_ticks
    for step in rules.trail_steps:
        if best_r >= step.r:
            ticks = min(ticks, step.ticks)
    return ticks


def evaluate(rules: PlanRules, state: PlanState, market: Market) -> Evaluation:
    """The plan at a new price: its new standing and what to do (nothing changes the world here)."""
    if state.time_exit_done or market.open_quantity <= 0:
        return Evaluation(state)
    long = state.side == LONG
    direction = 1 if long else -1
    best = max(state.best_price, market.price) if long else min(state.best_price, market.price)
    state = replace(state, best_price=best)
    available = max(market.open_quantity - market.closing_quantity, 0)

    if rules.exit_at is not None and market.now >= rules.exit_at:
        state = replace(state, time_exit_done=True)
        return Evaluation(state, (ExitAll(available),) if available else ())

    actions: list[Action] = []
    r = r_distance(state)
    tick = market.tick_size
    if r > 0:
        profit_r = (market.price - state.entry_price) * direction / r
        exits_done = state.exits_done
        for index in range(state.exits_done, len(rules.partial_exits)):
            rule = rules.partial_exits[index]
            if profit_r < rule.r:
                break
            wanted = _cumulative_quantity(rules, index + 1, state.initial_quantity) - _cumulative_quantity(
                rules, index, state.initial_quantity
            )
            quantity = min(wanted, available)
            if quantity > 0:
                actions.append(ExitPart(index=index, r=rule.r, quantity=quantity))
                available -= quantity
            exits_done = index + 1
        state = replace(state, exits_done=exits_done)

    best_ticks = (best - state.entry_price) * direction / tick
    candidates: list[tuple[Decimal, str, str]] = []
    if rules.breakeven_after_ticks is not None and best_ticks >= rules.breakeven_after_ticks:
        state = replace(state, breakeven_done=True)
        level = state.entry_price + direction * rules.breakeven_offset_ticks * tick
        level = round_to_tick(level, tick, ROUND_CEILING if long else ROUND_FLOOR)
        candidates.append(
            (
                level,
                "breakeven",
                f"{best_ticks:.0f} ticks in profit: stop to the entry {rules.breakeven_offset_ticks:+d} ticks.",
            )
        )
    trail_active = state.trailing or (rules.trail_ticks is not None and best_ticks >= (rules.trail_after_ticks or 0))
    if trail_active and rules.trail_ticks is not None:
        state = replace(state, trailing=True)
        best_r = (best - state.entry_price) * direction / r if r > 0 else Decimal(0)
        ticks = trail_ticks_at(rules, best_r=best_r)
        assert ticks is not None
        level = followed_stop(long=long, reference=best, distance=ticks * tick, current=None, tick_size=tick)
        if level is not None:
            candidates.append((level, "trail", f"Trailing {ticks} ticks behind the best price {best}."))
    if candidates and market.stop_price is not None:
        level, reason, detail = (max if long else min)(candidates, key=lambda c: c[0])
        # Never at or through the market: a stop there would fill at once (and brokers refuse it).
        limit = market.price - tick if long else market.price + tick
        level = min(level, limit) if long else max(level, limit)
        if level > 0 and improves(long=long, current=market.stop_price, candidate=level):
            actions.append(MoveStop(price=normalize_price(level, tick), reason=reason, detail=detail))
    return Evaluation(state, tuple(actions))


def next_trigger(
    rules: PlanRules, state: PlanState, *, stop: Decimal | None, tick_size: Decimal, stop_movable: bool = True
) -> Decimal | None:
    """The nearest price at which `evaluate` could act for this plan: a long acts at or above it,
    a short at or below (an infinity: at any price); None: no price can (time exits are
    scheduled, not priced). A bound, so skipping the prices short of it never skips an action.
    `stop` is the stop in force (or asked for); a plan that may not move its stop gives only
    its exits."""
    if state.time_exit_done:
        return None
    long = state.side == LONG
    direction = 1 if long else -1
    now = Decimal("-Infinity") if long else Decimal("Infinity")
    candidates: list[Decimal] = []
    r = r_distance(state)
    if r > 0 and state.exits_done < len(rules.partial_exits):
        candidates.append(state.entry_price + direction * rules.partial_exits[state.exits_done].r * r)
    if stop is not None and stop_movable:
        best_ticks = (state.best_price - state.entry_price) * direction / tick_size
        if rules.breakeven_after_ticks is not None:
            level = state.entry_price + direction * rules.breakeven_offset_ticks * tick_size
            level = round_to_tick(level, tick_size, ROUND_CEILING if long else ROUND_FLOOR)
            if improves(long=long, current=stop, candidate=level):
                reached = best_ticks >= rules.breakeven_after_ticks
                candidates.append(
                    now if reached else state.entry_price + direction * rules.breakeven_after_ticks * tick_size
                )
        if rules.trail_ticks is not None:
            active = state.trailing or best_ticks >= (rules.trail_after_ticks or 0)
            best_r = (state.best_price - state.entry_price) * direction / r if r > 0 else Decimal(0)
            ticks = trail_ticks_at(rules, best_r=best_r)
            assert ticks is not None
            from_best = followed_stop(
                long=long, reference=state.best_price, distance=ticks * tick_size, current=stop, tick_size=tick_size
            )
            if active and from_best is not None:
                candidates.append(now)  # the best price seen already moves it (a move that had to wait)
            else:
                activation = state.entry_price + direction * (rules.trail_after_ticks or 0) * tick_size
                candidates.append(
                    _trail_trigger(
                        rules, state, stop=stop, tick_size=tick_size, from_price=None if active else activation
                    )
                )
    if not candidates:
        return None
    return min(candidates) if long else max(candidates)


def _trail_trigger(
    rules: PlanRules, state: PlanState, *, stop: Decimal, tick_size: Decimal, from_price: Decimal | None
) -> Decimal:
    """The nearest new best price at which the trailing stop moves beyond `stop` (trailing from
    `from_price` on, None: already). Following at `ticks`, the stop improves once the price is a
    tick beyond stop + ticks; the distance tightens at each step's R, so each distance counts from
    the price where it starts. (Counting the tightest distance from the current best instead put
    the trigger 4 ticks inside the range a trailing plan had already seen: evaluations that could
    do nothing, at every uptick near the high; decision 0017.)"""
    long = state.side == LONG
    direction = 1 if long else -1
    r = r_distance(state)
    best_r = (state.best_price - state.entry_price) * direction / r if r > 0 else Decimal(0)
    assert rules.trail_ticks is not None
    # (price where the distance starts applying (None: at any new best), the distance there)
    segments: list[tuple[Decimal | None, int]] = [(None, trail_ticks_at(rules, best_r=best_r) or 0)]
    if r > 0:
        for step in rules.trail_steps:
            if step.r > best_r:
                ticks = trail_ticks_at(rules, best_r=step.r)
                assert ticks is not None
                segments.append((state.entry_price + direction * step.r * r, ticks))
    triggers = []
    for starts, ticks in segments:
        bounds = [stop + direction * (ticks + 1) * tick_size]
        bounds += [price for price in (starts, from_price) if price is not None]
        triggers.append(max(bounds) if long else min(bounds))
    return min(triggers) if long else max(triggers)
