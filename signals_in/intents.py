"""What a signal means for one account given its position (pure), and its trading windows.

TradersPost semantics, decided here once:

- buy / sell while flat: enter (long / short) with the subscription's size.
- buy while long (sell while short): add when the subscription allows adds, else skipped
  (`already_long` / `already_short`).
- buy while short (sell while long): with reversals allowed, exit the whole position, then enter
  the other side once the exit has filled; without, exit only (the strategy is no longer on that
  side, so staying in would contradict it) and say why (`reversal_not_allowed`).
- buy with sentiment short (sell with sentiment long): the strategy stays on its side with less:
  a partial exit of the signal's quantity.
- sentiment flat: exit the whole position, whatever the action; never reverses.
- exit: closes fully, or by the signal's quantity (a partial exit).
- add: scales in on the side held (and named by the sentiment, when given); needs a position.
- cancel: cancel the working orders of the instrument (not a position's stop and target).

Exits never exceed what is held minus what is already working to close it. Entries outside the
subscription's trading windows are skipped (`outside_window`); exits and cancels always pass, and
a reversal outside its windows exits only.
"""

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from config.errors import DomainError

ACTIONS = frozenset({"buy", "sell", "exit", "cancel", "add"})
DEFAULT_WINDOW_TZ = "America/Chicago"


class Step(StrEnum):
    ENTER = "enter"  # open a position (or add to one: `add` plans)
    EXIT = "exit"  # reduce or close a position
    REVERSE = "reverse"  # exit all, then enter the other side when the exit has filled
    CANCEL = "cancel"
    SKIP = "skip"


@dataclass(frozen=True)
class Plan:
    step: Step
    side: str = ""  # the entry's side (buy / sell) for ENTER / REVERSE; the exit's side for EXIT
    entry_quantity: int = 0
    exit_quantity: int = 0
    code: str = ""  # skipped: why; otherwise a note (reversal_not_allowed, outside_window, ...)
    detail: str = ""

    @property
    def opens_risk(self) -> bool:
        return self.step in (Step.ENTER, Step.REVERSE)


@dataclass(frozen=True)
class SignalFacts:
    action: str
    sentiment: str = ""  # long / short / flat / blank
    partial_exit_quantity: int | None = None  # contracts a partial exit takes off this account


@dataclass(frozen=True)
class AccountFacts:
    held: int  # signed position in the traded instrument
    closing: int = 0  # unfilled quantity already working against the position (not its stop/target)
    allow_adds: bool = False
    allow_reversals: bool = True


def _skip(code: str, detail: str) -> Plan:
    return Plan(Step.SKIP, code=code, detail=detail)


def _word(held: int) -> str:
    return "long" if held > 0 else "short"


def _exit(account: AccountFacts, wanted: int | None, *, note: str = "", detail: str = "") -> Plan:
    """Take `wanted` (None: all) off the position, never more than is left to close."""
    held = account.held
    if held == 0:
        return _skip("no_position", "The account is flat: nothing to exit.")
    left = abs(held) - max(account.closing, 0)
    if left <= 0:
        return _skip("exit_in_flight", f"Orders closing the whole {_word(held)} {abs(held)} are already working.")
    quantity = left if wanted is None else min(max(wanted, 1), left)
    return Plan(Step.EXIT, side="sell" if held > 0 else "buy", exit_quantity=quantity, code=note, detail=detail)


def plan_for(signal: SignalFacts, account: AccountFacts, *, entry_quantity: int) -> Plan:
    """What the signal does on this account. `entry_quantity` is the sized quantity for entries
    (0: too small, see signals_in.sizing)."""
    action, sentiment, held = signal.action, signal.sentiment, account.held
    if action not in ACTIONS:
        return _skip("unknown_action", f"Unknown action {action!r}.")
    if action == "cancel":
        return Plan(Step.CANCEL)
    if sentiment == "flat":
        return _exit(account, None)
    if action == "exit":
        return _exit(account, signal.partial_exit_quantity)
    if action == "add":
        if held == 0:
            return _skip("no_position_to_add", "An add needs a position to scale into; the account is flat.")
        if sentiment in ("long", "short") and sentiment != _word(held):
            return _skip(
                "add_side_mismatch", f"The add is for a {sentiment} position; the account is {_word(held)} {abs(held)}."
            )
        if entry_quantity < 1:
            return _skip("size_zero", "Sizing gives less than one contract.")
        return Plan(Step.ENTER, side="buy" if held > 0 else "sell", entry_quantity=entry_quantity)

    long = action == "buy"
    side = "buy" if long else "sell"
    if sentiment in ("long", "short") and (sentiment == "long") != long:
        # buy + sentiment short: cover part of a short and stay short (and the reverse).
        if held == 0 or (held > 0) == long:
            return _skip(
                "no_position",
                f"A {action} that leaves the strategy {sentiment} reduces a {sentiment} position; "
                + ("the account is flat." if held == 0 else f"the account is {_word(held)}."),
            )
        return _exit(account, signal.partial_exit_quantity)
    if held == 0:
        if entry_quantity < 1:
            return _skip("size_zero", "Sizing gives less than one contract.")
        return Plan(Step.ENTER, side=side, entry_quantity=entry_quantity)
    if (held > 0) == long:
        if not account.allow_adds:
            return _skip(
                f"already_{_word(held)}",
                f"The account is already {_word(held)} {abs(held)}; adds are off for this subscription.",
            )
        if entry_quantity < 1:
            return _skip("size_zero", "Sizing gives less than one contract.")
        return Plan(Step.ENTER, side=side, entry_quantity=entry_quantity)
    # Against the position.
    if not account.allow_reversals:
        return _exit(
            account,
            None,
            note="reversal_not_allowed",
            detail=f"Closed the {_word(held)}; reversals are off for this subscription, so no new position.",
        )
    if entry_quantity < 1:
        return _exit(account, None, note="size_zero", detail="Closed the position; sizing gives no contract to enter.")
    exit_plan = _exit(account, None)
    if exit_plan.step != Step.EXIT:
        return exit_plan
    if exit_plan.exit_quantity < abs(held):
        # Part of the position is already being closed by someone else: do not race it.
        return _skip("exit_in_flight", "Part of the position is already being closed; not reversing over it.")
    return Plan(Step.REVERSE, side=side, entry_quantity=entry_quantity, exit_quantity=exit_plan.exit_quantity)


def outside_window(plan: Plan) -> Plan:
    """The plan when the subscription's trading windows are closed: exits and cancels as they are,
    a reversal exits only, entries are skipped."""
    if plan.step == Step.REVERSE:
        return Plan(
            Step.EXIT,
            side=plan.side,  # a reversal's entry side is also the side that closes the position
            exit_quantity=plan.exit_quantity,
            code="outside_window",
            detail="Closed the position; the subscription's trading windows are closed, so no new position.",
        )
    if plan.step == Step.ENTER:
        return _skip("outside_window", "Outside the subscription's trading windows.")
    return plan


# -- Trading windows ---------------------------------------------------------------------------


class InvalidWindows(DomainError):
    code = "invalid_trading_windows"


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # weekdays the window opens on, Monday = 0
    start: time
    end: time  # before start: the window runs past midnight into the next day
    tz: ZoneInfo


def _time(value: Any, field: str) -> time:
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        raise InvalidWindows(f"Trading window {field} {value!r} is not a time like 08:30.") from None


def parse_windows(raw: Any) -> list[Window]:
    """[{"days": [0..6], "start": "08:30", "end": "15:00", "tz": "America/Chicago"}, ...];
    days default to every day, tz to America/Chicago."""
    if not raw:
        return []
    if not isinstance(raw, list):
        raise InvalidWindows("Trading windows must be a list of windows.")
    windows = []
    for item in raw:
        if not isinstance(item, dict) or "start" not in item or "end" not in item:
            raise InvalidWindows(f"A trading window needs a start and an end: {item!r}.")
        days = item.get("days", list(range(7)))
        if not isinstance(days, list) or not all(isinstance(d, int) and 0 <= d <= 6 for d in days):
            raise InvalidWindows(f"Trading window days must be weekday numbers 0 (Monday) to 6: {days!r}.")
        try:
            tz = ZoneInfo(str(item.get("tz") or DEFAULT_WINDOW_TZ))
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidWindows(f"Unknown time zone {item.get('tz')!r} in a trading window.") from None
        windows.append(Window(frozenset(days), _time(item["start"], "start"), _time(item["end"], "end"), tz))
    return windows


def within_windows(windows: list[Window], at: datetime) -> bool:
    """True when `at` (aware) falls in one of the windows, or there are none."""
    if not windows:
        return True
    for window in windows:
        local = at.astimezone(window.tz)
        now, day = local.time(), local.weekday()
        if window.start <= window.end:
            if day in window.days and window.start <= now < window.end:
                return True
        elif (day in window.days and now >= window.start) or (
            (local - timedelta(days=1)).weekday() in window.days and now < window.end
        ):
            return True
    return False
