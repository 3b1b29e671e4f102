"""Position-management plans, pure: reading a plan, evaluating it at prices, following a stop. No database."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orders.plans import (
    DEFAULT_PARTIAL_EXITS,
    LONG,
    SHORT,
    ExitAll,
    ExitPart,
    InvalidPlan,
    Market,
    MoveStop,
    PartialExitRule,
    PlanRules,
    PlanState,
    TrailStep,
    evaluate,
    followed_stop,
    next_trigger,
    parse_plan_request,
    stop_from_ticks,
    trail_ticks_at,
)

D = Decimal
NOW = datetime(2026, 11, 21, 15, 0, tzinfo=UTC)
TICK = D("0.25")


def long_state(**overrides) -> PlanState:  # type: ignore[no-untyped-def]
    # Long 10 from 5000 with the stop at 4990: R = 10 points (40 ticks).
    base = PlanState(
        side=LONG,
        entry_price=D("5000.00"),
        initial_stop_price=D("4990.00"),
        initial_quantity=10,
        best_price=D("5000.00"),
    )
    return replace(base, **overrides)


def short_state(**overrides) -> PlanState:  # type: ignore[no-untyped-def]
    base = PlanState(
        side=SHORT,
        entry_price=D("5000.00"),
        initial_stop_price=D("5010.00"),
        initial_quantity=10,
        best_price=D("5000.00"),
    )
    return replace(base, **overrides)


def market(price: str, *, held: int = 10, closing: int = 0, stop: str | None = "4990.00", now=NOW) -> Market:  # type: ignore[no-untyped-def]
    return Market(
        price=D(price),
        now=now,
        tick_size=TICK,
        open_quantity=held,
        closing_quantity=closing,
        stop_price=D(stop) if stop else None,
    )


# -- Reading a plan ------------------------------------------------------------------------------


def test_an_empty_request_gets_the_default_partial_exits():
    request = parse_plan_request({"initial_stop_ticks": 40}, now=NOW)
    assert request.rules.partial_exits == DEFAULT_PARTIAL_EXITS
    assert [(e.r, e.percent) for e in DEFAULT_PARTIAL_EXITS] == [(D("1.5"), 50), (D("2.5"), 30), (D("4"), 20)]
    assert request.initial_stop_ticks == 40


def test_a_full_request_is_read_into_rules():
    request = parse_plan_request(
        {
            "partial_exits": [{"r": "1", "percent": 25}, {"r": 2, "percent": 25}],
            "breakeven_after_ticks": 8,
            "breakeven_offset_ticks": 1,
            "trail_after_ticks": 12,
            "trail_ticks": 8,
            "trail_steps": [{"r": "2", "ticks": 6}, {"r": "3", "ticks": 4}],
            "exit_at": "2026-11-21T20:55:00Z",
            "initial_stop": "4990.00",
        },
        now=NOW,
    )
    rules = request.rules
    assert rules.partial_exits == (PartialExitRule(D(1), 25), PartialExitRule(D(2), 25))
    assert (rules.breakeven_after_ticks, rules.breakeven_offset_ticks) == (8, 1)
    assert (rules.trail_after_ticks, rules.trail_ticks) == (12, 8)
    assert rules.trail_steps == (TrailStep(D(2), 6), TrailStep(D(3), 4))
    assert rules.exit_at == datetime(2026, 11, 21, 20, 55, tzinfo=UTC)
    assert request.initial_stop == D("4990.00")


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (
            {"partial_exits": [{"r": "1", "percent": 60}, {"r": "2", "percent": 50}]},
            "partial_exits_over_100",
            "partial_exits",
        ),
        (
            {"partial_exits": [{"r": "2", "percent": 10}, {"r": "1", "percent": 10}]},
            "partial_exits_not_rising",
            "partial_exits",
        ),
        ({"partial_exits": [{"r": "0", "percent": 10}]}, "invalid_r", "partial_exits[0].r"),
        ({"partial_exits": [{"r": "x", "percent": 10}]}, "invalid_number", "partial_exits[0].r"),
        ({"partial_exits": [{"r": "1", "percent": 0}]}, "invalid_percent", "partial_exits[0]"),
        ({"partial_exits": [{"r": "1", "percent": 10, "extra": 1}]}, "invalid_partial_exit", "partial_exits[0]"),
        ({"partial_exits": "half"}, "invalid_list", "partial_exits"),
        (
            {"breakeven_after_ticks": 4, "breakeven_offset_ticks": 4},
            "breakeven_offset_too_large",
            "breakeven_offset_ticks",
        ),
        ({"breakeven_after_ticks": 0}, "invalid_ticks", "breakeven_after_ticks"),
        ({"trail_after_ticks": 4}, "trail_without_distance", "trail_ticks"),
        ({"trail_steps": [{"r": "2", "ticks": 4}]}, "trail_steps_without_trail", "trail_steps"),
        ({"trail_ticks": 8, "trail_steps": [{"r": "2", "ticks": 9}]}, "trail_steps_not_tightening", "trail_steps"),
        (
            {"trail_ticks": 8, "trail_steps": [{"r": "2", "ticks": 6}, {"r": "1", "ticks": 4}]},
            "trail_steps_not_tightening",
            "trail_steps",
        ),
        ({"exit_at": "tomorrow"}, "invalid_datetime", "exit_at"),
        ({"exit_at": "2026-11-21T20:55:00"}, "invalid_datetime", "exit_at"),
        ({"exit_at": "2026-11-21T14:00:00Z"}, "exit_at_past", "exit_at"),
        ({"initial_stop": "4990", "initial_stop_ticks": 4}, "initial_stop_twice", "initial_stop"),
        ({"initial_stop": "-1"}, "invalid_price", "initial_stop"),
        ({"trail_tick": 8}, "unknown_field", "trail_tick"),
        ({"trail_ticks": True}, "invalid_ticks", "trail_ticks"),
    ],
)
def test_bad_plan_requests_are_refused_with_a_code_a_field_and_a_sentence(body, code, field):
    with pytest.raises(InvalidPlan) as raised:
        parse_plan_request(body, now=NOW)
    assert (raised.value.code, raised.value.field) == (code, field)
    assert raised.value.detail.endswith(".")


def test_a_plan_that_is_not_an_object_is_refused():
    with pytest.raises(InvalidPlan) as raised:
        parse_plan_request([1, 2], now=NOW)
    assert raised.value.code == "malformed_body"


@pytest.mark.parametrize(
    ("side", "entry", "ticks", "stop"),
    [
        (LONG, "5000.00", 40, "4990.00"),
        (SHORT, "5000.00", 40, "5010.00"),
        (LONG, "5000.10", 4, "4999.00"),  # an average between ticks: rounded away from the entry
        (SHORT, "5000.10", 4, "5001.25"),
    ],
)
def test_stop_from_ticks_is_on_the_grid_and_never_tighter_than_asked(side, entry, ticks, stop):
    assert stop_from_ticks(side=side, entry=D(entry), ticks=ticks, tick_size=TICK) == D(stop)


# -- Following a stop (shared with emulated trailing stop orders) ---------------------------------


@pytest.mark.parametrize(
    ("long", "reference", "distance", "current", "expected"),
    [
        (True, "5010.00", "2.00", "5000.00", "5008.00"),
        (True, "5010.00", "2.00", "5008.00", None),  # not better
        (True, "5010.00", "2.00", "5009.00", None),  # never back down
        (True, "5010.10", "2.00", None, "5008.00"),  # off the grid: away from the market
        (False, "4990.00", "2.00", "5000.00", "4992.00"),
        (False, "4990.00", "2.00", "4991.00", None),
        (False, "4989.90", "2.00", None, "4992.00"),
        (True, "1.00", "2.00", None, None),  # would be at or below zero
    ],
)
def test_followed_stop(long, reference, distance, current, expected):
    got = followed_stop(
        long=long, reference=D(reference), distance=D(distance), current=D(current) if current else None, tick_size=TICK
    )
    assert got == (D(expected) if expected else None)


# -- Partial exits -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("initial", "price", "exits"),
    [
        (10, "5014.75", []),  # 1.475R: not yet
        (10, "5015.00", [(0, 5)]),  # 1.5R: 50%
        (10, "5025.00", [(0, 5), (1, 3)]),  # jumped past two levels at once
        (10, "5040.00", [(0, 5), (1, 3), (2, 2)]),
        (3, "5040.00", [(0, 1), (1, 1), (2, 1)]),  # floors 1, 2, 3 cumulative
        (1, "5025.00", []),  # 50% and 80% of one contract are zero contracts
        (1, "5040.00", [(2, 1)]),  # the last level takes what the floors left
        (7, "5040.00", [(0, 3), (1, 2), (2, 2)]),  # 3, 5 (floor 5.6), 7
    ],
)
def test_partial_exits_at_r_multiples_with_floored_quantities(initial, price, exits):
    state = long_state(initial_quantity=initial)
    result = evaluate(PlanRules(), state, market(price, held=initial))
    assert [(a.index, a.quantity) for a in result.actions if isinstance(a, ExitPart)] == exits
    assert sum(q for _, q in exits) <= initial


def test_short_partial_exit_at_1_5r():
    result = evaluate(PlanRules(), short_state(), market("4985.00", stop="5010.00"))
    assert [(a.index, a.quantity) for a in result.actions if isinstance(a, ExitPart)] == [(0, 5)]
    assert result.state.exits_done == 1


def test_partial_exits_are_sent_once():
    first = evaluate(PlanRules(), long_state(), market("5015.00"))
    again = evaluate(PlanRules(), first.state, market("5015.25", held=5))
    assert first.state.exits_done == 1
    assert not [a for a in again.actions if isinstance(a, ExitPart)]


def test_partial_exit_never_exceeds_what_is_open_and_not_already_closing():
    result = evaluate(PlanRules(), long_state(), market("5040.00", held=6, closing=2))
    assert sum(a.quantity for a in result.actions if isinstance(a, ExitPart)) == 4


# -- Breakeven and trailing ------------------------------------------------------------------------


def test_breakeven_moves_the_stop_to_entry_plus_offset_after_n_ticks():
    rules = PlanRules(partial_exits=(), breakeven_after_ticks=8, breakeven_offset_ticks=1)
    before = evaluate(rules, long_state(), market("5001.75"))  # 7 ticks
    after = evaluate(rules, long_state(), market("5002.00"))  # 8 ticks
    assert before.actions == () and not before.state.breakeven_done
    assert after.state.breakeven_done
    assert [a.price for a in after.actions if isinstance(a, MoveStop)] == [D("5000.25")]
    assert after.actions[0].reason == "breakeven"


def test_breakeven_of_a_short_and_of_an_entry_between_ticks_rounds_in_the_positions_favour():
    rules = PlanRules(partial_exits=(), breakeven_after_ticks=8)
    short = evaluate(rules, short_state(entry_price=D("5000.10")), market("4997.75", stop="5010.00"))
    assert [a.price for a in short.actions] == [D("5000.00")]
    long = evaluate(rules, long_state(entry_price=D("5000.10")), market("5002.25"))
    assert [a.price for a in long.actions] == [D("5000.25")]


def test_breakeven_is_not_asked_again_when_the_stop_is_already_there():
    rules = PlanRules(partial_exits=(), breakeven_after_ticks=8)
    result = evaluate(rules, long_state(breakeven_done=True), market("5003.00", stop="5000.00"))
    assert result.actions == ()


def test_a_refused_breakeven_is_asked_again_while_the_old_stop_is_in_force():
    rules = PlanRules(partial_exits=(), breakeven_after_ticks=8)
    # The flag is set, but the broker kept the stop at 4990: the move is still wanted.
    result = evaluate(rules, long_state(breakeven_done=True), market("5003.00", stop="4990.00"))
    assert [a.price for a in result.actions] == [D("5000.00")]


def test_trailing_starts_after_n_ticks_and_follows_the_best_price():
    rules = PlanRules(partial_exits=(), trail_after_ticks=12, trail_ticks=8)
    idle = evaluate(rules, long_state(), market("5002.75"))  # 11 ticks
    start = evaluate(rules, long_state(), market("5003.00"))  # 12 ticks: stop to 5001.00
    higher = evaluate(rules, start.state, market("5004.00", stop="5001.00"))
    dip = evaluate(rules, higher.state, market("5003.50", stop="5002.00"))
    assert idle.actions == () and not idle.state.trailing
    assert start.state.trailing and [a.price for a in start.actions] == [D("5001.00")]
    assert [a.price for a in higher.actions] == [D("5002.00")]
    assert dip.actions == () and dip.state.best_price == D("5004.00")


def test_short_trailing_stop_moves_down_only():
    rules = PlanRules(partial_exits=(), trail_after_ticks=0, trail_ticks=4)
    first = evaluate(rules, short_state(), market("4998.00", stop="5010.00"))
    back_up = evaluate(rules, first.state, market("4998.50", stop="4999.00"))
    assert [a.price for a in first.actions] == [D("4999.00")]
    assert back_up.actions == ()


@pytest.mark.parametrize(
    ("best_r", "ticks"),
    [(D("0"), 16), (D("1.99"), 16), (D("2"), 8), (D("3.5"), 8), (D("4"), 4), (D("10"), 4)],
)
def test_progressive_tightening_steps_the_trail_down_as_r_grows(best_r, ticks):
    rules = PlanRules(trail_ticks=16, trail_steps=(TrailStep(D(2), 8), TrailStep(D(4), 4)))
    assert trail_ticks_at(rules, best_r=best_r) == ticks


def test_tightening_moves_the_stop_closer_at_a_higher_r():
    rules = PlanRules(partial_exits=(), trail_after_ticks=0, trail_ticks=16, trail_steps=(TrailStep(D(2), 8),))
    at_1r = evaluate(rules, long_state(), market("5010.00"))  # 16 ticks behind
    at_2r = evaluate(rules, at_1r.state, market("5020.00", stop="5006.00"))  # 8 ticks behind
    assert [a.price for a in at_1r.actions] == [D("5006.00")]
    assert [a.price for a in at_2r.actions] == [D("5018.00")]


def test_the_better_of_breakeven_and_trail_wins():
    rules = PlanRules(
        partial_exits=(), breakeven_after_ticks=4, breakeven_offset_ticks=2, trail_after_ticks=0, trail_ticks=20
    )
    result = evaluate(rules, long_state(), market("5002.00"))  # breakeven 5000.50, trail 4997.00
    assert [(a.price, a.reason) for a in result.actions] == [(D("5000.50"), "breakeven")]


def test_a_stop_is_never_put_at_or_through_the_market():
    # Breakeven + 3 ticks after 4 ticks of best profit, but the market fell back to +1 tick.
    rules = PlanRules(partial_exits=(), breakeven_after_ticks=4, breakeven_offset_ticks=3)
    result = evaluate(rules, long_state(best_price=D("5001.00")), market("5000.25"))
    assert [a.price for a in result.actions] == [D("5000.00")]  # one tick under the market


def test_no_stop_moves_without_a_stop_to_move():
    rules = PlanRules(partial_exits=(), breakeven_after_ticks=4)
    result = evaluate(rules, long_state(), market("5002.00", stop=None))
    assert result.actions == () and result.state.breakeven_done


# -- Time exit -------------------------------------------------------------------------------------


def test_time_exit_closes_what_is_left_once():
    rules = PlanRules(exit_at=NOW)
    early = evaluate(rules, long_state(), market("5001.00", now=NOW - timedelta(seconds=1)))
    due = evaluate(rules, long_state(), market("5001.00", held=4, closing=1))
    after = evaluate(rules, due.state, market("5001.00", held=3))
    assert early.actions == ()
    assert due.actions == (ExitAll(3),) and due.state.time_exit_done
    assert after.actions == ()


# -- Properties ----------------------------------------------------------------------------------

prices = st.lists(st.integers(min_value=-80, max_value=160), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(
    side=st.sampled_from([LONG, SHORT]),
    initial=st.integers(min_value=1, max_value=50),
    moves=prices,
    percents=st.lists(st.integers(min_value=1, max_value=60), min_size=0, max_size=4),
    breakeven=st.one_of(st.none(), st.integers(min_value=1, max_value=30)),
    offset=st.integers(min_value=-5, max_value=0),
    trail=st.one_of(st.none(), st.integers(min_value=1, max_value=30)),
    trail_after=st.integers(min_value=0, max_value=30),
)
def test_exits_never_exceed_the_position_and_the_stop_only_moves_in_its_favour(
    side, initial, moves, percents, breakeven, offset, trail, trail_after
):
    # Percents trimmed to at most 100 in all; R levels rising.
    kept, total = [], 0
    for p in percents:
        if total + p <= 100:
            kept.append(p)
            total += p
    rules = PlanRules(
        partial_exits=tuple(PartialExitRule(D(i + 1), p) for i, p in enumerate(kept)),
        breakeven_after_ticks=breakeven,
        breakeven_offset_ticks=offset,
        trail_after_ticks=trail_after if trail else None,
        trail_ticks=trail,
        trail_steps=(TrailStep(D(2), max(trail // 2, 1)),) if trail and trail > 1 else (),
    )
    long = side == LONG
    entry = D("5000.00")
    stop = entry - 40 * TICK if long else entry + 40 * TICK
    state = PlanState(side, entry, stop, initial, entry)
    held = initial
    exited = 0
    for ticks in moves:
        price = entry + ticks * TICK * (1 if long else -1)
        if (price <= stop) if long else (price >= stop):
            break  # stopped out
        result = evaluate(rules, state, Market(price, NOW, TICK, held, 0, stop))
        for action in result.actions:
            if isinstance(action, ExitPart):
                assert action.quantity > 0
                held -= action.quantity
                exited += action.quantity
            elif isinstance(action, MoveStop):
                assert (action.price > stop) if long else (action.price < stop)  # only in its favour
                assert (action.price < price) if long else (action.price > price)  # never through the market
                assert action.price % TICK == 0
                stop = action.price
        assert held >= 0 and exited <= initial
        state = result.state
    assert exited <= initial * total // 100  # the floors of the cumulative percents


@settings(max_examples=500, deadline=None)
@given(
    side=st.sampled_from([LONG, SHORT]),
    best_ticks=st.integers(min_value=0, max_value=120),
    stop_ticks=st.integers(min_value=-40, max_value=100),
    price_ticks=st.integers(min_value=-39, max_value=200),
    exits_done=st.integers(min_value=0, max_value=3),
    breakeven=st.one_of(st.none(), st.integers(min_value=1, max_value=30)),
    offset=st.integers(min_value=-5, max_value=0),
    trail=st.one_of(st.none(), st.integers(min_value=2, max_value=30)),
    trail_after=st.integers(min_value=0, max_value=30),
    trailing=st.booleans(),
    entry_offset=st.sampled_from([D(0), D("0.10")]),
)
def test_prices_short_of_the_next_trigger_never_act(
    side, best_ticks, stop_ticks, price_ticks, exits_done, breakeven, offset, trail, trail_after, trailing, entry_offset
):
    """The price trigger skips prices inside the band: evaluation there must have nothing to do."""
    long = side == LONG
    d = 1 if long else -1
    entry = D("5000.00") + entry_offset
    rules = PlanRules(
        breakeven_after_ticks=breakeven,
        breakeven_offset_ticks=offset,
        trail_after_ticks=trail_after if trail else None,
        trail_ticks=trail,
        trail_steps=(TrailStep(D(1), trail // 2),) if trail else (),
    )
    state = PlanState(
        side=side,
        entry_price=entry,
        initial_stop_price=entry - d * 40 * TICK,
        initial_quantity=10,
        best_price=entry + d * best_ticks * TICK,
        exits_done=exits_done,
        trailing=trailing and trail is not None,
    )
    stop = D("5000.00") + d * stop_ticks * TICK
    price = D("5000.00") + d * price_ticks * TICK
    if (price <= stop) if long else (price >= stop):
        return  # stopped out
    trigger = next_trigger(rules, state, stop=stop, tick_size=TICK)
    short_of_it = trigger is None or (price < trigger if long else price > trigger)
    if short_of_it:
        result = evaluate(rules, state, Market(price, NOW, TICK, 10, 0, stop))
        assert result.actions == ()
