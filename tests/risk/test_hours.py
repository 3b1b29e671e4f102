"""Pure tests of risk/hours.py: trading windows, flat-by deadlines with early closes, news blackouts."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from risk.hours import EarlyClose, Release, Window, active_blackout, flat_by_deadline, past_flat_by, within_windows

CHICAGO = ZoneInfo("America/Chicago")
NEW_YORK = ZoneInfo("America/New_York")
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def ct(*args: int) -> datetime:
    return datetime(*args, tzinfo=CHICAGO)


def et(*args: int) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK)


# -- Trading windows ------------------------------------------------------------------------------

RTH_CHICAGO = tuple(Window(day, time(8, 30), time(15, 0)) for day in (MON, TUE, WED, THU, FRI))
# CME's week: Sunday 17:00 to Friday 16:00, with the daily 16:00-17:00 break.
GLOBEX = tuple(Window(day, time(17, 0), time(16, 0)) for day in (SUN, MON, TUE, WED, THU))
RTH_NEW_YORK = tuple(Window(day, time(9, 30), time(16, 0)) for day in (MON, TUE, WED, THU, FRI))


def test_no_windows_means_no_hours_rule():
    assert within_windows(utc(2026, 5, 16, 12, 0), (), "America/Chicago")


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (ct(2026, 5, 12, 8, 29, 59), False),
        (ct(2026, 5, 12, 8, 30), True),  # the start is inside
        (ct(2026, 5, 12, 14, 59, 59), True),
        (ct(2026, 5, 12, 15, 0), False),  # the end is outside
        (ct(2026, 5, 16, 10, 0), False),  # Saturday
        (ct(2026, 5, 17, 10, 0), False),  # Sunday
        (utc(2026, 5, 12, 13, 30), True),  # 08:30 CDT
        (utc(2026, 5, 12, 13, 29), False),
        (utc(2026, 1, 13, 14, 30), True),  # 08:30 CST
        (utc(2026, 1, 13, 14, 29), False),
        (et(2026, 5, 12, 9, 30), True),  # 08:30 CT given in New York time
    ],
)
def test_within_windows_same_day_window(moment, expected):
    assert within_windows(moment, RTH_CHICAGO, "America/Chicago") is expected


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (ct(2026, 5, 17, 16, 59, 59), False),  # Sunday before the open
        (ct(2026, 5, 17, 17, 0), True),  # Sunday open
        (ct(2026, 5, 17, 23, 59, 59), True),
        (ct(2026, 5, 18, 0, 0), True),  # past midnight into Monday: Sunday's window still runs
        (ct(2026, 5, 18, 15, 59, 59), True),
        (ct(2026, 5, 18, 16, 0), False),  # the daily break
        (ct(2026, 5, 18, 16, 59), False),
        (ct(2026, 5, 18, 17, 0), True),  # Monday's window
        (ct(2026, 5, 22, 15, 59), True),  # Friday, in Thursday's window
        (ct(2026, 5, 22, 16, 0), False),
        (ct(2026, 5, 22, 17, 0), False),  # no Friday evening window
        (ct(2026, 5, 23, 1, 0), False),  # Saturday
        # DST starts Sunday 2026-03-08: 17:00 CDT is 22:00 UTC.
        (utc(2026, 3, 8, 21, 59, 59), False),
        (utc(2026, 3, 8, 22, 0), True),
        (utc(2026, 3, 9, 20, 59), True),  # Monday 15:59 CDT
        (utc(2026, 3, 9, 21, 0), False),  # Monday 16:00 CDT (would be 15:00 in CST)
        # DST ends Sunday 2026-11-01: 17:00 CST is 23:00 UTC.
        (utc(2026, 11, 1, 22, 59, 59), False),
        (utc(2026, 11, 1, 23, 0), True),
        (utc(2026, 11, 2, 21, 59), True),  # Monday 15:59 CST
        (utc(2026, 11, 2, 22, 0), False),
    ],
)
def test_within_windows_crossing_midnight_and_weekdays_in_chicago(moment, expected):
    assert within_windows(moment, GLOBEX, "America/Chicago") is expected


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (utc(2026, 7, 14, 13, 30), True),  # 09:30 EDT
        (utc(2026, 7, 14, 13, 29, 59), False),
        (utc(2026, 7, 14, 19, 59, 59), True),
        (utc(2026, 7, 14, 20, 0), False),  # 16:00 EDT
        (utc(2026, 1, 13, 14, 30), True),  # 09:30 EST
        (utc(2026, 1, 13, 13, 30), False),  # 08:30 EST
        (ct(2026, 7, 14, 8, 30), True),  # 09:30 ET given in Chicago time
        (ct(2026, 7, 14, 15, 0), False),
    ],
)
def test_within_windows_in_new_york(moment, expected):
    assert within_windows(moment, RTH_NEW_YORK, "America/New_York") is expected


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (et(2026, 5, 15, 19, 59), False),
        (et(2026, 5, 15, 20, 0), True),  # Friday 20:00 ET
        (et(2026, 5, 16, 2, 59, 59), True),  # into Saturday
        (et(2026, 5, 16, 3, 0), False),
        (et(2026, 5, 16, 20, 0), False),  # Saturday evening has no window
        (et(2026, 5, 14, 23, 0), False),  # Thursday evening has no window
        # Saturday 22:00 to Sunday 03:00 over the spring-forward night (02:00 EST -> 03:00 EDT).
        (utc(2026, 3, 8, 6, 59, 59), True),  # 01:59:59 EST
        (utc(2026, 3, 8, 7, 0), False),  # 03:00 EDT: the window has ended
    ],
)
def test_within_windows_crossing_midnight_into_the_weekend_in_new_york(moment, expected):
    windows = (Window(FRI, time(20, 0), time(3, 0)), Window(SAT, time(22, 0), time(3, 0)))
    assert within_windows(moment, windows, "America/New_York") is expected


def test_within_windows_equal_start_and_end_is_a_whole_day():
    windows = (Window(MON, time(0, 0), time(0, 0)),)
    assert within_windows(ct(2026, 5, 18, 0, 0), windows, "America/Chicago")
    assert within_windows(ct(2026, 5, 18, 23, 59, 59), windows, "America/Chicago")
    assert not within_windows(ct(2026, 5, 19, 0, 0), windows, "America/Chicago")
    assert not within_windows(ct(2026, 5, 17, 23, 59), windows, "America/Chicago")


# -- Flat-by deadline ---------------------------------------------------------------------------------

AGS = EarlyClose(None, frozenset({"ZC", "ZW"}), time(13, 20), "grains close")
BLACK_FRIDAY = EarlyClose(date(2026, 11, 27), frozenset(), time(12, 15), "Thanksgiving early close")
CL_HOLIDAY = EarlyClose(date(2026, 11, 27), frozenset({"CL"}), time(12, 45), "energy early close")
LATE_CLOSE = EarlyClose(None, frozenset(), time(15, 45), "late close")
EVERYDAY_NOON = EarlyClose(None, frozenset(), time(12, 0), "noon close")
TUESDAY = date(2026, 5, 12)


def test_flat_by_deadline_is_none_without_rules():
    assert flat_by_deadline(trade_date=TUESDAY, root="ES", flat_by=None, tz_name="America/Chicago") is None
    closes = (AGS, BLACK_FRIDAY)
    assert (
        flat_by_deadline(trade_date=TUESDAY, root="ES", flat_by=None, tz_name="America/Chicago", early_closes=closes)
        is None
    )


@pytest.mark.parametrize(
    ("trade_date", "root", "flat_by", "tz_name", "early_closes", "expected_at", "why"),
    [
        (TUESDAY, "ES", time(15, 10), "America/Chicago", (), ct(2026, 5, 12, 15, 10), "flat-by time 15:10"),
        # Apex 16:59 ET is 15:59 CT.
        (TUESDAY, "ES", time(16, 59), "America/New_York", (), ct(2026, 5, 12, 15, 59), "flat-by time 16:59"),
        # A product-specific daily close applies only to its roots.
        (TUESDAY, "ZC", time(15, 10), "America/Chicago", (AGS,), ct(2026, 5, 12, 13, 20), "grains close (13:20 CT)"),
        (TUESDAY, "ES", time(15, 10), "America/Chicago", (AGS,), ct(2026, 5, 12, 15, 10), "flat-by time 15:10"),
        # A dated close for every product applies only on its date.
        (
            date(2026, 11, 27),
            "ES",
            time(15, 10),
            "America/Chicago",
            (AGS, BLACK_FRIDAY),
            ct(2026, 11, 27, 12, 15),
            "Thanksgiving early close (12:15 CT)",
        ),
        (date(2026, 11, 30), "ES", time(15, 10), "America/Chicago", (BLACK_FRIDAY,), ct(2026, 11, 30, 15, 10), "15:10"),
        # Several apply: the earliest wins.
        (
            date(2026, 11, 27),
            "CL",
            time(15, 10),
            "America/Chicago",
            (CL_HOLIDAY, BLACK_FRIDAY),
            ct(2026, 11, 27, 12, 15),
            "Thanksgiving",
        ),
        (
            date(2026, 11, 27),
            "CL",
            time(15, 10),
            "America/Chicago",
            (CL_HOLIDAY, LATE_CLOSE),
            ct(2026, 11, 27, 12, 45),
            "energy early close (12:45 CT)",
        ),
        (date(2026, 11, 27), "ZC", None, "America/Chicago", (AGS, BLACK_FRIDAY), ct(2026, 11, 27, 12, 15), "Thanks"),
        # An early close later than the flat-by time changes nothing.
        (TUESDAY, "ES", time(15, 10), "America/Chicago", (LATE_CLOSE,), ct(2026, 5, 12, 15, 10), "15:10"),
        # Without a program flat-by, an early close alone is a deadline; early closes are in Chicago time.
        (TUESDAY, "ES", None, "America/New_York", (LATE_CLOSE,), ct(2026, 5, 12, 15, 45), "late close (15:45 CT)"),
        # A daily close for all products applies to any root.
        (TUESDAY, "MNQ", time(15, 10), "America/Chicago", (EVERYDAY_NOON,), ct(2026, 5, 12, 12, 0), "noon close"),
        # In the winter too (CST).
        (date(2026, 1, 13), "ES", time(16, 59), "America/New_York", (), utc(2026, 1, 13, 21, 59), "16:59"),
    ],
)
def test_flat_by_deadline_is_the_earliest_applicable(
    trade_date, root, flat_by, tz_name, early_closes, expected_at, why
):
    deadline = flat_by_deadline(
        trade_date=trade_date, root=root, flat_by=flat_by, tz_name=tz_name, early_closes=early_closes
    )
    assert deadline is not None
    at, reason = deadline
    assert at == expected_at
    assert at.utcoffset() is not None
    assert why in reason


@pytest.mark.parametrize(
    ("moment", "past"),
    [
        # An ordinary Tuesday, CDT (UTC-5).
        (ct(2026, 5, 12, 8, 0), False),
        (ct(2026, 5, 12, 15, 9, 59), False),
        (ct(2026, 5, 12, 15, 10), True),  # "flat before 15:10:00"
        (ct(2026, 5, 12, 15, 30), True),
        (ct(2026, 5, 12, 16, 59, 59), True),
        (ct(2026, 5, 12, 17, 0), False),  # the next trade date is open
        (ct(2026, 5, 12, 22, 0), False),
        (ct(2026, 5, 13, 2, 0), False),
        (ct(2026, 5, 13, 15, 10), True),
        # Friday into the weekend and Monday.
        (ct(2026, 5, 15, 15, 30), True),
        (ct(2026, 5, 15, 17, 0), False),
        (ct(2026, 5, 16, 12, 0), False),
        (ct(2026, 5, 17, 17, 0), False),
        (ct(2026, 5, 18, 15, 11), True),
        # The week before DST starts (CST, UTC-6): 15:10 CT is 21:10 UTC.
        (utc(2026, 3, 6, 21, 9, 59), False),
        (utc(2026, 3, 6, 21, 10), True),
        (utc(2026, 3, 6, 23, 0), False),  # Friday 17:00 CST
        # Monday after DST started (CDT, UTC-5): 15:10 CT is 20:10 UTC.
        (utc(2026, 3, 9, 20, 9, 59), False),
        (utc(2026, 3, 9, 20, 10), True),
        (utc(2026, 3, 9, 21, 9), True),  # 16:09 CDT (a fixed CST offset would say 15:09)
        (utc(2026, 3, 9, 22, 0), False),  # 17:00 CDT
        # The week before DST ends (CDT).
        (utc(2026, 10, 30, 20, 9), False),
        (utc(2026, 10, 30, 20, 10), True),
        # Monday after DST ended (CST, UTC-6).
        (utc(2026, 11, 2, 20, 10), False),  # 14:10 CST (a fixed CDT offset would say 15:10)
        (utc(2026, 11, 2, 21, 9, 59), False),
        (utc(2026, 11, 2, 21, 10), True),
        (utc(2026, 11, 2, 22, 59, 59), True),
        (utc(2026, 11, 2, 23, 0), False),  # 17:00 CST
    ],
)
def test_past_flat_by_from_the_deadline_until_the_next_open(moment, past):
    why = past_flat_by(moment, root="ES", flat_by=time(15, 10), tz_name="America/Chicago")
    assert (why is not None) is past
    if past:
        assert why == "the program's flat-by time 15:10"


@pytest.mark.parametrize(
    ("moment", "past"),
    [
        (utc(2026, 5, 12, 20, 58, 59), False),  # 16:58:59 EDT
        (utc(2026, 5, 12, 20, 59), True),  # 16:59 EDT
        (utc(2026, 5, 12, 21, 30), True),  # 17:30 EDT is still 16:30 CT
        (utc(2026, 5, 12, 22, 0), False),  # 17:00 CT opens the next trade date
        (utc(2026, 1, 13, 21, 59), True),  # 16:59 EST
        (utc(2026, 1, 13, 21, 58), False),
        (utc(2026, 1, 13, 23, 0), False),  # 17:00 CST
    ],
)
def test_past_flat_by_in_new_york_time(moment, past):
    why = past_flat_by(moment, root="ES", flat_by=time(16, 59), tz_name="America/New_York")
    assert (why is not None) is past


@pytest.mark.parametrize(
    ("moment", "root", "expected"),
    [
        (ct(2026, 5, 12, 14, 0), "ZC", "grains close (13:20 CT)"),
        (ct(2026, 5, 12, 14, 0), "ES", None),
        (ct(2026, 5, 12, 13, 19), "ZC", None),
        (ct(2026, 11, 27, 12, 30), "ES", "Thanksgiving early close (12:15 CT)"),
        (ct(2026, 11, 27, 12, 30), "ZC", "Thanksgiving early close (12:15 CT)"),
        (ct(2026, 11, 30, 12, 30), "ES", None),
        (ct(2026, 11, 27, 17, 0), "ES", None),  # Monday's trade date
    ],
)
def test_past_flat_by_with_early_closes(moment, root, expected):
    why = past_flat_by(moment, root=root, flat_by=None, tz_name="America/Chicago", early_closes=(AGS, BLACK_FRIDAY))
    assert why == expected


def test_past_flat_by_is_none_without_rules():
    assert past_flat_by(ct(2026, 5, 12, 16, 30), root="ES", flat_by=None, tz_name="America/Chicago") is None


# -- News blackouts ----------------------------------------------------------------------------------

NFP = Release("Nonfarm payrolls", utc(2026, 5, 8, 12, 30), frozenset())
EIA = Release("EIA crude inventories", utc(2026, 5, 13, 14, 30), frozenset({"CL", "MCL"}))
FOMC = Release("FOMC", utc(2026, 5, 13, 18, 0), frozenset({"ES", "MES", "NQ", "MNQ"}))
RELEASES = (NFP, EIA, FOMC)


@pytest.mark.parametrize(
    ("moment", "root", "expected"),
    [
        (utc(2026, 5, 8, 12, 27, 59, 999999), "ES", None),
        (utc(2026, 5, 8, 12, 28), "ES", NFP),  # exactly 2 minutes before: included
        (utc(2026, 5, 8, 12, 30), "CL", NFP),  # no roots: every product
        (utc(2026, 5, 8, 12, 33), "ES", NFP),  # exactly 3 minutes after: included
        (utc(2026, 5, 8, 12, 33, 0, 1), "ES", None),
        (ct(2026, 5, 8, 7, 29), "ES", NFP),  # Chicago time compares as the same instant
        (utc(2026, 5, 13, 14, 30), "CL", EIA),
        (utc(2026, 5, 13, 14, 30), "ES", None),  # root filtering
        (utc(2026, 5, 13, 17, 58), "MES", FOMC),
        (utc(2026, 5, 13, 17, 58), "CL", None),
        (utc(2026, 5, 13, 12, 0), "ES", None),
    ],
)
def test_active_blackout_window_edges_and_roots(moment, root, expected):
    assert active_blackout(moment, root=root, releases=RELEASES, minutes_before=2, minutes_after=3) == expected


def test_active_blackout_is_none_when_no_minutes_are_set():
    assert active_blackout(NFP.at, root="ES", releases=RELEASES, minutes_before=0, minutes_after=0) is None


@pytest.mark.parametrize(
    ("before", "after", "offset_minutes", "expected"),
    [
        (5, 0, -5, NFP),
        (5, 0, 0, NFP),  # the release minute itself
        (5, 0, 1, None),
        (0, 5, -1, None),
        (0, 5, 0, NFP),
        (0, 5, 5, NFP),
        (0, 5, 6, None),
    ],
)
def test_active_blackout_one_sided(before, after, offset_minutes, expected):
    moment = NFP.at + timedelta(minutes=offset_minutes)
    assert active_blackout(moment, root="ES", releases=(NFP,), minutes_before=before, minutes_after=after) == expected


def test_active_blackout_returns_the_first_release_that_applies():
    twin = Release("Retail sales", NFP.at, frozenset())
    assert active_blackout(NFP.at, root="ES", releases=(NFP, twin), minutes_before=1, minutes_after=1) == NFP
    assert active_blackout(NFP.at, root="ES", releases=(twin, NFP), minutes_before=1, minutes_after=1) == twin
    assert active_blackout(NFP.at, root="ES", releases=(), minutes_before=1, minutes_after=1) is None
