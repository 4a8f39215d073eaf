"""The calendar of the gateway: half-hour intervals, a site's local days, and UTC months.

Readings sit on UTC half hours (an interval is named by its start). A reading belongs to the
local day, in the site's IANA timezone, in which its interval starts. Partitions of `reading`
are by UTC month. Every such computation is here, so they cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

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
