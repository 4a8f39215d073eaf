"""A site's month for its accountant: one row per meter, streamed, and the totals.

Per meter: unit and consumer, grid and DG kWh, what was billed (grid ₹, DG ₹, fixed ₹),
recharges ₹, adjustments ₹, opening and closing balances, the local days on which its supply
was off at some time, and the half hours received of those expected while it was in service.
Same basis as the statements (storage/reads/statements.py): energy by interval start, fixed charges
by their day, money by when it was made; so each row's closing balance is its statement's.

Balances are worked back from the stored balance, not summed over a meter's whole history:
balance at T = balance now − Σ ledger entries from T on + Σ charges of readings from T on, so a
report reads the readings of the month and of what followed it only. Meters are read in
batches (their readings through the primary key, aggregated per meter) and their lines yielded
batch by batch (`stream_site_report`): a 10,000-meter site is never held in memory at once.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.calendar import HALF_HOUR
from storage.db.engine import Database
from storage.db.models import Command, LedgerEntry, Meter, Reading, Site
from storage.db.types import Money
from storage.errors import NotFound
from storage.reads import energy
from storage.reads.statements import Month, check_month_started
from storage.registry.meter_roles import billed

ZERO = Decimal("0.00")
ZERO_KWH = Decimal("0.000")
OFF, ON = ("cut", "stop"), ("restore", "start")
BATCH = 500  # meters per round of queries: bounds memory whatever the site's size


@dataclass
class MeterMonth:
    """One meter's line of the site report."""

    meter_no: int
    unit_no: str
    consumer_name: str
    grid_kwh: Decimal = ZERO_KWH
    dg_kwh: Decimal = ZERO_KWH
    grid_amount: Decimal = ZERO
    dg_amount: Decimal = ZERO
    fixed_charges: Decimal = ZERO  # positive: taken from the balance
    recharges: Decimal = ZERO
    adjustments: Decimal = ZERO  # signed; includes balances moved by a meter replacement
    opening_balance: Decimal = ZERO
    closing_balance: Decimal = ZERO
    days_cut: int = 0
    intervals: int = 0
    intervals_expected: int = 0

    @property
    def billed(self) -> Decimal:
        """Grid, DG and fixed charges together."""
        return self.grid_amount + self.dg_amount + self.fixed_charges


SUMMED = tuple(f.name for f in fields(MeterMonth) if f.name not in ("meter_no", "unit_no", "consumer_name"))


@dataclass
class SiteTotals:
    """The sums of every column of the report (a `MeterMonth` without a meter)."""

    meters: int = 0
    grid_kwh: Decimal = ZERO_KWH
    dg_kwh: Decimal = ZERO_KWH
    grid_amount: Decimal = ZERO
    dg_amount: Decimal = ZERO
    fixed_charges: Decimal = ZERO
    recharges: Decimal = ZERO
    adjustments: Decimal = ZERO
    opening_balance: Decimal = ZERO
    closing_balance: Decimal = ZERO
    days_cut: int = 0
    intervals: int = 0
    intervals_expected: int = 0

    def add(self, row: MeterMonth) -> None:
        """Count a meter's line in."""
        self.meters += 1
        for name in SUMMED:
            setattr(self, name, getattr(self, name) + getattr(row, name))

    @property
    def billed(self) -> Decimal:
        return self.grid_amount + self.dg_amount + self.fixed_charges


@dataclass(frozen=True)
class ReportHeader:
    """Which site and month a report is of."""

    site_id: str
    name: str
    timezone: str
    month: Month


def _in(column: sa.ColumnElement[bool], value: sa.ColumnElement[Decimal], zero: sa.ColumnElement[Decimal]) -> object:
    return func.coalesce(func.sum(sa.case((column, value), else_=zero)), zero)


def _meters_of(column: Any, batch: list[int]) -> tuple[sa.ColumnElement[bool], ...]:
    """The batch's meters: their list and their range, written into the SQL (they are integers
    from our own table). As bound parameters, PostgreSQL switches to a generic plan after five
    batches, which cannot see the range and scans every reading of the site for each batch."""
    numbers = sa.bindparam("batch", batch, expanding=True, literal_execute=True)
    low, high = (
        sa.bindparam(name, value, literal_execute=True) for name, value in (("low", batch[0]), ("high", batch[-1]))
    )
    return column.in_(numbers), column.between(low, high)


def _readings_query(batch: list[int], month: Month) -> sa.Select[tuple[object, ...]]:
    """Per meter of the batch: the month's energy and charges and its half hours received."""
    return (
        select(
            Reading.meter_no,
            func.sum(energy.grid_kwh()),
            func.sum(energy.dg_kwh()),
            func.sum(energy.grid_charge()),
            func.sum(energy.dg_charge()),
            func.count(),
        )
        .where(
            *_meters_of(Reading.meter_no, batch),
            Reading.interval_start >= month.start,  # type: ignore[arg-type]
            Reading.interval_start < month.end,  # type: ignore[arg-type]
        )
        .group_by(Reading.meter_no)
    )


def _charges_after_query(batch: list[int], month: Month) -> sa.Select[tuple[object, ...]]:
    """Per meter of the batch: the charges of readings after the month (to work balances back)."""
    return (
        select(Reading.meter_no, func.sum(Reading.charge))
        .where(*_meters_of(Reading.meter_no, batch), Reading.interval_start >= month.end)  # type: ignore[arg-type]
        .group_by(Reading.meter_no)
    )


def _ledger_query(batch: list[int], month: Month) -> sa.Select[tuple[object, ...]]:
    """Per meter of the batch: the month's recharges, adjustments and fixed charges, and the sum of
    every entry that followed the month."""
    zero = sa.literal(0, Money)
    is_fixed = sa.and_(LedgerEntry.kind == "fixed", LedgerEntry.day.is_not(None))  # type: ignore[union-attr]
    during = sa.and_(LedgerEntry.created_at < month.end, sa.not_(is_fixed))  # type: ignore[operator]
    fixed_during = sa.and_(is_fixed, LedgerEntry.day < month.next_first)  # type: ignore[operator]
    adjustment = LedgerEntry.kind.in_(("adjustment", "opening"))  # type: ignore[attr-defined]
    return (
        select(
            LedgerEntry.meter_no,
            _in(sa.and_(during, LedgerEntry.kind == "credit"), LedgerEntry.amount, zero),
            _in(sa.and_(during, adjustment), LedgerEntry.amount, zero),
            _in(fixed_during, LedgerEntry.amount, zero),
            _in(sa.not_(sa.or_(during, fixed_during)), LedgerEntry.amount, zero),
        )
        .where(
            *_meters_of(LedgerEntry.meter_no, batch),
            sa.or_(
                sa.and_(is_fixed, LedgerEntry.day >= month.first),  # type: ignore[operator]
                sa.and_(sa.not_(is_fixed), LedgerEntry.created_at >= month.start),  # type: ignore[operator]
            ),
        )
        .group_by(LedgerEntry.meter_no)
    )


def _meters_query(site_id: str, month: Month) -> sa.Select[tuple[int]]:
    """The site's meters in service at some time during the month, by number."""
    return (
        select(Meter.meter_no)
        .where(
            Meter.site_id == site_id,
            billed(Meter.role),  # the flats: bulk meters are in the energy audit
            Meter.created_at < month.end,  # type: ignore[operator]
            sa.or_(Meter.retired_at.is_(None), Meter.retired_at >= month.start),  # type: ignore[union-attr, operator]
        )
        .order_by(Meter.meter_no)
    )


async def _supply_off_days(session: AsyncSession, site_id: str, month: Month, zone: ZoneInfo) -> dict[int, int]:
    """Per meter with any, the local days of the month on which its supply was off at some time,
    from the relay commands carried out (the gateway's cuts and restores, staff stops and starts)."""
    relay = Command.action.in_(OFF + ON)  # type: ignore[attr-defined]
    site_meters = select(Meter.meter_no).where(Meter.site_id == site_id)
    last_before = (
        select(func.max(Command.id))
        .where(
            Command.meter_no.in_(site_meters),  # type: ignore[attr-defined]
            relay,
            Command.state == "done",
            Command.finished_at < month.start,  # type: ignore[operator]
        )
        .group_by(Command.meter_no)
    )
    query = (
        select(Command.meter_no, Command.action, Command.finished_at)
        .where(
            Command.meter_no.in_(site_meters),  # type: ignore[attr-defined]
            relay,
            Command.state == "done",
            sa.or_(
                Command.id.in_(last_before),  # type: ignore[union-attr]
                sa.and_(Command.finished_at >= month.start, Command.finished_at < month.end),  # type: ignore[operator]
            ),
        )
        .order_by(Command.meter_no, Command.finished_at, Command.id)
    )
    changes: dict[int, list[tuple[dt.datetime, bool]]] = defaultdict(list)
    for meter_no, action, finished_at in await session.execute(query):
        changes[meter_no].append((max(finished_at, month.start), action in ON))
    days: dict[int, int] = {}
    for meter_no, steps in changes.items():
        off: set[dt.date] = set()
        for (at, on), following in zip(steps, [*steps[1:], (month.end, True)], strict=True):
            if not on:  # off from `at` until the next change (or the month's end)
                day = at.astimezone(zone).date()
                until = (following[0] - dt.timedelta(microseconds=1)).astimezone(zone).date()
                while day <= until:
                    off.add(day)
                    day += dt.timedelta(days=1)
        if off:
            days[meter_no] = len(off)
    return days


def _expected(month: Month, created: dt.datetime, retired: dt.datetime | None, now: dt.datetime) -> int:
    """Half hours of the month while the meter was in service, up to now."""
    start = max(month.start, created)
    end = min(month.end, retired or month.end, now)
    if end <= start:
        return 0
    first = start + (-(start - month.start)) % HALF_HOUR  # the first whole half hour
    return max(0, (end - first) // HALF_HOUR)


async def _batch(
    session: AsyncSession, batch: list[int], month: Month, now: dt.datetime, off_days: dict[int, int]
) -> list[MeterMonth]:
    """The lines of a batch of meters, in the batch's order."""
    columns = (Meter.meter_no, Meter.unit_no, Meter.consumer_name, Meter.balance, Meter.created_at, Meter.retired_at)
    meters = await session.execute(select(*columns).where(Meter.meter_no.in_(batch)))  # type: ignore[attr-defined]
    by_meter = {row[0]: row for row in meters}
    readings = {row[0]: row[1:] for row in await session.execute(_readings_query(batch, month))}
    charges_after = dict((await session.execute(_charges_after_query(batch, month))).all())
    ledger = {row[0]: row[1:] for row in await session.execute(_ledger_query(batch, month))}
    lines = []
    for meter_no in batch:
        _, unit_no, consumer, balance, created, retired = by_meter[meter_no]
        grid_kwh, dg_kwh, grid_amount, dg_amount, intervals = readings.get(
            meter_no, (ZERO_KWH, ZERO_KWH, ZERO, ZERO, 0)
        )
        recharges, adjustments, fixed, after = ledger.get(meter_no, (ZERO, ZERO, ZERO, ZERO))
        line = MeterMonth(
            meter_no=meter_no,
            unit_no=unit_no,
            consumer_name=consumer,
            grid_kwh=grid_kwh,
            dg_kwh=dg_kwh,
            grid_amount=grid_amount,
            dg_amount=dg_amount,
            fixed_charges=-fixed,
            recharges=recharges,
            adjustments=adjustments,
            days_cut=off_days.get(meter_no, 0),
            intervals=intervals,
            intervals_expected=_expected(month, created, retired, now),
        )
        line.closing_balance = balance - after + charges_after.get(meter_no, ZERO)
        line.opening_balance = line.closing_balance - line.recharges - line.adjustments + line.billed
        lines.append(line)
    return lines


async def site_month(
    session: AsyncSession, *, site_id: str, year: int, month: int, now: dt.datetime
) -> tuple[Site, Month]:
    """A site and one of its months: NotFound for an unknown site, InvalidInput for a month
    that has not begun there."""
    site = await session.get(Site, site_id)
    if site is None:
        raise NotFound(f"unknown site {site_id!r}", {"site_id": ["Unknown site."]})
    period = Month.of(year, month, site.timezone)
    check_month_started(period, now)
    return site, period


async def stream_site_report(
    db: Database, *, site_id: str, year: int, month: int, now: dt.datetime
) -> AsyncIterator[ReportHeader | MeterMonth | SiteTotals]:
    """The report: its header, then one `MeterMonth` per meter in meter-number order, then the totals.

    NotFound for an unknown site; InvalidInput for a month that has not begun. A read session
    (never the write lock, however slow the client); `BATCH` meters are read at a time, each by
    its primary-key range of readings, so memory does not grow with the site.
    """
    async with db.reader() as session:
        site, period = await site_month(session, site_id=site_id, year=year, month=month, now=now)
        zone = ZoneInfo(site.timezone)
        yield ReportHeader(site.id, site.name, site.timezone, period)
        off_days = await _supply_off_days(session, site_id, period, zone)
        totals = SiteTotals()
        meter_nos = list((await session.execute(_meters_query(site_id, period))).scalars())
        for first in range(0, len(meter_nos), BATCH):
            batch = meter_nos[first : first + BATCH]
            for line in await _batch(session, batch, period, now, off_days):
                totals.add(line)
                yield line
        yield totals
