"""When an account may hold and open positions (pure): trading windows, the flat-by time with
early closes, and news blackouts.

Times of a program are in its own time zone; early closes are in Chicago time (CME's clock).
The flat-by time belongs to a trade date: Topstep's 15:10 CT on trade date D is 15:10 on the
calendar day D, and trading resumes at the next trade date's 17:00 CT open.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from risk.trading_day import CME_TZ, trade_date_for, trade_date_opens_at


@dataclass(frozen=True)
class Window:
    weekday: int  # Monday 0 .. Sunday 6, of the window's start
    starts_at: time
    ends_at: time  # not after starts_at: the window runs past midnight


@dataclass(frozen=True)
class EarlyClose:
    on_date: date | None  # None: every trade date
    roots: frozenset[str]  # empty: every product
    closes_at: time  # Chicago
    reason: str

    def applies(self, trade_date: date, root: str) -> bool:
        return (self.on_date is None or self.on_date == trade_date) and (not self.roots or root in self.roots)


@dataclass(frozen=True)
class Release:
    title: str
    at: datetime
    roots: frozenset[str]  # empty: every product

    def affects(self, root: str) -> bool:
        return not self.roots or root in self.roots


def within_windows(moment: datetime, windows: Sequence[Window], tz_name: str) -> bool:
    """True when no windows are set (no hours rule) or `moment` falls inside one of them."""
    if not windows:
        return True
    local = moment.astimezone(ZoneInfo(tz_name))
    for window in windows:
        for back in (0, 1):  # a window that started yesterday may run past midnight into today
            day = local.date() - timedelta(days=back)
            if day.weekday() != window.weekday:
                continue
            start = datetime.combine(day, window.starts_at, tzinfo=local.tzinfo)
            end_day = day if window.ends_at > window.starts_at else day + timedelta(days=1)
            end = datetime.combine(end_day, window.ends_at, tzinfo=local.tzinfo)
            if start <= local < end:
                return True
    return False


def flat_by_deadline(
    *, trade_date: date, root: str, flat_by: time | None, tz_name: str, early_closes: Iterable[EarlyClose] = ()
) -> tuple[datetime, str] | None:
    """When positions in `root` must be flat on `trade_date`, and why; None when no rule."""
    candidates: list[tuple[datetime, str]] = []
    if flat_by is not None:
        candidates.append(
            (
                datetime.combine(trade_date, flat_by, tzinfo=ZoneInfo(tz_name)),
                f"the program's flat-by time {flat_by:%H:%M}",
            )
        )
    for close in early_closes:
        if close.applies(trade_date, root):
            candidates.append(
                (
                    datetime.combine(trade_date, close.closes_at, tzinfo=CME_TZ),
                    f"{close.reason} ({close.closes_at:%H:%M} CT)",
                )
            )
    return min(candidates, key=lambda c: c[0]) if candidates else None


def past_flat_by(
    moment: datetime, *, root: str, flat_by: time | None, tz_name: str, early_closes: Iterable[EarlyClose] = ()
) -> str | None:
    """Why `root` may not be held at `moment` (after this trade date's deadline), else None."""
    trade_date = trade_date_for(moment)
    deadline = flat_by_deadline(
        trade_date=trade_date, root=root, flat_by=flat_by, tz_name=tz_name, early_closes=early_closes
    )
    if deadline is None:
        return None
    at, why = deadline
    # The deadline of a trade date can only fall inside that trade date's session.
    if trade_date_opens_at(trade_date) <= at <= moment:
        return why
    return None


def active_blackout(
    moment: datetime, *, root: str, releases: Iterable[Release], minutes_before: int, minutes_after: int
) -> Release | None:
    if not (minutes_before or minutes_after):
        return None
    for release in releases:
        if release.affects(root) and (
            release.at - timedelta(minutes=minutes_before) <= moment <= release.at + timedelta(minutes=minutes_after)
        ):
            return release
    return None
