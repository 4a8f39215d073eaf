"""The whole fleet at a glance, for the management dashboard: consumption per site and region
over a period, top consumers, silent meters, meters cut for zero balance, data completeness.

Sites are grouped by timezone, since a period's bounds depend on it; each group is read with
one set-based statement (storage/reads/consumption.py `usage_query`), so the cost grows with the
number of timezones, not of sites or meters.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.calendar import HALF_HOUR, Window, day_intervals, day_window, floor_half_hour, local_day, window
from storage.db.engine import Database
from storage.db.models import Meter, Site
from storage.reads.consumption import ZERO, unrolled_days, usage_query

SILENT_AFTER = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Usage:
    """Energy of a site, a region or a meter over a period."""

    name: str
    grid: Decimal
    dg: Decimal
    meters: int  # meters with at least one reading in the period

    @property
    def total(self) -> Decimal:
        """Grid plus DG."""
        return self.grid + self.dg


@dataclass(frozen=True)
class SiteUsage(Usage):
    """A site's usage, with the region it belongs to."""

    site_id: str = ""
    region: str = ""


@dataclass(frozen=True)
class MeterUsage(Usage):
    """One meter's usage (top consumers)."""

    meter_no: int = 0
    site_id: str = ""
    unit_no: str = ""


@dataclass(frozen=True)
class MeterState:
    """A meter that needs attention: silent, or cut."""

    meter_no: int
    site_id: str
    unit_no: str
    balance: Decimal
    last_reading_at: dt.datetime | None


@dataclass(frozen=True)
class Completeness:
    """Intervals seen of those expected, for a site's last ended day and for today so far."""

    site_id: str
    name: str
    meters: int
    day: dt.date
    day_expected: int  # per meter: 48, or 46/50 on DST days
    day_seen: int  # all meters together
    day_complete_meters: int
    today_expected: int  # per meter: the half hours of today that have ended
    today_seen: int

    @property
    def day_percent(self) -> float:
        """Share of the ended day's intervals seen, 0-100."""
        expected = self.day_expected * self.meters
        return 100.0 * self.day_seen / expected if expected else 100.0

    @property
    def today_percent(self) -> float:
        """Share of today's ended intervals seen, 0-100."""
        expected = self.today_expected * self.meters
        return 100.0 * self.today_seen / expected if expected else 100.0


async def _sites_by_timezone(session: AsyncSession, only: Collection[str] | None) -> dict[str, list[Site]]:
    groups: dict[str, list[Site]] = {}
    query = select(Site).order_by(Site.region, Site.id)
    if only is not None:
        query = query.where(Site.id.in_(list(only)))  # type: ignore[attr-defined]
    for site in (await session.execute(query)).scalars():
        groups.setdefault(site.timezone, []).append(site)
    return groups


async def _usage_of_group(session: AsyncSession, sites: list[Site], span: Window) -> sa.Subquery:
    ids = [s.id for s in sites]
    unrolled = await unrolled_days(session, ids, span) if span.by_day else []
    return usage_query(span, unrolled, sa.and_(Site.timezone == span.timezone, Site.id.in_(ids)))  # type: ignore[attr-defined]


async def site_usage(
    db: Database, *, period: str, now: dt.datetime, only: Collection[str] | None = None
) -> list[SiteUsage]:
    """Every site's (or `only` these sites') consumption over the period (its own timezone's bounds),
    by region then id."""
    result: list[SiteUsage] = []
    async with db.reader() as session:
        for timezone, sites in (await _sites_by_timezone(session, only)).items():
            usage = await _usage_of_group(session, sites, window(period, timezone, now))
            rows = await session.execute(
                select(
                    usage.c.site_id,
                    func.sum(usage.c.grid_kwh),
                    func.sum(usage.c.dg_kwh),
                    func.count(),
                ).group_by(usage.c.site_id)
            )
            found = {site_id: (grid, dg, meters) for site_id, grid, dg, meters in rows.all()}
            for site in sites:
                grid, dg, meters = found.get(site.id, (ZERO, ZERO, 0))
                result.append(SiteUsage(site.name, grid, dg, meters, site_id=site.id, region=site.region))
    result.sort(key=lambda s: (s.region, s.site_id))
    return result


def region_usage(sites: Iterable[SiteUsage]) -> list[Usage]:
    """Sites' usage summed per region, by region name."""
    regions: dict[str, Usage] = {}
    for site in sites:
        before = regions.get(site.region, Usage(site.region, ZERO, ZERO, 0))
        regions[site.region] = Usage(
            site.region, before.grid + site.grid, before.dg + site.dg, before.meters + site.meters
        )
    return [regions[name] for name in sorted(regions)]


async def top_consumers(
    db: Database, *, period: str, now: dt.datetime, limit: int = 10, only: Collection[str] | None = None
) -> list[MeterUsage]:
    """The meters that used the most energy over the period, most first."""
    found: list[MeterUsage] = []
    async with db.reader() as session:
        for timezone, sites in (await _sites_by_timezone(session, only)).items():
            usage = await _usage_of_group(session, sites, window(period, timezone, now))
            rows = await session.execute(
                select(usage.c.meter_no, usage.c.site_id, Meter.unit_no, usage.c.grid_kwh, usage.c.dg_kwh)
                .join(Meter, Meter.meter_no == usage.c.meter_no)  # type: ignore[arg-type]
                .order_by(usage.c.kwh.desc(), usage.c.meter_no)
                .limit(limit)
            )
            for meter_no, site_id, unit_no, grid, dg in rows.all():
                found.append(
                    MeterUsage(str(meter_no), grid, dg, 1, meter_no=meter_no, site_id=site_id, unit_no=unit_no)
                )
    found.sort(key=lambda m: (-m.total, m.meter_no))
    return found[:limit]


async def silent_meters(
    db: Database, *, now: dt.datetime, limit: int = 50, only: Collection[str] | None = None
) -> tuple[int, list[MeterState]]:
    """Active meters not heard from for over an hour (or never): how many, and the longest silent."""
    quiet = sa.and_(
        Meter.active.is_(True),  # type: ignore[attr-defined]
        sa.or_(Meter.last_reading_at.is_(None), Meter.last_reading_at < now - SILENT_AFTER),  # type: ignore[union-attr,operator]
    )
    order = (Meter.last_reading_at.is_not(None), Meter.last_reading_at, Meter.meter_no)  # type: ignore[union-attr]
    return await _meters_where(db, _within(quiet, only), order, limit)


async def cut_meters(
    db: Database, *, limit: int = 50, only: Collection[str] | None = None
) -> tuple[int, list[MeterState]]:
    """Active meters whose supply is off with a balance at or below zero: how many, lowest first."""
    cut = sa.and_(Meter.active.is_(True), Meter.relay_on.is_(False), Meter.balance <= 0)  # type: ignore[attr-defined]
    return await _meters_where(db, _within(cut, only), (Meter.balance, Meter.meter_no), limit)


def _within(condition: sa.ColumnElement[bool], only: Collection[str] | None) -> sa.ColumnElement[bool]:
    return condition if only is None else sa.and_(condition, Meter.site_id.in_(list(only)))  # type: ignore[attr-defined]


async def _meters_where(
    db: Database, condition: sa.ColumnElement[bool], order: tuple, limit: int
) -> tuple[int, list[MeterState]]:
    async with db.reader() as session:
        count = (await session.execute(select(func.count()).select_from(Meter).where(condition))).scalar_one()
        rows = await session.execute(
            select(Meter.meter_no, Meter.site_id, Meter.unit_no, Meter.balance, Meter.last_reading_at)
            .where(condition)
            .order_by(*order)
            .limit(limit)
        )
        return int(count), [MeterState(*row) for row in rows.all()]


async def completeness(db: Database, *, now: dt.datetime, only: Collection[str] | None = None) -> list[Completeness]:
    """Per site: intervals seen of those expected on its last ended day, and today so far."""
    result: list[Completeness] = []
    async with db.reader() as session:
        for timezone, sites in (await _sites_by_timezone(session, only)).items():
            today = local_day(timezone, now)
            yesterday = today - dt.timedelta(days=1)
            ended_today = sum(1 for s in day_intervals(timezone, today) if s + HALF_HOUR <= floor_half_hour(now))
            day_span = day_window(timezone, yesterday, now)
            day_usage = await _usage_of_group(session, sites, day_span)
            today_usage = await _usage_of_group(session, sites, window("current-day", timezone, now))
            day_expected = len(day_intervals(timezone, yesterday))
            day_rows = await session.execute(
                select(
                    day_usage.c.site_id,
                    func.sum(day_usage.c.intervals),
                    func.sum(sa.case((day_usage.c.intervals >= day_expected, 1), else_=0)),
                ).group_by(day_usage.c.site_id)
            )
            per_day = {site_id: (int(seen), int(full)) for site_id, seen, full in day_rows.all()}
            today_rows = await session.execute(
                select(today_usage.c.site_id, func.sum(today_usage.c.intervals)).group_by(today_usage.c.site_id)
            )
            per_today = {site_id: int(seen) for site_id, seen in today_rows.all()}
            meters = dict(
                (
                    await session.execute(
                        select(Meter.site_id, func.count())
                        .where(Meter.active.is_(True), Meter.site_id.in_([s.id for s in sites]))  # type: ignore[attr-defined]
                        .group_by(Meter.site_id)
                    )
                ).all()
            )
            for site in sites:
                seen, full = per_day.get(site.id, (0, 0))
                result.append(
                    Completeness(
                        site.id,
                        site.name,
                        int(meters.get(site.id, 0)),
                        yesterday,
                        day_expected,
                        seen,
                        full,
                        ended_today,
                        per_today.get(site.id, 0),
                    )
                )
    return result
