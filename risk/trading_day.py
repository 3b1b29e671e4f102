"""CME trade dates (pure): a trade date opens at 17:00 America/Chicago the evening before.

Sunday's 17:00 open is Monday's trade date; Friday evening and the weekend also belong to
Monday. Exchange holidays are not modelled here yet.
"""

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

CME_TZ = ZoneInfo("America/Chicago")
ROLLOVER = time(17, 0)


def trade_date_for(moment: datetime) -> date:
    if moment.tzinfo is None:
        raise ValueError("trade_date_for needs an aware datetime.")
    local = moment.astimezone(CME_TZ)
    day = local.date() + timedelta(days=1) if local.time() >= ROLLOVER else local.date()
    while day.weekday() >= 5:  # Saturday, Sunday -> Monday
        day += timedelta(days=1)
    return day


def trade_date_opens_at(trade_date: date) -> datetime:
    """The moment (aware, Chicago time) the given trade date starts: 17:00 the calendar day before
    (Monday's opens on Sunday)."""
    return datetime.combine(trade_date - timedelta(days=1), ROLLOVER, tzinfo=CME_TZ)


def trade_date_closes_at(trade_date: date) -> datetime:
    """The moment (aware, Chicago time) the given trade date ends and the next one opens."""
    return datetime.combine(trade_date, ROLLOVER, tzinfo=CME_TZ)
