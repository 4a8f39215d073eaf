"""Data-quality flags for a site's local day, in the sense of meter-data management: flag, never
change. A flag names a meter, a kind and how many half hours it concerns:

- `missing`: half hours of the day (while the meter was in service, up to now) with no reading;
- `spike`: a half hour above `spike_factor` × the meter's median for that local half hour over the
  previous 14 days (at least 7 of them with a reading, median above zero);
- `zero_run`: the longest run of zero readings, when at least `zero_run` half hours long and the
  rest of the site consumed during it;
- `late`: readings received more than `late_minutes` after their interval ended;
- `conflict`: packets that offered another value for an interval already stored.

Meters are read 500 at a time (their readings through the primary key), like the site report.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.calendar import HALF_HOUR
from storage.db.engine import Database
from storage.db.models import Meter, Reading, ReadingConflict, Site
from storage.errors import InvalidInput, unknown_site

KINDS = ("missing", "spike", "zero_run", "late", "conflict")
HISTORY_DAYS, MIN_HISTORY = 14, 7
BATCH = 500


@dataclass(frozen=True)
class QualityRules:
    """The thresholds (GATEWAY_QUALITY_* settings)."""

    spike_factor: Decimal = Decimal(4)
    zero_run: int = 8  # half hours
    late_minutes: int = 180


@dataclass(frozen=True)
class QualityFlag:
    """One meter's flag of one kind for the day."""

    meter_no: int
    unit_no: str
    kind: str
    intervals: int
    detail: str


@dataclass
class SiteQuality:
    """A site-day's flags, by meter then kind, and their count per kind."""

    site_id: str
    day: dt.date
    meters: int = 0
    flags: list[QualityFlag] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Flags per kind (every kind, zeros included)."""
        counted = dict.fromkeys(KINDS, 0)
        for flag in self.flags:
            counted[flag.kind] += 1
        return counted


def _local_slot(start: dt.datetime, zone: ZoneInfo) -> tuple[int, int]:
    local = start.astimezone(zone)
    return local.hour, local.minute


def _expected_starts(day_start: dt.datetime, day_end: dt.datetime, meter: Meter, now: dt.datetime) -> set[dt.datetime]:
    start = max(day_start, meter.created_at)
    end = min(day_end, meter.retired_at or day_end, now)
    starts, at = set(), day_start
    while at + HALF_HOUR <= end:
        if at >= start:
            starts.add(at)
        at += HALF_HOUR
    return starts


def _zero_run(day: list[tuple[dt.datetime, Decimal]], site_totals: dict[dt.datetime, Decimal]) -> tuple[int, str]:
    """The longest run of consecutive zero readings during which the rest of the site consumed."""
    best, best_from, run, run_from = 0, None, 0, None
    for start, kwh in day:
        others = site_totals.get(start, Decimal(0)) - kwh
        if kwh == 0 and others > 0:
            run, run_from = run + 1, run_from or start
            if run > best:
                best, best_from = run, run_from
        else:
            run, run_from = 0, None
    return best, (best_from.isoformat().replace("+00:00", "Z") if best_from else "")


async def _site_totals(
    session: AsyncSession, site_id: str, start: dt.datetime, end: dt.datetime
) -> dict[dt.datetime, Decimal]:
    query = (
        select(Reading.interval_start, func.sum(Reading.kwh))
        .join(Meter, Meter.meter_no == Reading.meter_no)  # type: ignore[arg-type]
        .where(Meter.site_id == site_id, Reading.interval_start >= start, Reading.interval_start < end)  # type: ignore[arg-type]
        .group_by(Reading.interval_start)
    )
    return dict((await session.execute(query)).all())


async def site_quality(
    db: Database, *, site_id: str, day: dt.date, now: dt.datetime, rules: QualityRules = QualityRules()
) -> SiteQuality:
    """Every flag of a site's local day. NotFound for an unknown site; InvalidInput for a future day."""
    async with db.reader() as session:
        site = await session.get(Site, site_id)
        if site is None:
            raise unknown_site(site_id)
        zone = ZoneInfo(site.timezone)
        day_start = dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)
        day_end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.UTC)
        if day_start > now:
            raise InvalidInput(f"day {day} has not begun yet", {"day": ["Must not be in the future."]})
        history_start = dt.datetime.combine(day - dt.timedelta(days=HISTORY_DAYS), dt.time(), zone).astimezone(dt.UTC)
        meters = list(
            (
                await session.execute(
                    select(Meter)
                    .where(
                        Meter.site_id == site_id,
                        Meter.created_at < day_end,  # type: ignore[operator]
                        sa.or_(Meter.retired_at.is_(None), Meter.retired_at >= day_start),  # type: ignore[union-attr, operator]
                    )
                    .order_by(Meter.meter_no)
                )
            ).scalars()
        )
        site_totals = await _site_totals(session, site_id, day_start, day_end)
        report = SiteQuality(site_id=site_id, day=day, meters=len(meters))
        late_after = dt.timedelta(minutes=rules.late_minutes) + HALF_HOUR
        for first in range(0, len(meters), BATCH):
            batch = meters[first : first + BATCH]
            numbers = [meter.meter_no for meter in batch]
            readings = await session.execute(
                select(Reading.meter_no, Reading.interval_start, Reading.kwh, Reading.received_at)
                .where(
                    Reading.meter_no.in_(numbers),  # type: ignore[attr-defined]
                    Reading.interval_start >= history_start,  # type: ignore[arg-type]
                    Reading.interval_start < day_end,  # type: ignore[arg-type]
                )
                .order_by(Reading.meter_no, Reading.interval_start)
            )
            history: dict[int, dict[tuple[int, int], list[Decimal]]] = defaultdict(lambda: defaultdict(list))
            today: dict[int, list[tuple[dt.datetime, Decimal, dt.datetime]]] = defaultdict(list)
            for meter_no, start, kwh, received_at in readings:
                if start >= day_start:
                    today[meter_no].append((start, kwh, received_at))
                else:
                    history[meter_no][_local_slot(start, zone)].append(kwh)
            conflicts = dict(
                (
                    await session.execute(
                        select(ReadingConflict.meter_no, func.count())
                        .where(
                            ReadingConflict.meter_no.in_(numbers),  # type: ignore[attr-defined]
                            ReadingConflict.interval_start >= day_start,  # type: ignore[arg-type]
                            ReadingConflict.interval_start < day_end,  # type: ignore[arg-type]
                        )
                        .group_by(ReadingConflict.meter_no)
                    )
                ).all()
            )
            for meter in batch:
                report.flags.extend(
                    _meter_flags(meter, today[meter.meter_no], history[meter.meter_no], conflicts, site_totals, zone,
                                 _expected_starts(day_start, day_end, meter, now), late_after, rules)
                )  # fmt: skip
        return report


def _meter_flags(
    meter: Meter,
    day: list[tuple[dt.datetime, Decimal, dt.datetime]],
    history: dict[tuple[int, int], list[Decimal]],
    conflicts: dict[int, int],
    site_totals: dict[dt.datetime, Decimal],
    zone: ZoneInfo,
    expected: set[dt.datetime],
    late_after: dt.timedelta,
    rules: QualityRules,
) -> list[QualityFlag]:
    flags = []

    def flag(kind: str, intervals: int, detail: str) -> None:
        flags.append(QualityFlag(meter.meter_no, meter.unit_no, kind, intervals, detail))

    missing = len(expected - {start for start, _kwh, _received in day})
    if missing:
        flag("missing", missing, f"{missing} of {len(expected)} half hours without a reading")
    spikes = []
    for start, kwh, _received in day:
        past = history.get(_local_slot(start, zone), [])
        if len(past) >= MIN_HISTORY:
            median = statistics.median(past)
            if median > 0 and kwh > rules.spike_factor * median:
                spikes.append(f"{start.astimezone(zone):%H:%M} {kwh} kWh (median {median})")
    if spikes:
        flag("spike", len(spikes), "; ".join(spikes))
    run, run_from = _zero_run([(start, kwh) for start, kwh, _received in day], site_totals)
    if run >= rules.zero_run:
        flag("zero_run", run, f"{run} half hours of zero from {run_from} while the site consumed")
    late = [start for start, _kwh, received in day if received - start > late_after]
    if late:
        flag("late", len(late), f"{len(late)} readings received over {rules.late_minutes} minutes after their interval")
    if conflicts.get(meter.meter_no):
        flag("conflict", conflicts[meter.meter_no], f"{conflicts[meter.meter_no]} packets offered another value")
    return flags
