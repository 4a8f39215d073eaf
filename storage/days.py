"""Days: a site's local calendar day, the rollup of its readings into daily totals, and which
days are due for (re-)rolling.

A reading's interval belongs to the local day (site timezone) of its start. A day is rolled
with one set-based upsert into `daily_total` (one row per meter that has readings that day)
and stamped in `rolled_day`. A day is due when it has ended and was never rolled, or when it
holds readings received after it was rolled (a late packet). Late readings are found from
the data alone, through the `received_at` index: each site's `rollup_mark` says up to when
arrivals have already been looked at, so a run only reads what arrived since the last one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.calendar import day_bounds, day_intervals, local_day
from storage.db.engine import Database, upsert
from storage.db.models import DailyTotal, Meter, Reading, RolledDay, RollupMark, Site
from storage.db.types import UtcTime
from storage.errors import InvalidInput
from storage.money.ledger import debit_fixed_charges
from storage.reads import energy
from storage.registry.sites import site_row

# Days are rolled this long after local midnight, so the last interval's packet is in.
ROLL_DELAY = dt.timedelta(minutes=15)
# A reading received this long ago is surely committed (ingest commits within seconds), so a
# roll stamps its day with `now - COMMIT_MARGIN` and a reading still in flight counts as late.
COMMIT_MARGIN = dt.timedelta(minutes=2)
# How far back a run looks for ended days never rolled (longer than the 35-day packet age).
CATCH_UP_DAYS = 40


def last_due_day(timezone: str, now: dt.datetime) -> dt.date:
    """The newest local day that ended at least ROLL_DELAY ago."""
    return local_day(timezone, now - ROLL_DELAY) - dt.timedelta(days=1)


def check_day_over(site: Site, day: dt.date, now: dt.datetime) -> None:
    """InvalidInput unless the site's local day has ended."""
    if day_bounds(site.timezone, day)[1] > now:
        raise InvalidInput(
            f"day {day} is not over yet at site {site.id!r} ({site.timezone})",
            {"day": ["The day has not ended in the site's timezone."]},
        )


# --- Rolling one day --------------------------------------------------------------------------


def _rollup_statement(session: AsyncSession, site: Site, day: dt.date, stamp: dt.datetime) -> Any:
    start, end = day_bounds(site.timezone, day)
    totals = (
        select(
            Reading.meter_no,
            sa.literal(day, sa.Date),
            func.sum(Reading.kwh),
            func.sum(energy.grid_kwh()),
            func.sum(energy.dg_kwh()),
            func.count(),
            sa.literal(stamp, UtcTime()),
        )
        .join(Meter, Meter.meter_no == Reading.meter_no)  # type: ignore[arg-type]
        .where(Meter.site_id == site.id, Reading.interval_start >= start, Reading.interval_start < end)
        .group_by(Reading.meter_no)
    )
    columns = ["meter_no", "day", "kwh", "grid_kwh", "dg_kwh", "intervals", "rolled_at"]
    statement = upsert(session, DailyTotal).from_select(columns, totals)
    return statement.on_conflict_do_update(
        index_elements=["meter_no", "day"],
        set_={name: statement.excluded[name] for name in columns[2:]},
    )


async def roll_up_day(db: Database, *, site_id: str, day: dt.date, now: dt.datetime) -> int:
    """Write the daily totals of one site-day from its readings; returns the meters written.

    One transaction: the totals (one upsert statement), the day's fixed charges
    (`ledger.debit_fixed_charges`) and the day's `rolled_day` stamp. Idempotent: rolling again
    gives the same totals and charges nothing twice. Meters without readings that day are left
    alone, so totals imported from a legacy file are not overwritten with nothing.
    """
    stamp = now - COMMIT_MARGIN
    async with db.transaction() as session:
        site = await site_row(session, site_id)
        result = await session.execute(_rollup_statement(session, site, day, stamp))
        start, end = day_bounds(site.timezone, day)
        await debit_fixed_charges(session, site=site, day=day, start=start, end=end, now=now)
        mark = upsert(session, RolledDay).values(site_id=site_id, day=day, rolled_at=stamp)
        await session.execute(mark.on_conflict_do_update(index_elements=["site_id", "day"], set_={"rolled_at": stamp}))
    return max(result.rowcount or 0, 0)  # type: ignore[attr-defined]


# --- Which days are due ----------------------------------------------------------------------


@dataclass(frozen=True)
class DueDay:
    """A site-day to roll, and why: "unrolled" (never rolled) or "late" (readings arrived since)."""

    site_id: str
    day: dt.date
    reason: str


@dataclass
class RollupPlan:
    """The due days of a run, and how far arrivals were looked at (to record once rolled)."""

    days: list[DueDay]
    checked_until: dt.datetime
    site_ids: list[str]


def _arrivals_query(site_id: str, since: dt.datetime | None, until: dt.datetime) -> Any:
    """Per interval start: the latest arrival of the site's readings received in (since, until]."""
    if since is None:  # the first look at a site: all its readings, through its meters
        return (
            select(Reading.interval_start, func.max(Reading.received_at))
            .join(Meter, Meter.meter_no == Reading.meter_no)  # type: ignore[arg-type]
            .where(Meter.site_id == site_id, Reading.received_at <= until)
            .group_by(Reading.interval_start)
        )
    # Recent arrivals first, through the received_at index; materialized, because otherwise
    # SQLite's planner prefers the site's meters and walks each one's whole history.
    arrived = (
        select(Reading.meter_no, Reading.interval_start, Reading.received_at)
        .where(Reading.received_at > since, Reading.received_at <= until)
        .cte("arrived")
        .prefix_with("MATERIALIZED")
    )
    return (
        select(arrived.c.interval_start, func.max(arrived.c.received_at))
        .join(Meter, Meter.meter_no == arrived.c.meter_no)  # type: ignore[arg-type]
        .where(Meter.site_id == site_id)
        .group_by(arrived.c.interval_start)
    )


async def find_due_days(db: Database, *, now: dt.datetime, site_id: str | None = None) -> RollupPlan:
    """Every site-day due for rolling at `now`, oldest first within each site."""
    checked_until = now - COMMIT_MARGIN
    days: list[DueDay] = []
    async with db.reader() as session:
        if site_id is not None:
            sites = [await site_row(session, site_id)]
        else:
            sites = list((await session.execute(select(Site).order_by(Site.id))).scalars())
        marks = dict((await session.execute(select(RollupMark.site_id, RollupMark.checked_until))).all())
        for site in sites:
            days.extend(await _due_days_of_site(session, site, now, checked_until, marks.get(site.id)))
    return RollupPlan(days=days, checked_until=checked_until, site_ids=[s.id for s in sites])


async def _due_days_of_site(
    session: AsyncSession, site: Site, now: dt.datetime, until: dt.datetime, since: dt.datetime | None
) -> list[DueDay]:
    last_due = last_due_day(site.timezone, now)
    window_start = max(last_due - dt.timedelta(days=CATCH_UP_DAYS - 1), local_day(site.timezone, site.created_at))
    arrivals: dict[dt.date, dt.datetime] = {}
    for interval_start, received_at in (await session.execute(_arrivals_query(site.id, since, until))).all():
        day = local_day(site.timezone, interval_start)
        if day <= last_due and (day not in arrivals or received_at > arrivals[day]):
            arrivals[day] = received_at
    rolled = dict(
        (
            await session.execute(
                select(RolledDay.day, RolledDay.rolled_at).where(
                    RolledDay.site_id == site.id,
                    sa.or_(RolledDay.day >= window_start, RolledDay.day.in_(list(arrivals))),  # type: ignore[attr-defined]
                )
            )
        ).all()
    )
    due: dict[dt.date, str] = {}
    day = window_start
    while day <= last_due:
        if day not in rolled:
            due[day] = "unrolled"
        day += dt.timedelta(days=1)
    for day, received_at in arrivals.items():
        if day not in rolled:
            due[day] = "unrolled"
        elif received_at > rolled[day]:
            due[day] = "late"
    return [DueDay(site.id, day, due[day]) for day in sorted(due)]


async def record_checked(db: Database, *, site_ids: Iterable[str], checked_until: dt.datetime) -> None:
    """Remember that the sites' arrivals up to `checked_until` are reflected in rolled days."""
    async with db.transaction() as session:
        for site_id in site_ids:
            statement = upsert(session, RollupMark).values(site_id=site_id, checked_until=checked_until)
            await session.execute(
                statement.on_conflict_do_update(index_elements=["site_id"], set_={"checked_until": checked_until})
            )


# --- A whole run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolledUp:
    """One rolled site-day: how many meters got a total, and why it was rolled."""

    site_id: str
    day: dt.date
    meters: int
    reason: str


@dataclass
class RollupReport:
    """What a run rolled; `complete` is False when it was asked to stop before the end."""

    days: list[RolledUp] = field(default_factory=list)
    complete: bool = True


Progress = Callable[[int, int, RolledUp], None]


async def roll_up_due(
    db: Database,
    *,
    now: dt.datetime,
    site_id: str | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RollupReport:
    """Roll every due site-day (catch-up after downtime, late packets); idempotent.

    The sites' marks advance only when every due day was rolled, so a run stopped halfway is
    simply picked up by the next one.
    """
    plan = await find_due_days(db, now=now, site_id=site_id)
    report = RollupReport()
    for number, due in enumerate(plan.days, start=1):
        if should_stop is not None and should_stop():
            report.complete = False
            return report
        meters = await roll_up_day(db, site_id=due.site_id, day=due.day, now=now)
        rolled = RolledUp(due.site_id, due.day, meters, due.reason)
        report.days.append(rolled)
        if progress is not None:
            progress(number, len(plan.days), rolled)
    await record_checked(db, site_ids=plan.site_ids, checked_until=plan.checked_until)
    return report


async def roll_up_date(
    db: Database,
    *,
    day: dt.date,
    now: dt.datetime,
    site_id: str | None = None,
    progress: Progress | None = None,
) -> RollupReport:
    """Roll one calendar day for one site or every site, whether due or not (by hand)."""
    async with db.reader() as session:
        if site_id is not None:
            sites = [await site_row(session, site_id)]
        else:
            sites = list((await session.execute(select(Site).order_by(Site.id))).scalars())
    for site in sites:
        check_day_over(site, day, now)
    report = RollupReport()
    for number, site in enumerate(sites, start=1):
        meters = await roll_up_day(db, site_id=site.id, day=day, now=now)
        rolled = RolledUp(site.id, day, meters, "requested")
        report.days.append(rolled)
        if progress is not None:
            progress(number, len(sites), rolled)
    return report


# --- Completeness -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DayGaps:
    """Meters of a site-day with fewer intervals than the day has."""

    site_id: str
    day: dt.date
    timezone: str
    intervals_expected: int
    rolled_at: dt.datetime
    meters: list[tuple[int, int]]  # (meter_no, intervals seen)


async def day_gaps(db: Database, *, site_id: str, day: dt.date, now: dt.datetime) -> DayGaps:
    """The meters that existed on an ended day and have missing intervals, from `daily_total`.

    A day never rolled is rolled first (what the job would do within minutes anyway).
    """
    async with db.reader() as session:
        site = await site_row(session, site_id)
        check_day_over(site, day, now)
        rolled = await session.get(RolledDay, (site_id, day))
    if rolled is None:
        await roll_up_day(db, site_id=site_id, day=day, now=now)
    start, end = day_bounds(site.timezone, day)
    expected = len(day_intervals(site.timezone, day))
    seen = func.coalesce(DailyTotal.intervals, 0)
    existed = sa.and_(
        Meter.created_at < end,
        sa.or_(Meter.retired_at.is_(None), Meter.retired_at >= start),  # type: ignore[union-attr,operator]
    )
    query = (
        select(Meter.meter_no, seen)
        .outerjoin(DailyTotal, sa.and_(DailyTotal.meter_no == Meter.meter_no, DailyTotal.day == day))  # type: ignore[arg-type]
        .where(Meter.site_id == site_id, sa.or_(existed, DailyTotal.meter_no.is_not(None)), seen < expected)  # type: ignore[attr-defined]
        .order_by(Meter.meter_no)
    )
    async with db.reader() as session:
        rows = [(int(n), int(i)) for n, i in (await session.execute(query)).all()]
        rolled = await session.get(RolledDay, (site_id, day))
    assert rolled is not None  # written above or before
    return DayGaps(site_id, day, site.timezone, expected, rolled.rolled_at, rows)
