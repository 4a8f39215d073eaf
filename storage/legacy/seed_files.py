"""The seed's structures: today's readings (1.2) and the master database file (1.4).

Both key an interval `"HH:MM"` by the local time of its end plus one minute, the packet time
of the seed: "00:31" for 00:00-00:30, ..., "23:31", and "00:01" for 23:30-24:00 of that same
day. On the 25-hour day of a DST change the repeated hour repeats two labels; the structures
then hold the sum of the intervals that share a label, so a day's labels still add up to its total.

The master file's `previous_day` holds the half hours of the meter's most recent day in the
file (the day the legacy system last rolled up). Values are JSON numbers: kWh is kept to 3
decimals below 10^12, so a double's shortest form writes them exactly.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from storage.calendar import HALF_HOUR, day_bounds, day_intervals, local_day, zone
from storage.db.engine import Database
from storage.db.models import DailyTotal, Meter, Reading, Site
from storage.registry.sites import site_row

ONE_MINUTE = dt.timedelta(minutes=1)
KWH_PLACES = Decimal("0.001")
KWH_LIMIT = Decimal("1e12")
DATE_KEY = re.compile(r"\d{4}-\d{2}-\d{2}")
LABEL = re.compile(r"\d{2}:\d{2}")
CHUNK = 500  # meter numbers per IN (...) query

Progress = Callable[[str, int, int], None]


def interval_label(timezone: str, interval_start: dt.datetime) -> str:
    """The seed's label of an interval: local time of its end plus one minute, "HH:MM"."""
    return (interval_start + HALF_HOUR + ONE_MINUTE).astimezone(zone(timezone)).strftime("%H:%M")


def labelled(timezone: str, readings: Iterable[tuple[dt.datetime, Decimal]]) -> dict[str, Decimal]:
    """Readings keyed by label in interval order (labels shared on a 25-hour day are summed)."""
    by_label: dict[str, Decimal] = {}
    for interval_start, kwh in sorted(readings):
        label = interval_label(timezone, interval_start)
        by_label[label] = by_label.get(label, Decimal(0)) + kwh
    return by_label


def label_starts(timezone: str, day: dt.date) -> dict[str, dt.datetime]:
    """Label → UTC start of the day's interval with that label (the first, where two share one)."""
    starts: dict[str, dt.datetime] = {}
    for interval_start in day_intervals(timezone, day):
        starts.setdefault(interval_label(timezone, interval_start), interval_start)
    return starts


def kwh_number(value: Decimal) -> float:
    """kWh as a JSON number; exact for the 3-decimal values below 10^12 that we store."""
    return float(value)


def master_json(document: dict[str, dict[str, Any]]) -> str:
    """The master database document as JSON text, kWh written as numbers."""

    def numbers(value: Any) -> Any:
        if isinstance(value, Decimal):
            return kwh_number(value)
        if isinstance(value, dict):
            return {k: numbers(v) for k, v in value.items()}
        return value

    return json.dumps(numbers(document), indent=2) + "\n"


# --- Reading out ------------------------------------------------------------------------------


async def today_readings(db: Database, *, site_id: str, now: dt.datetime) -> dict[str, dict[str, Decimal]]:
    """The seed's daily structure for the site's current local day: every active meter, with
    the labelled readings received so far (an empty object for a meter not heard from yet)."""
    async with db.reader() as session:
        site = await site_row(session, site_id)
        start, end = day_bounds(site.timezone, local_day(site.timezone, now))
        meters = (
            await session.execute(
                select(Meter.meter_no)
                .where(Meter.site_id == site_id, Meter.active.is_(True))  # type: ignore[attr-defined]
                .order_by(Meter.meter_no)
            )
        ).scalars()
        readings = await session.execute(
            select(Reading.meter_no, Reading.interval_start, Reading.kwh)
            .join(Meter, Meter.meter_no == Reading.meter_no)  # type: ignore[arg-type]
            .where(Meter.site_id == site_id, Reading.interval_start >= start, Reading.interval_start < end)
        )
        per_meter: dict[int, list[tuple[dt.datetime, Decimal]]] = {n: [] for n in meters}
        for meter_no, interval_start, kwh in readings.all():
            per_meter.setdefault(meter_no, []).append((interval_start, kwh))
    return {str(n): labelled(site.timezone, rows) for n, rows in sorted(per_meter.items())}


async def export_master(db: Database, *, site_id: str | None = None) -> dict[str, dict[str, Any]]:
    """The master database document for one site or all: per meter name, fin_no, previous_day
    (the half hours of its latest rolled day) and "YYYY-MM-DD" → daily kWh, newest first."""
    async with db.reader() as session:
        if site_id is not None:
            await site_row(session, site_id)
        meter_query = (
            select(Meter.meter_no, Meter.consumer_name, Meter.fin_no, Site.timezone)
            .join(Site, Site.id == Meter.site_id)  # type: ignore[arg-type]
            .order_by(Meter.meter_no)
        )
        total_query = (
            select(DailyTotal.meter_no, DailyTotal.day, DailyTotal.kwh)
            .join(Meter, Meter.meter_no == DailyTotal.meter_no)  # type: ignore[arg-type]
            .order_by(DailyTotal.meter_no, DailyTotal.day.desc())  # type: ignore[attr-defined]
        )
        if site_id is not None:
            meter_query = meter_query.where(Meter.site_id == site_id)
            total_query = total_query.where(Meter.site_id == site_id)
        meters = (await session.execute(meter_query)).all()
        totals: dict[int, dict[str, Decimal]] = {}
        for meter_no, day, kwh in (await session.execute(total_query)).all():
            totals.setdefault(meter_no, {})[day.isoformat()] = kwh
        # previous_day: readings of each meter's latest day, fetched per (timezone, day) group.
        groups: dict[tuple[str, str], list[int]] = {}
        for meter_no, _name, _fin, timezone in meters:
            if totals.get(meter_no):
                groups.setdefault((timezone, next(iter(totals[meter_no]))), []).append(meter_no)
        previous: dict[int, list[tuple[dt.datetime, Decimal]]] = {}
        for (timezone, day), numbers in groups.items():
            start, end = day_bounds(timezone, dt.date.fromisoformat(day))
            for chunk in chunks(numbers):
                rows = await session.execute(
                    select(Reading.meter_no, Reading.interval_start, Reading.kwh).where(
                        Reading.meter_no.in_(chunk),  # type: ignore[attr-defined]
                        Reading.interval_start >= start,
                        Reading.interval_start < end,
                    )
                )
                for meter_no, interval_start, kwh in rows.all():
                    previous.setdefault(meter_no, []).append((interval_start, kwh))
    return {
        str(meter_no): {
            "name": name,
            "fin_no": fin_no,
            "previous_day": labelled(timezone, previous.get(meter_no, [])),
            **totals.get(meter_no, {}),
        }
        for meter_no, name, fin_no, timezone in meters
    }


def chunks(items: list[Any], size: int = CHUNK) -> Iterable[list[Any]]:
    """Consecutive slices of at most `size` items (to keep IN (...) lists short)."""
    for at in range(0, len(items), size):
        yield items[at : at + size]
