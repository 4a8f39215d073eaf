"""Consumption over a named period, in the site's timezone: what the portal shows a resident.

A period's name resolves to UTC bounds and local days in `storage.calendar.window`.

Where the numbers come from: a day the rollup has stamped in `rolled_day` is read from
`daily_total` (one row per meter-day); today, and any ended day not rolled yet, is summed from
`reading`. Half-hourly views (`prev-hr`, `current-day`) always read `reading`.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.calendar import HALF_HOUR, Window, day_bounds, day_intervals, floor_half_hour, local_day, window, zone
from storage.db.engine import Database
from storage.db.models import DailyTotal, Meter, Reading, RolledDay, Site
from storage.errors import unknown_meter
from storage.reads import energy
from storage.reads.meter_views import daily_charges
from storage.registry.meter_roles import billed

ZERO = Decimal("0.000")
MONEY_ZERO = Decimal("0.00")


# --- One meter ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """One bar of a chart: a half hour or a day, its energy and charges by source.

    `expected` counts the bar's half hours that have ended while the meter was in service: a
    bar with fewer readings than that has missing intervals, and one that expects none lies in
    the future (or before the meter was installed). Neither is zero use.
    """

    key: str  # ISO local start ("2025-02-08T00:30:00+05:30") or day ("2025-02-08")
    label: str  # what the axis shows: "00:30" or "Sat 08"
    grid: Decimal
    dg: Decimal
    intervals: int
    grid_charge: Decimal = Decimal("0.00")  # ₹, Σ the readings' grid charges (storage/reads/energy.py)
    dg_charge: Decimal = Decimal("0.00")  # ₹, Σ the readings' DG charges
    fixed_charge: Decimal = Decimal("0.00")  # ₹, the day's fixed charge debited by the rollup
    expected: int = 0

    @property
    def total(self) -> Decimal:
        """Grid plus DG."""
        return self.grid + self.dg

    @property
    def charge(self) -> Decimal:
        """Everything the bar cost: energy from both sources and the fixed charge."""
        return self.grid_charge + self.dg_charge + self.fixed_charge

    @property
    def state(self) -> str:
        """`complete`, `partial` (some ended half hours have no reading), `missing` (none has),
        or `none` (nothing expected yet: the future, or before the meter was installed)."""
        if self.expected == 0 and self.intervals == 0:
            return "none"
        if self.intervals >= self.expected:
            return "complete"
        return "partial" if self.intervals else "missing"

    @property
    def has_data(self) -> bool:
        """Whether the bar's numbers mean something (a missing or future bar is not zero use)."""
        return self.intervals > 0


@dataclass(frozen=True)
class Consumption:
    """A meter's energy over a window, as bars in time order."""

    meter_no: int
    window: Window
    bars: list[Bar]

    @property
    def grid(self) -> Decimal:
        """Energy from the grid over the window."""
        return sum((b.grid for b in self.bars), ZERO)

    @property
    def dg(self) -> Decimal:
        """Energy from the diesel generator over the window."""
        return sum((b.dg for b in self.bars), ZERO)

    @property
    def total(self) -> Decimal:
        """All energy over the window."""
        return self.grid + self.dg

    @property
    def intervals(self) -> int:
        """Half hours with a reading in the window."""
        return sum(b.intervals for b in self.bars)

    @property
    def expected(self) -> int:
        """Half hours of the window that have ended while the meter was in service."""
        return sum(b.expected for b in self.bars)

    @property
    def grid_charge(self) -> Decimal:
        """₹ for grid energy over the window."""
        return sum((b.grid_charge for b in self.bars), MONEY_ZERO)

    @property
    def dg_charge(self) -> Decimal:
        """₹ for DG energy over the window."""
        return sum((b.dg_charge for b in self.bars), MONEY_ZERO)

    @property
    def fixed_charge(self) -> Decimal:
        """₹ of fixed daily charges over the window."""
        return sum((b.fixed_charge for b in self.bars), MONEY_ZERO)

    @property
    def charge(self) -> Decimal:
        """Everything charged over the window."""
        return self.grid_charge + self.dg_charge + self.fixed_charge


async def meter_site(session: AsyncSession, meter_no: int) -> tuple[Meter, Site]:
    """A meter and its site, or NotFound."""
    row = (
        await session.execute(
            select(Meter, Site).join(Site, Site.id == Meter.site_id).where(Meter.meter_no == meter_no)  # type: ignore[arg-type]
        )
    ).first()
    if row is None:
        raise unknown_meter(meter_no)
    return row[0], row[1]


@dataclass(frozen=True)
class MeterSummary:
    """What a resident sees first: the meter, its site, and today's energy so far."""

    meter: Meter
    site: Site
    today_grid: Decimal
    today_dg: Decimal
    today_intervals: int

    @property
    def today_total(self) -> Decimal:
        """Today's energy so far, grid plus DG."""
        return self.today_grid + self.today_dg


async def meter_summary(db: Database, *, meter_no: int, now: dt.datetime) -> MeterSummary:
    """The meter, its site and today's energy (local day, from readings); NotFound if unknown."""
    async with db.reader() as session:
        meter, site = await meter_site(session, meter_no)
        start, end = day_bounds(site.timezone, local_day(site.timezone, now))
        row = (
            await session.execute(
                select(func.sum(energy.grid_kwh()), func.sum(energy.dg_kwh()), func.count()).where(
                    Reading.meter_no == meter_no, Reading.interval_start >= start, Reading.interval_start < end
                )
            )
        ).one()
    grid, dg, count = row
    return MeterSummary(meter, site, grid or ZERO, dg or ZERO, count)


async def meter_consumption(db: Database, *, meter_no: int, period: str, now: dt.datetime) -> Consumption:
    """A meter's bars for a period: half-hourly for prev-hr and current-day, else daily; each
    with its charges and the half hours expected of it by `now`."""
    async with db.reader() as session:
        meter, site = await meter_site(session, meter_no)
        span = window(period, site.timezone, now)
        in_service = floor_half_hour(meter.created_at + HALF_HOUR - dt.timedelta(microseconds=1))
        if span.by_day:
            bars = await _daily_bars(session, meter_no, site.id, span, expected_from=in_service, now=now)
        else:
            bars = await _half_hour_bars(session, meter_no, span, expected_from=in_service, now=now)
    return Consumption(meter_no, span, bars)


def _expected(start: dt.datetime, *, expected_from: dt.datetime, now: dt.datetime) -> bool:
    """Whether the half hour starting at `start` should have a reading by `now`."""
    return start >= expected_from and start + HALF_HOUR <= now


async def _half_hour_bars(
    session: AsyncSession, meter_no: int, span: Window, *, expected_from: dt.datetime, now: dt.datetime
) -> list[Bar]:
    rows = await session.execute(
        select(
            Reading.interval_start, energy.grid_kwh(), energy.dg_kwh(), energy.grid_charge(), energy.dg_charge()
        ).where(Reading.meter_no == meter_no, Reading.interval_start >= span.start, Reading.interval_start < span.end)
    )
    found = {start: parts for start, *parts in rows.all()}
    tz = zone(span.timezone)
    bars: list[Bar] = []
    seen_labels: set[str] = set()
    for start in span.intervals():
        local = start.astimezone(tz)
        label = local.strftime("%H:%M")
        if label in seen_labels:  # the repeated hour when clocks go back: say which one
            label = f"{label} ({local.strftime('%z')})"
        seen_labels.add(label)
        grid, dg, grid_charge, dg_charge = found.get(start, (ZERO, ZERO, MONEY_ZERO, MONEY_ZERO))
        bars.append(
            Bar(
                key=local.isoformat(),
                label=label,
                grid=grid,
                dg=dg,
                intervals=int(start in found),
                grid_charge=grid_charge,
                dg_charge=dg_charge,
                expected=int(_expected(start, expected_from=expected_from, now=now)),
            )
        )
    return bars


async def _daily_bars(
    session: AsyncSession, meter_no: int, site_id: str, span: Window, *, expected_from: dt.datetime, now: dt.datetime
) -> list[Bar]:
    per_day: dict[dt.date, tuple[Decimal, Decimal, int]] = {}
    rolled_rows = await session.execute(
        select(DailyTotal.day, DailyTotal.grid_kwh, DailyTotal.dg_kwh, DailyTotal.intervals)
        .join(RolledDay, sa.and_(RolledDay.day == DailyTotal.day, RolledDay.site_id == site_id))  # type: ignore[arg-type]
        .where(DailyTotal.meter_no == meter_no, DailyTotal.day >= span.first_day, DailyTotal.day <= span.last_day)
    )
    for day, grid, dg, intervals in rolled_rows.all():
        per_day[day] = (grid, dg, intervals)
    unrolled = await unrolled_days(session, [site_id], span)
    if unrolled:
        start, end = day_bounds(span.timezone, min(unrolled))[0], day_bounds(span.timezone, max(unrolled))[1]
        rows = await session.execute(
            select(Reading.interval_start, energy.grid_kwh(), energy.dg_kwh()).where(
                Reading.meter_no == meter_no, Reading.interval_start >= start, Reading.interval_start < end
            )
        )
        for interval_start, grid_part, dg_part in rows.all():
            day = local_day(span.timezone, interval_start)
            if day in unrolled:
                grid, dg, intervals = per_day.get(day, (ZERO, ZERO, 0))
                per_day[day] = (grid + grid_part, dg + dg_part, intervals + 1)
    charges = await daily_charges(session, meter_no, span.start, span.end, span.timezone)
    bars = []
    for day in span.days():
        grid, dg, intervals = per_day.get(day, (ZERO, ZERO, 0))
        grid_charge, dg_charge, fixed = charges.get(day, (MONEY_ZERO, MONEY_ZERO, MONEY_ZERO))
        expected = sum(_expected(s, expected_from=expected_from, now=now) for s in day_intervals(span.timezone, day))
        bars.append(
            Bar(day.isoformat(), day.strftime("%a %d"), grid, dg, intervals, grid_charge, dg_charge, fixed, expected)
        )
    return bars


async def unrolled_days(session: AsyncSession, site_ids: Sequence[str], span: Window) -> list[dt.date]:
    """Days of the window up to today that some of the sites have not rolled: read from readings."""
    candidates = [d for d in span.days() if d <= span.today]
    if not candidates:
        return []
    rolled = await session.execute(
        select(RolledDay.day, func.count())
        .where(RolledDay.site_id.in_(site_ids), RolledDay.day >= candidates[0], RolledDay.day <= candidates[-1])  # type: ignore[attr-defined]
        .group_by(RolledDay.day)
    )
    fully_rolled = {day for day, count in rolled.all() if count == len(site_ids)}
    return [d for d in candidates if d not in fully_rolled]


# --- Many meters: one set-based statement per timezone -------------------------------------------


def usage_query(span: Window, unrolled: Sequence[dt.date], site_filter: Any) -> Any:
    """Per flat of the sites matched by `site_filter` (a condition on Meter/Site): energy over
    the window, as a subquery (meter_no, site_id, kwh, grid_kwh, dg_kwh, intervals). Bulk meters
    (an incomer, a DG's meter) are left out: their energy is the flats' again (the energy audit's).

    A union of `daily_total` for rolled days and one aggregate of `reading` per unrolled day
    (or over the whole window for half-hourly periods), summed per meter.
    """

    def from_readings(start: dt.datetime, end: dt.datetime, day: dt.date | None) -> Any:
        query = (
            select(
                Reading.meter_no.label("meter_no"),  # type: ignore[attr-defined]
                Meter.site_id.label("site_id"),  # type: ignore[attr-defined]
                func.sum(Reading.kwh).label("kwh"),
                func.sum(energy.grid_kwh()).label("grid_kwh"),
                func.sum(energy.dg_kwh()).label("dg_kwh"),
                func.count().label("intervals"),
            )
            .join(Meter, Meter.meter_no == Reading.meter_no)  # type: ignore[arg-type]
            .join(Site, Site.id == Meter.site_id)  # type: ignore[arg-type]
            .where(site_filter, billed(Meter.role), Reading.interval_start >= start, Reading.interval_start < end)
            .group_by(Reading.meter_no, Meter.site_id)
        )
        if day is not None:  # only sites that have not rolled this day (others come from daily_total)
            rolled = select(RolledDay.site_id).where(RolledDay.site_id == Meter.site_id, RolledDay.day == day)
            query = query.where(~rolled.exists())
        return query

    if not span.by_day:
        parts = [from_readings(span.start, span.end, None)]
    else:
        parts = [
            select(
                DailyTotal.meter_no.label("meter_no"),  # type: ignore[attr-defined]
                Meter.site_id.label("site_id"),  # type: ignore[attr-defined]
                DailyTotal.kwh.label("kwh"),  # type: ignore[attr-defined]
                DailyTotal.grid_kwh.label("grid_kwh"),  # type: ignore[attr-defined]
                DailyTotal.dg_kwh.label("dg_kwh"),  # type: ignore[attr-defined]
                DailyTotal.intervals.label("intervals"),  # type: ignore[attr-defined]
            )
            .join(Meter, Meter.meter_no == DailyTotal.meter_no)  # type: ignore[arg-type]
            .join(Site, Site.id == Meter.site_id)  # type: ignore[arg-type]
            .join(RolledDay, sa.and_(RolledDay.site_id == Meter.site_id, RolledDay.day == DailyTotal.day))  # type: ignore[arg-type]
            .where(site_filter, billed(Meter.role), DailyTotal.day >= span.first_day, DailyTotal.day <= span.last_day)
        ]
        parts += [from_readings(*day_bounds(span.timezone, day), day) for day in unrolled]
    union = sa.union_all(*parts).subquery("usage_parts")
    return (
        select(
            union.c.meter_no,
            union.c.site_id,
            func.sum(union.c.kwh).label("kwh"),
            func.sum(union.c.grid_kwh).label("grid_kwh"),
            func.sum(union.c.dg_kwh).label("dg_kwh"),
            func.sum(union.c.intervals).label("intervals"),
        )
        .group_by(union.c.meter_no, union.c.site_id)
        .subquery("usage")
    )


# --- A year, month by month ----------------------------------------------------------------------

YEAR_MONTHS = 12


async def meter_year(db: Database, *, meter_no: int, now: dt.datetime) -> Consumption:
    """A meter's last 12 local calendar months (this one so far included), one bar per month:
    the daily bars of the months summed, so rolled days, charges and gaps count as on the
    daily views."""
    async with db.reader() as session:
        meter, site = await meter_site(session, meter_no)
        today = local_day(site.timezone, now)
        month = today.year * 12 + today.month - 1 - (YEAR_MONTHS - 1)
        first = dt.date(month // 12, month % 12 + 1, 1)
        last = today.replace(day=calendar.monthrange(today.year, today.month)[1])
        start, end = day_bounds(site.timezone, first)[0], day_bounds(site.timezone, last)[1]
        span = Window("year", site.timezone, start, end, first, last, today, True)
        in_service = floor_half_hour(meter.created_at + HALF_HOUR - dt.timedelta(microseconds=1))
        days = await _daily_bars(session, meter_no, site.id, span, expected_from=in_service, now=now)
    months: dict[str, list[Bar]] = {}
    for bar in days:
        months.setdefault(bar.key[:7], []).append(bar)
    bars = [
        Bar(
            key=key,
            label=dt.date.fromisoformat(f"{key}-01").strftime("%b %Y"),
            grid=sum((b.grid for b in group), ZERO),
            dg=sum((b.dg for b in group), ZERO),
            intervals=sum(b.intervals for b in group),
            grid_charge=sum((b.grid_charge for b in group), MONEY_ZERO),
            dg_charge=sum((b.dg_charge for b in group), MONEY_ZERO),
            fixed_charge=sum((b.fixed_charge for b in group), MONEY_ZERO),
            expected=sum(b.expected for b in group),
        )
        for key, group in months.items()
    ]
    return Consumption(meter_no, span, bars)
