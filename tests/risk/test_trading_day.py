"""Pure tests of risk/trading_day.py: CME trade dates roll at 17:00 America/Chicago, DST included."""

from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from risk.trading_day import trade_date_closes_at, trade_date_for, trade_date_opens_at

CHICAGO = ZoneInfo("America/Chicago")
PURE = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        # Week before DST starts (CST, UTC-6): 17:00 Chicago is 23:00 UTC.
        (utc(2026, 3, 4, 22, 59), date(2026, 3, 4)),  # Wed 16:59 CST
        (utc(2026, 3, 4, 23, 0), date(2026, 3, 5)),  # Wed 17:00 CST
        (utc(2026, 3, 5, 22, 30), date(2026, 3, 5)),  # Thu 16:30 CST
        (utc(2026, 3, 6, 22, 59, 59), date(2026, 3, 6)),  # Fri 16:59:59 CST
        (utc(2026, 3, 6, 23, 0), date(2026, 3, 9)),  # Fri 17:00 CST -> Monday
        # Sunday 2026-03-08 clocks go forward at 02:00: 17:00 Chicago is now 22:00 UTC.
        (utc(2026, 3, 8, 21, 59), date(2026, 3, 9)),  # Sun 16:59 CDT, weekend -> Monday
        (utc(2026, 3, 8, 22, 0), date(2026, 3, 9)),  # Sun 17:00 CDT opens Monday
        (utc(2026, 3, 9, 21, 59, 59), date(2026, 3, 9)),  # Mon 16:59:59 CDT
        (utc(2026, 3, 9, 22, 0), date(2026, 3, 10)),  # Mon 17:00 CDT
        (utc(2026, 3, 10, 22, 30), date(2026, 3, 11)),  # Tue 17:30 CDT (was 16:30 a week earlier)
        # Week before DST ends (CDT, UTC-5).
        (utc(2026, 10, 29, 21, 59), date(2026, 10, 29)),  # Thu 16:59 CDT
        (utc(2026, 10, 29, 22, 0), date(2026, 10, 30)),  # Thu 17:00 CDT
        (utc(2026, 10, 30, 22, 0), date(2026, 11, 2)),  # Fri 17:00 CDT -> Monday
        # Sunday 2026-11-01 clocks go back at 02:00: 17:00 Chicago is 23:00 UTC again.
        (utc(2026, 11, 1, 6, 30), date(2026, 11, 2)),  # Sun 01:30 CDT, the first of the repeated hour
        (utc(2026, 11, 1, 7, 30), date(2026, 11, 2)),  # Sun 01:30 CST, the second one
        (utc(2026, 11, 1, 23, 0), date(2026, 11, 2)),  # Sun 17:00 CST opens Monday
        (utc(2026, 11, 2, 22, 0), date(2026, 11, 2)),  # Mon 16:00 CST: still Monday
        (utc(2026, 11, 2, 22, 59, 59), date(2026, 11, 2)),  # Mon 16:59:59 CST
        (utc(2026, 11, 2, 23, 0), date(2026, 11, 3)),  # Mon 17:00 CST
    ],
)
def test_trade_date_rolls_at_five_pm_chicago_across_dst(moment, expected):
    assert trade_date_for(moment) == expected


@pytest.mark.parametrize(
    "local",
    [
        datetime(2026, 5, 15, 17, 0),  # Friday 17:00
        datetime(2026, 5, 15, 23, 59),  # Friday night
        datetime(2026, 5, 16, 0, 0),  # Saturday midnight
        datetime(2026, 5, 16, 12, 0),  # Saturday noon
        datetime(2026, 5, 16, 18, 0),  # Saturday evening
        datetime(2026, 5, 17, 9, 0),  # Sunday morning
        datetime(2026, 5, 17, 16, 59, 59),  # Sunday just before the open
        datetime(2026, 5, 17, 17, 0),  # Sunday open
        datetime(2026, 5, 18, 16, 59),  # Monday before the close
    ],
)
def test_friday_evening_and_weekend_belong_to_monday(local):
    assert trade_date_for(local.replace(tzinfo=CHICAGO)) == date(2026, 5, 18)


def test_friday_before_five_pm_is_friday():
    assert trade_date_for(datetime(2026, 5, 15, 16, 59, 59, 999999, tzinfo=CHICAGO)) == date(2026, 5, 15)


def test_monday_five_pm_opens_tuesday():
    assert trade_date_for(datetime(2026, 5, 18, 17, 0, tzinfo=CHICAGO)) == date(2026, 5, 19)


def test_trade_date_uses_chicago_time_when_given_another_zone():
    london = ZoneInfo("Europe/London")
    # 22:59 in London (BST) on Wednesday is 16:59 in Chicago (CDT); 23:00 is 17:00.
    assert trade_date_for(datetime(2026, 6, 10, 22, 59, tzinfo=london)) == date(2026, 6, 10)
    assert trade_date_for(datetime(2026, 6, 10, 23, 0, tzinfo=london)) == date(2026, 6, 11)
    tokyo = ZoneInfo("Asia/Tokyo")
    # Thursday 07:00 in Tokyo is Wednesday 17:00 in Chicago.
    assert trade_date_for(datetime(2026, 6, 11, 7, 0, tzinfo=tokyo)) == date(2026, 6, 11)


def test_trade_date_for_raises_when_datetime_is_naive():
    with pytest.raises(ValueError, match="aware"):
        trade_date_for(datetime(2026, 3, 9, 12, 0))


@pytest.mark.parametrize(
    ("trade_date", "opens_at_utc"),
    [
        (date(2026, 3, 5), utc(2026, 3, 4, 23, 0)),  # Thursday: Wed 17:00 CST
        (date(2026, 3, 9), utc(2026, 3, 8, 22, 0)),  # Monday: Sunday 17:00 CDT, the day clocks changed
        (date(2026, 3, 10), utc(2026, 3, 9, 22, 0)),  # Tuesday: Mon 17:00 CDT
        (date(2026, 11, 2), utc(2026, 11, 1, 23, 0)),  # Monday: Sunday 17:00 CST, the day clocks changed
        (date(2026, 10, 30), utc(2026, 10, 29, 22, 0)),  # Friday: Thu 17:00 CDT
    ],
)
def test_trade_date_opens_at_five_pm_chicago_the_day_before(trade_date, opens_at_utc):
    opens = trade_date_opens_at(trade_date)
    assert opens == opens_at_utc
    assert opens.utcoffset() is not None
    assert opens.astimezone(CHICAGO).hour == 17


@pytest.mark.parametrize("trade_date", [date(2026, 3, 9), date(2026, 3, 10), date(2026, 11, 2), date(2026, 11, 3)])
def test_trade_date_starts_exactly_at_its_open(trade_date):
    opens = trade_date_opens_at(trade_date)
    assert trade_date_for(opens) == trade_date
    assert trade_date_for(opens + timedelta(hours=23, minutes=59)) == trade_date


@pytest.mark.parametrize(
    ("trade_date", "previous"),
    [
        (date(2026, 3, 10), date(2026, 3, 9)),
        (date(2026, 11, 3), date(2026, 11, 2)),
        (date(2026, 3, 13), date(2026, 3, 12)),
    ],
)
def test_moment_before_open_belongs_to_previous_trade_date_when_midweek(trade_date, previous):
    opens = trade_date_opens_at(trade_date)
    assert trade_date_for(opens - timedelta(microseconds=1)) == previous


@PURE
@given(moment=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)))
def test_every_moment_lies_between_its_trade_dates_open_and_the_next_open(moment):
    trade_date = trade_date_for(moment)
    following = trade_date + timedelta(days=3 if trade_date.weekday() == 4 else 1)

    assert trade_date.weekday() < 5
    assert moment < trade_date_opens_at(following)
    if trade_date.weekday() == 0:
        # Monday's trade date also takes Friday evening and the weekend.
        assert moment >= trade_date_opens_at(trade_date) - timedelta(days=2)
    else:
        assert moment >= trade_date_opens_at(trade_date)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        # Ordinary Tuesday in winter (CST, UTC-6).
        (utc(2026, 1, 13, 22, 59, 59), date(2026, 1, 13)),  # 16:59:59 CST
        (utc(2026, 1, 13, 23, 0, 0), date(2026, 1, 14)),  # 17:00:00 CST
        # Ordinary Tuesday in summer (CDT, UTC-5).
        (utc(2026, 7, 14, 21, 59, 59), date(2026, 7, 14)),  # 16:59:59 CDT
        (utc(2026, 7, 14, 22, 0, 0), date(2026, 7, 15)),  # 17:00:00 CDT
        (utc(2026, 7, 14, 23, 0, 0), date(2026, 7, 15)),  # 18:00 CDT (17:00 in winter)
        (utc(2026, 7, 15, 4, 59, 59), date(2026, 7, 15)),  # 23:59:59 CDT
        (utc(2026, 7, 15, 5, 0), date(2026, 7, 15)),  # Wednesday 00:00 CDT
        # Thursday evening opens Friday; Friday evening and the weekend belong to Monday.
        (utc(2026, 7, 16, 22, 0), date(2026, 7, 17)),
        (utc(2026, 7, 17, 21, 59, 59), date(2026, 7, 17)),  # Fri 16:59:59 CDT
        (utc(2026, 7, 17, 22, 0), date(2026, 7, 20)),  # Fri 17:00 CDT
        (utc(2026, 7, 18, 4, 59, 59), date(2026, 7, 20)),  # Fri 23:59:59 CDT
        (utc(2026, 7, 18, 5, 0), date(2026, 7, 20)),  # Sat 00:00 CDT
        (utc(2026, 7, 18, 22, 0), date(2026, 7, 20)),  # Sat 17:00 CDT
        (utc(2026, 7, 19, 21, 59, 59), date(2026, 7, 20)),  # Sun 16:59:59 CDT
        (utc(2026, 7, 19, 22, 0), date(2026, 7, 20)),  # Sun 17:00 CDT
        (utc(2026, 7, 20, 21, 59, 59), date(2026, 7, 20)),  # Mon 16:59:59 CDT
        (utc(2026, 7, 20, 22, 0), date(2026, 7, 21)),  # Mon 17:00 CDT
        # Spring forward, Sunday 2026-03-08 02:00 CST -> 03:00 CDT.
        (utc(2026, 3, 6, 22, 59, 59), date(2026, 3, 6)),  # Fri 16:59:59 CST
        (utc(2026, 3, 7, 23, 0), date(2026, 3, 9)),  # Sat 17:00 CST
        (utc(2026, 3, 8, 7, 59, 59), date(2026, 3, 9)),  # Sun 01:59:59 CST
        (utc(2026, 3, 8, 8, 0), date(2026, 3, 9)),  # Sun 03:00 CDT
        (utc(2026, 3, 8, 21, 59, 59), date(2026, 3, 9)),  # Sun 16:59:59 CDT
        (utc(2026, 3, 9, 22, 59, 59), date(2026, 3, 10)),  # Mon 17:59:59 CDT (16:59:59 in CST)
        # Fall back, Sunday 2026-11-01 02:00 CDT -> 01:00 CST.
        (utc(2026, 10, 30, 21, 59, 59), date(2026, 10, 30)),  # Fri 16:59:59 CDT
        (utc(2026, 10, 30, 22, 0), date(2026, 11, 2)),  # Fri 17:00 CDT
        (utc(2026, 10, 31, 22, 0), date(2026, 11, 2)),  # Sat 17:00 CDT
        (utc(2026, 11, 1, 22, 59, 59), date(2026, 11, 2)),  # Sun 16:59:59 CST
        (utc(2026, 11, 2, 21, 59, 59), date(2026, 11, 2)),  # Mon 15:59:59 CST (16:59:59 in CDT)
        (utc(2026, 11, 3, 22, 59, 59), date(2026, 11, 3)),  # Tue 16:59:59 CST
        (utc(2026, 11, 3, 23, 0), date(2026, 11, 4)),  # Tue 17:00 CST
    ],
)
def test_trade_date_for_utc_instants(moment, expected):
    assert trade_date_for(moment) == expected


@pytest.mark.parametrize(
    "tz",
    [UTC, CHICAGO, ZoneInfo("America/New_York"), timezone(timedelta(hours=-5)), timezone(timedelta(hours=9))],
)
def test_trade_date_depends_on_the_instant_not_the_zone_it_is_given_in(tz):
    before, at = utc(2026, 7, 14, 21, 59, 59), utc(2026, 7, 14, 22, 0)
    assert trade_date_for(before.astimezone(tz)) == date(2026, 7, 14)
    assert trade_date_for(at.astimezone(tz)) == date(2026, 7, 15)


@pytest.mark.parametrize(
    "naive",
    [datetime(2026, 7, 14, 16, 59, 59), datetime(2026, 7, 14, 17, 0), datetime(2026, 7, 18, 12, 0)],
)
def test_trade_date_for_raises_on_any_naive_datetime(naive):
    with pytest.raises(ValueError, match="aware"):
        trade_date_for(naive)


@PURE
@given(day=st.dates(min_value=date(2025, 1, 1), max_value=date(2027, 12, 31)).filter(lambda d: d.weekday() < 5))
def test_every_weekday_trade_date_opens_at_five_pm_chicago_and_owns_its_open(day):
    opens = trade_date_opens_at(day)
    assert opens.astimezone(CHICAGO).time() == time(17, 0)
    assert trade_date_for(opens) == day
    assert trade_date_for(opens.astimezone(UTC)) == day


@pytest.mark.parametrize(
    ("trade_date", "closes_at_utc", "next_trade_date"),
    [
        (date(2026, 3, 6), utc(2026, 3, 6, 23, 0), date(2026, 3, 9)),  # Friday, CST: Monday's trade date follows
        (date(2026, 3, 9), utc(2026, 3, 9, 22, 0), date(2026, 3, 10)),  # Monday, CDT
        (date(2026, 10, 30), utc(2026, 10, 30, 22, 0), date(2026, 11, 2)),  # Friday, CDT
        (date(2026, 11, 2), utc(2026, 11, 2, 23, 0), date(2026, 11, 3)),  # Monday, CST
    ],
)
def test_trade_date_closes_at_five_pm_chicago_on_its_own_day(trade_date, closes_at_utc, next_trade_date):
    closes = trade_date_closes_at(trade_date)
    assert closes == closes_at_utc
    assert trade_date_for(closes - timedelta(microseconds=1)) == trade_date
    assert trade_date_for(closes) == next_trade_date
