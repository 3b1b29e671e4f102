"""What a signal means for an account given its position, and trading windows (pure, no database)."""

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signals_in.intents import (
    AccountFacts,
    InvalidWindows,
    Plan,
    SignalFacts,
    Step,
    outside_window,
    parse_windows,
    plan_for,
    within_windows,
)


def plan(action: str, held: int, *, sentiment: str = "", partial: int | None = None, size: int = 2, **account) -> Plan:  # type: ignore[no-untyped-def]
    return plan_for(
        SignalFacts(action=action, sentiment=sentiment, partial_exit_quantity=partial),
        AccountFacts(held=held, **account),
        entry_quantity=size,
    )


@pytest.mark.parametrize(
    ("action", "held", "extra", "expected"),
    [
        ("buy", 0, {}, Plan(Step.ENTER, side="buy", entry_quantity=2)),
        ("sell", 0, {}, Plan(Step.ENTER, side="sell", entry_quantity=2)),
        ("buy", 3, {}, Plan(Step.SKIP, code="already_long")),
        ("sell", -3, {}, Plan(Step.SKIP, code="already_short")),
        ("buy", 3, {"allow_adds": True}, Plan(Step.ENTER, side="buy", entry_quantity=2)),
        ("buy", -3, {}, Plan(Step.REVERSE, side="buy", entry_quantity=2, exit_quantity=3)),
        (
            "sell",
            3,
            {"allow_reversals": False},
            Plan(Step.EXIT, side="sell", exit_quantity=3, code="reversal_not_allowed"),
        ),
        ("exit", 3, {}, Plan(Step.EXIT, side="sell", exit_quantity=3)),
        ("exit", -3, {"partial": 1}, Plan(Step.EXIT, side="buy", exit_quantity=1)),
        ("exit", 0, {}, Plan(Step.SKIP, code="no_position")),
        ("buy", 3, {"sentiment": "flat"}, Plan(Step.EXIT, side="sell", exit_quantity=3)),
        ("sell", -2, {"sentiment": "flat", "partial": 1}, Plan(Step.EXIT, side="buy", exit_quantity=2)),
        ("buy", -4, {"sentiment": "short", "partial": 1}, Plan(Step.EXIT, side="buy", exit_quantity=1)),
        ("add", 2, {}, Plan(Step.ENTER, side="buy", entry_quantity=2)),
        ("add", -2, {}, Plan(Step.ENTER, side="sell", entry_quantity=2)),
        ("add", 0, {}, Plan(Step.SKIP, code="no_position_to_add")),
        ("add", 2, {"sentiment": "short"}, Plan(Step.SKIP, code="add_side_mismatch")),
        ("cancel", 5, {}, Plan(Step.CANCEL)),
        ("buy", 0, {"size": 0}, Plan(Step.SKIP, code="size_zero")),
        ("buy", -1, {"size": 0}, Plan(Step.EXIT, side="buy", exit_quantity=1, code="size_zero")),
        ("buy", -3, {"closing": 1}, Plan(Step.SKIP, code="exit_in_flight")),
        ("exit", 3, {"closing": 3}, Plan(Step.SKIP, code="exit_in_flight")),
        ("hold", 0, {}, Plan(Step.SKIP, code="unknown_action")),
    ],
)
def test_plan_for(action, held, extra, expected):  # type: ignore[no-untyped-def]
    got = plan(action, held, **extra)
    assert (got.step, got.side, got.entry_quantity, got.exit_quantity, got.code) == (
        expected.step,
        expected.side,
        expected.entry_quantity,
        expected.exit_quantity,
        expected.code,
    )
    if got.step == Step.SKIP:
        assert got.detail  # always a sentence


@given(
    action=st.sampled_from(["buy", "sell", "exit", "add", "cancel"]),
    sentiment=st.sampled_from(["", "long", "short", "flat"]),
    held=st.integers(-50, 50),
    closing=st.integers(0, 60),
    partial=st.none() | st.integers(1, 100),
    size=st.integers(0, 20),
    adds=st.booleans(),
    reversals=st.booleans(),
)
def test_exits_never_exceed_what_is_left_to_close(action, sentiment, held, closing, partial, size, adds, reversals):  # type: ignore[no-untyped-def]
    got = plan(
        action,
        held,
        sentiment=sentiment,
        partial=partial,
        size=size,
        closing=closing,
        allow_adds=adds,
        allow_reversals=reversals,
    )
    assert got.exit_quantity >= 0 and got.entry_quantity >= 0
    if got.exit_quantity:
        assert got.exit_quantity <= abs(held) - closing
        assert got.side == ("sell" if held > 0 else "buy") or got.step == Step.REVERSE
    if got.step == Step.REVERSE:
        assert got.exit_quantity == abs(held) and reversals and sentiment != "flat"
    if sentiment == "flat":
        assert got.step in (Step.EXIT, Step.SKIP, Step.CANCEL) and got.entry_quantity == 0
    if got.step == Step.ENTER:
        assert 1 <= got.entry_quantity == size


def test_outside_window_skips_entries_and_keeps_exits():
    assert outside_window(plan("buy", 0)).code == "outside_window"
    reversal = outside_window(plan("buy", -3))
    assert (reversal.step, reversal.side, reversal.exit_quantity, reversal.code) == (
        Step.EXIT,
        "buy",
        3,
        "outside_window",
    )
    assert outside_window(plan("exit", 3)) == plan("exit", 3)


CHICAGO_DAY = [{"days": [0, 1, 2, 3, 4], "start": "08:30", "end": "15:00", "tz": "America/Chicago"}]


@pytest.mark.parametrize(
    ("at", "inside"),
    [
        (datetime(2026, 11, 23, 14, 30, tzinfo=UTC), True),  # Monday 08:30 Chicago (CST, UTC-6)
        (datetime(2026, 11, 23, 14, 29, tzinfo=UTC), False),
        (datetime(2026, 11, 23, 21, 0, tzinfo=UTC), False),  # 15:00 Chicago: the end is excluded
        (datetime(2026, 11, 21, 16, 0, tzinfo=UTC), False),  # Saturday
    ],
)
def test_within_windows_in_the_window_zone(at, inside):  # type: ignore[no-untyped-def]
    assert within_windows(parse_windows(CHICAGO_DAY), at) is inside


def test_overnight_window_runs_past_midnight_from_its_start_day():
    windows = parse_windows([{"days": [6], "start": "17:00", "end": "02:00", "tz": "UTC"}])  # Sunday evening
    assert within_windows(windows, datetime(2026, 11, 22, 18, 0, tzinfo=UTC))  # Sunday
    assert within_windows(windows, datetime(2026, 11, 23, 1, 0, tzinfo=UTC))  # Monday early
    assert not within_windows(windows, datetime(2026, 11, 23, 18, 0, tzinfo=UTC))  # Monday evening


def test_no_windows_means_always():
    assert within_windows(parse_windows([]), datetime(2026, 11, 21, tzinfo=UTC))


@pytest.mark.parametrize(
    "raw",
    [
        {"start": "08:30"},
        [{"start": "8h", "end": "15:00"}],
        [{"start": "08:30", "end": "15:00", "days": [7]}],
        [{"start": "08:30", "end": "15:00", "tz": "Mars/Base"}],
        ["x"],
    ],
)
def test_bad_windows_are_refused_with_a_code(raw):  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidWindows) as error:
        parse_windows(raw)
    assert error.value.code == "invalid_trading_windows"
