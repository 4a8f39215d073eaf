"""The energy audit of a site's month: the energy it bought against the energy its flats were
billed for, per local day and for the month.

- Grid: the incomer's kWh (its meters of role `incomer`: `storage.registry.meter_roles`) against Σ the
  flats' grid kWh → loss kWh and loss %.
- DG: each DG's kWh, from its DG meter when one is registered (role `dg`, its `dg_no`), else from
  the deltas of the energy register its controller posts to `/dg` (`dg_sample`) → against Σ the
  flats' DG kWh → DG loss.
- Fuel: each DG's fuel level falls are the diesel it burnt; a rise is a refill, counted apart and
  never as negative use → DG kWh per litre.

A value is None when its data is missing, never 0: no incomer registered, or no incomer reading
on that day, means the loss is unknown. A month total is None if any of its days is (a guess from
the other days would look like a measurement). A series' step (register or fuel) counts on the
local day of its later sample; the week before the month starts the series. Every reading's grid
and DG parts are read through `storage.reads.energy`.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.calendar import day_bounds, local_day
from storage.db.engine import Database
from storage.db.models import DgSample, DieselGenerator, Meter, Reading
from storage.reads import energy
from storage.reads.site_report import site_month
from storage.reads.statements import Month
from storage.registry.meter_roles import DG_METER, INCOMER, billed

KWH = Decimal("0.001")
HUNDREDTH = Decimal("0.01")
ZERO_KWH = Decimal("0.000")
SERIES_LEAD = dt.timedelta(days=7)  # samples this long before the month start its series


def percent(part: Decimal | None, whole: Decimal | None) -> Decimal | None:
    """`part` as a % of `whole` to 0.01, None if either is unknown or the whole is not positive."""
    if part is None or whole is None or whole <= 0:
        return None
    return (part * 100 / whole).quantize(HUNDREDTH)


def _days_of(period: Month) -> list[dt.date]:
    """The local days of a month."""
    return [period.first + dt.timedelta(days=n) for n in range((period.next_first - period.first).days)]


def _sum(values: Iterable[Decimal | None]) -> Decimal | None:
    """Σ values, None if any is None."""
    total = ZERO_KWH
    for value in values:
        if value is None:
            return None
        total += value
    return total


@dataclass(frozen=True)
class EnergyBalance:
    """Energy in against energy billed, for a day or a month (None: not measured)."""

    incomer_kwh: Decimal | None
    flats_grid_kwh: Decimal
    dg_kwh: Decimal | None
    flats_dg_kwh: Decimal
    fuel_used_litres: Decimal | None
    refill_litres: Decimal

    def with_flats(self, grid_kwh: Decimal, dg_kwh: Decimal) -> EnergyBalance:
        """The same with the flats' kWh given (summed elsewhere: the site report's totals)."""
        return replace(self, flats_grid_kwh=grid_kwh, flats_dg_kwh=dg_kwh)

    @property
    def grid_loss_kwh(self) -> Decimal | None:
        """Grid energy bought that no flat paid for."""
        return None if self.incomer_kwh is None else self.incomer_kwh - self.flats_grid_kwh

    @property
    def grid_loss_pct(self) -> Decimal | None:
        """The grid loss as a % of the incomer's kWh."""
        return percent(self.grid_loss_kwh, self.incomer_kwh)

    @property
    def dg_loss_kwh(self) -> Decimal | None:
        """DG energy generated that no flat paid for."""
        return None if self.dg_kwh is None else self.dg_kwh - self.flats_dg_kwh

    @property
    def dg_loss_pct(self) -> Decimal | None:
        """The DG loss as a % of the DGs' kWh."""
        return percent(self.dg_loss_kwh, self.dg_kwh)

    @property
    def dg_kwh_per_litre(self) -> Decimal | None:
        """DG kWh per litre of diesel burnt, to 0.01 (None without fuel burnt or DG kWh)."""
        if self.dg_kwh is None or not self.fuel_used_litres:
            return None
        return (self.dg_kwh / self.fuel_used_litres).quantize(HUNDREDTH)


@dataclass(frozen=True)
class AuditDay(EnergyBalance):
    """One local day of the audit."""

    day: dt.date = dt.date.min


@dataclass(frozen=True)
class EnergyAudit:
    """A site's month: its days (those begun by now) and the month's totals."""

    site_id: str
    name: str
    timezone: str
    month: Month
    incomer_meters: int
    dg_sources: dict[str, str]  # DG number → "meter" or "register"
    days: list[AuditDay]
    totals: EnergyBalance


class _Series:
    """Steps of one DG's fuel level or energy register, per local day of their later sample."""

    def __init__(self) -> None:
        self.last: Decimal | None = None
        self.falls: dict[dt.date, Decimal] = defaultdict(lambda: ZERO_KWH)  # register rises or fuel falls
        self.rises: dict[dt.date, Decimal] = defaultdict(lambda: ZERO_KWH)  # refills (fuel)
        self.seen: set[dt.date] = set()  # days with a step: known, even if it is zero

    def step(self, day: dt.date, value: Decimal, *, rising_use: bool) -> None:
        """Take a sample: the change since the last one is use (or a refill) on `day`."""
        if self.last is not None:
            change = value - self.last
            used, refill = (change, ZERO_KWH) if rising_use else (-change, ZERO_KWH)
            if used < 0:  # the other way: a refill of fuel (a register never goes back)
                used, refill = ZERO_KWH, -used
            self.falls[day] += used
            self.rises[day] += refill
            self.seen.add(day)
        self.last = value

    def on(self, day: dt.date) -> Decimal | None:
        """The day's use, None without a step that day."""
        return self.falls[day] if day in self.seen else None


async def _flats_per_day(
    session: AsyncSession, site_id: str, days: list[dt.date], tz: str, *, by_half_hour: bool
) -> tuple[dict[dt.date, Decimal], dict[dt.date, Decimal]]:
    """Σ the flats' grid kWh and DG kWh per local day of `days`.

    Two plans, one per database, for the same sums. `by_half_hour` (PostgreSQL): one aggregate
    over all the days grouped by half hour, folded into local days here; asked one day at a
    time, its planner scanned the month's whole partition for each day (13 s for the bench's
    10,000 meters, 2.3 s in one pass). Otherwise (SQLite, which has no hash aggregate): one
    aggregate per day, each walking the site's meters through the primary key; grouped by half
    hour, SQLite sorted the site-month's every reading (41.7 s and 964 MB).
    """
    grid: dict[dt.date, Decimal] = defaultdict(lambda: ZERO_KWH)
    dg: dict[dt.date, Decimal] = defaultdict(lambda: ZERO_KWH)
    if not days:
        return grid, dg

    def flats_between(start: dt.datetime, end: dt.datetime) -> sa.Select[Any]:
        return (
            select(func.sum(energy.grid_kwh()), func.sum(energy.dg_kwh()))
            .join(Meter, Meter.meter_no == Reading.meter_no)  # type: ignore[arg-type]
            .where(
                Meter.site_id == site_id,
                billed(Meter.role),
                Reading.interval_start >= start,  # type: ignore[arg-type]
                Reading.interval_start < end,  # type: ignore[arg-type]
            )
        )

    if by_half_hour:
        wanted = set(days)
        start, end = day_bounds(tz, min(days))[0], day_bounds(tz, max(days))[1]
        query = flats_between(start, end).add_columns(Reading.interval_start).group_by(Reading.interval_start)
        for grid_kwh, dg_kwh, interval_start in (await session.execute(query)).all():
            day = local_day(tz, interval_start)
            if day in wanted:
                grid[day] += grid_kwh
                dg[day] += dg_kwh
        return grid, dg
    for day in days:
        grid_kwh, dg_kwh = (await session.execute(flats_between(*day_bounds(tz, day)))).one()
        grid[day], dg[day] = grid_kwh or ZERO_KWH, dg_kwh or ZERO_KWH
    return grid, dg


async def _measured_per_day(
    session: AsyncSession, meter_nos: list[int], in_month: tuple[Any, ...], tz: str
) -> dict[tuple[int, dt.date], Decimal]:
    """What each bulk meter measured per local day (a key only for days with readings)."""
    if not meter_nos:  # most sites: no query at all (an empty IN can still make a plan scan)
        return {}
    rows = await session.execute(
        select(Reading.meter_no, Reading.interval_start, energy.measured_kwh()).where(
            Reading.meter_no.in_(meter_nos),  # type: ignore[attr-defined]
            *in_month,
        )
    )
    sums: dict[tuple[int, dt.date], Decimal] = defaultdict(lambda: ZERO_KWH)
    for meter_no, start, kwh in rows:
        sums[(meter_no, local_day(tz, start))] += kwh
    return sums


async def _dg_series(
    session: AsyncSession, site_id: str, period: Month, tz: str
) -> tuple[dict[str, _Series], dict[str, _Series]]:
    """Each DG's fuel and energy register series, from the week before the month to its end."""
    samples = await session.execute(
        select(DgSample.dg_no, DgSample.at, DgSample.fuel_litres, DgSample.reading_kwh)
        .where(DgSample.site_id == site_id, DgSample.at >= period.start - SERIES_LEAD, DgSample.at < period.end)
        .order_by(DgSample.dg_no, DgSample.at, DgSample.id)  # type: ignore[arg-type]
    )
    fuel: dict[str, _Series] = defaultdict(_Series)
    register: dict[str, _Series] = defaultdict(_Series)
    for dg_no, at, litres, kwh in samples:
        day = local_day(tz, at)
        if litres is not None:
            fuel[dg_no].step(day, litres, rising_use=False)
        if kwh is not None:
            register[dg_no].step(day, kwh, rising_use=True)
    return fuel, register


async def site_energy_audit(
    db: Database, *, site_id: str, year: int, month: int, now: dt.datetime, flats: bool = True
) -> EnergyAudit:
    """The energy audit of a site's month (NotFound: unknown site; InvalidInput: not begun).

    `flats=False`: the bulk meters' and DGs' side only, the flats' kWh left at 0, for the site
    report, which sums the flats' kWh itself (`EnergyBalance.with_flats`).
    """
    async with db.reader() as session:
        site, period = await site_month(session, site_id=site_id, year=year, month=month, now=now)
        tz = site.timezone
        in_month = (Reading.interval_start >= period.start, Reading.interval_start < period.end)
        begun = [day for day in _days_of(period) if day <= local_day(tz, now)]
        bulk_query = select(Meter.meter_no, Meter.role, Meter.dg_no).where(
            Meter.site_id == site_id, sa.not_(billed(Meter.role))
        )
        bulk = (await session.execute(bulk_query)).all()
        flats_grid, flats_dg = await _flats_per_day(
            session, site_id, begun if flats else [], tz, by_half_hour=not db.is_sqlite
        )
        measured = await _measured_per_day(session, [row.meter_no for row in bulk], in_month, tz)
        dg_query = select(DieselGenerator.dg_no).where(DieselGenerator.site_id == site_id)
        dgs = list((await session.execute(dg_query)).scalars())
        fuel, register = await _dg_series(session, site_id, period, tz)
    incomers = [row.meter_no for row in bulk if row.role == INCOMER]
    dg_meters: dict[str, list[int]] = defaultdict(list)
    for row in bulk:
        if row.role == DG_METER and row.dg_no is not None:
            dg_meters[row.dg_no].append(row.meter_no)

    def metered(meter_nos: list[int], day: dt.date) -> Decimal | None:
        """Σ of these meters' kWh on the day; None if none of them read that day."""
        values = [measured[(m, day)] for m in meter_nos if (m, day) in measured]
        return sum(values, ZERO_KWH) if values else None

    def dg_energy(day: dt.date) -> Decimal | None:
        """Σ the DGs' kWh: each from its meter if it has one, else from its register."""
        if not dgs:
            return None
        return _sum(metered(dg_meters[d], day) if dg_meters.get(d) else register[d].on(day) for d in dgs)

    days = [
        AuditDay(
            day=day,
            incomer_kwh=metered(incomers, day) if incomers else None,
            flats_grid_kwh=flats_grid.get(day, ZERO_KWH),
            dg_kwh=dg_energy(day),
            flats_dg_kwh=flats_dg.get(day, ZERO_KWH),
            fuel_used_litres=_sum(fuel[d].on(day) for d in dgs) if dgs else None,
            refill_litres=sum((fuel[d].rises[day] for d in dgs), ZERO_KWH),
        )
        for day in begun
    ]
    totals = EnergyBalance(
        incomer_kwh=_sum(d.incomer_kwh for d in days),
        flats_grid_kwh=sum((d.flats_grid_kwh for d in days), ZERO_KWH),
        dg_kwh=_sum(d.dg_kwh for d in days),
        flats_dg_kwh=sum((d.flats_dg_kwh for d in days), ZERO_KWH),
        fuel_used_litres=_sum(d.fuel_used_litres for d in days),
        refill_litres=sum((d.refill_litres for d in days), ZERO_KWH),
    )
    sources = {d: "meter" if dg_meters.get(d) else "register" for d in dgs}
    return EnergyAudit(site.id, site.name, tz, period, len(incomers), sources, days, totals)
