"""The calendar of the gateway: half-hour intervals, a site's local days, and UTC months.

Readings sit on UTC half hours (an interval is named by its start). A reading belongs to the
local day, in the site's IANA timezone, in which its interval starts. Partitions of `reading`
are by UTC month. The portal's named periods (the seed's names): `prev-hr` is the last two
completed half hours; `current-day` the local day so far; `current-week` Monday to Sunday of this
local week; `current-month` and `prev-month` calendar months (on the 1st, `prev-month` is the
whole month that just ended). Every such computation is here, so they cannot drift apart.
"""

from __future__ import annotations

import calendar
import datetime as dt
import zoneinfo
from dataclasses import dataclass

from storage.errors import InvalidInput

HALF_HOUR = dt.timedelta(minutes=30)
_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def interval_of(timestamp: dt.datetime) -> dt.datetime:
    """The UTC start of the half hour a packet reports: floor to the half hour, minus 30 minutes.

    A packet at 00:31 (or exactly 00:30) reports 00:00–00:30.
    """
    utc = timestamp.astimezone(dt.UTC)
    end = utc.replace(minute=utc.minute - utc.minute % 30, second=0, microsecond=0)
    return end - HALF_HOUR


def floor_half_hour(instant: dt.datetime) -> dt.datetime:
    """The UTC half-hour boundary at or before an instant (ingest's intervals sit on these)."""
    return instant - (instant - _EPOCH) % HALF_HOUR


def zone(timezone: str) -> zoneinfo.ZoneInfo:
    """The IANA timezone object."""
    return zoneinfo.ZoneInfo(timezone)


def day_bounds(timezone: str, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants where a local day starts and the next one starts."""
    tz = zone(timezone)
    start = dt.datetime.combine(day, dt.time(0), tzinfo=tz)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=tz)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def day_intervals(timezone: str, day: dt.date) -> list[dt.datetime]:
    """UTC starts of the day's half hours: 48, or 46/50 on DST change days."""
    start, end = day_bounds(timezone, day)
    # Intervals sit on UTC half hours; in a zone offset by :15 or :45 the first one starts
    # after local midnight (the interval across midnight belongs to the day it starts in).
    first = start + (-(start - _EPOCH)) % HALF_HOUR
    count = -(-(end - first) // HALF_HOUR)  # ceiling division of timedeltas
    return [first + i * HALF_HOUR for i in range(count)]


def local_day(timezone: str, instant: dt.datetime) -> dt.date:
    """The local calendar day an instant falls in."""
    return instant.astimezone(zone(timezone)).date()


def month_start(instant: dt.datetime) -> dt.datetime:
    """The first instant (UTC) of the UTC month holding `instant`."""
    utc = instant.astimezone(dt.UTC)
    return dt.datetime(utc.year, utc.month, 1, tzinfo=dt.UTC)


def add_months(month: dt.datetime, months: int) -> dt.datetime:
    """The start of the month `months` after (or before) the month starting at `month`."""
    index = month.year * 12 + month.month - 1 + months
    return dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=dt.UTC)


PERIODS = ("prev-hr", "current-day", "current-week", "current-month", "prev-month")


def check_period(period: str) -> str:
    """The period name if it is one of PERIODS; InvalidInput listing the valid ones otherwise."""
    if period not in PERIODS:
        raise InvalidInput(
            f"unknown period {period!r}: use one of {', '.join(PERIODS)}",
            {"period": [f"Must be one of: {', '.join(PERIODS)}."]},
        )
    return period


@dataclass(frozen=True)
class Window:
    """A period resolved against a clock in one timezone: UTC bounds and the local days covered."""

    period: str
    timezone: str
    start: dt.datetime  # UTC, inclusive
    end: dt.datetime  # UTC, exclusive
    first_day: dt.date
    last_day: dt.date
    today: dt.date
    by_day: bool  # daily bars (week, month) rather than half-hourly ones (hour, day)

    def days(self) -> list[dt.date]:
        """Every local day of the window, in order."""
        count = (self.last_day - self.first_day).days + 1
        return [self.first_day + dt.timedelta(days=i) for i in range(count)]

    def intervals(self) -> list[dt.datetime]:
        """UTC starts of the window's half hours (the interval grid of ingest)."""
        if self.period == "prev-hr":
            return [self.start, self.start + HALF_HOUR]
        return [s for day in self.days() for s in day_intervals(self.timezone, day) if self.start <= s < self.end]


def window(period: str, timezone: str, now: dt.datetime) -> Window:
    """Resolve a period name at `now` in a timezone; InvalidInput for an unknown name."""
    check_period(period)
    today = local_day(timezone, now)
    if period == "prev-hr":
        end = floor_half_hour(now)  # the newest interval that has ended ends here
        start = end - 2 * HALF_HOUR
        return Window(
            period, timezone, start, end, local_day(timezone, start), local_day(timezone, end - HALF_HOUR), today, False
        )
    if period == "current-day":
        first = last = today
    elif period == "current-week":
        first = today - dt.timedelta(days=today.weekday())  # weekday() is 0 on Monday
        last = first + dt.timedelta(days=6)
    elif period == "current-month":
        first = today.replace(day=1)
        last = today.replace(day=calendar.monthrange(today.year, today.month)[1])
    else:  # prev-month
        last = today.replace(day=1) - dt.timedelta(days=1)
        first = last.replace(day=1)
    start, end = day_bounds(timezone, first)[0], day_bounds(timezone, last)[1]
    return Window(period, timezone, start, end, first, last, today, period != "current-day")


def day_window(timezone: str, day: dt.date, now: dt.datetime) -> Window:
    """A window of one whole local day, read per day (used for completeness of an ended day)."""
    start, end = day_bounds(timezone, day)
    return Window("day", timezone, start, end, day, day, local_day(timezone, now), True)
