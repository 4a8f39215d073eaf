"""A resident's monthly statement: why a meter's balance is what it is at the end of a month.

For one meter and one calendar month of its site (local time): the opening balance, each local
day's grid and DG energy with its rates and amounts and the day's fixed charge, the recharges
(with their transaction ids), adjustments with their reasons, the supply changes (cuts, deferred
cuts, restores, staff stops and starts), and the closing balance.

The statement is on a service-period basis: energy belongs to the month of its interval start
(whenever the packet arrived), a fixed charge to the month of the day it is for, a recharge or an
adjustment to the month it was made in. Opening and closing balances are computed on the same
basis straight from the ledger and the readings' charges, independently of the listed lines, so
the check line (opening + credits − debits ± adjustments = closing) is a real check: it fails if
a line is missing or a reading's grid and DG parts do not add up to its charge.
"""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db.engine import Database
from storage.db.event_models import SiteEvent
from storage.db.models import Command, LedgerEntry, Meter, MeterChange, Reading, Site, Tariff
from storage.errors import InvalidInput, unknown_meter
from storage.reads import energy

ZERO = Decimal("0.00")
ZERO_KWH = Decimal("0.000")
CENT = Decimal("0.01")
SUPPLY_EVENTS = {"cut.deferred": "cut deferred", "meter.cut": "cut", "meter.restored": "restored"}
STAFF_RELAY = {"stop": "stopped by staff", "start": "started by staff"}


@dataclass(frozen=True)
class Month:
    """A calendar month of a site: its first local day, the next month's, and both as UTC instants."""

    first: dt.date
    next_first: dt.date
    start: dt.datetime
    end: dt.datetime

    @classmethod
    def of(cls, year: int, month: int, timezone: str) -> Month:
        """The month `year`-`month` in the site's time zone."""
        first = dt.date(year, month, 1)
        next_first = dt.date(year + month // 12, month % 12 + 1, 1)
        zone = ZoneInfo(timezone)

        def start(day: dt.date) -> dt.datetime:
            return dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)

        return cls(first, next_first, start(first), start(next_first))

    @property
    def label(self) -> str:
        """`YYYY-MM`."""
        return f"{self.first:%Y-%m}"


@dataclass
class StatementDay:
    """One local day's charges (two rows for a day whose tariff changed during it)."""

    day: dt.date
    grid_rate: Decimal
    dg_rate: Decimal
    grid_kwh: Decimal = ZERO_KWH
    dg_kwh: Decimal = ZERO_KWH
    grid_amount: Decimal = ZERO
    dg_amount: Decimal = ZERO
    fixed_charge: Decimal = ZERO  # positive: what the day's fixed charge took
    intervals: int = 0


@dataclass(frozen=True)
class StatementCredit:
    """A recharge (or the balance a meter was registered with)."""

    at: dt.datetime
    amount: Decimal
    transaction_id: str | None
    reason: str


@dataclass(frozen=True)
class StatementAdjustment:
    """A staff correction or a balance moved by a meter replacement, signed."""

    at: dt.datetime
    amount: Decimal
    reason: str
    created_by: str


@dataclass(frozen=True)
class SupplyChange:
    """A cut, a deferred cut, a restore, or a staff stop or start."""

    at: dt.datetime
    what: str
    reason: str


@dataclass
class Statement:
    """A meter's month: every line, the totals, and both balances."""

    meter_no: int
    site_id: str
    unit_no: str
    consumer_name: str
    timezone: str
    month: Month
    opening_balance: Decimal
    closing_balance: Decimal
    days: list[StatementDay] = field(default_factory=list)
    credits: list[StatementCredit] = field(default_factory=list)
    adjustments: list[StatementAdjustment] = field(default_factory=list)
    supply: list[SupplyChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # a meter replaced during the month

    @property
    def month_label(self) -> str:
        """`YYYY-MM`."""
        return self.month.label

    @property
    def totals(self) -> Statement:
        """The statement itself, for the reply's `totals` object (its sums are properties)."""
        return self

    @property
    def check(self) -> Statement:
        """The statement itself, for the reply's `check` object."""
        return self

    @property
    def grid_kwh(self) -> Decimal:
        return sum((d.grid_kwh for d in self.days), ZERO_KWH)

    @property
    def dg_kwh(self) -> Decimal:
        return sum((d.dg_kwh for d in self.days), ZERO_KWH)

    @property
    def grid_amount(self) -> Decimal:
        return sum((d.grid_amount for d in self.days), ZERO)

    @property
    def dg_amount(self) -> Decimal:
        return sum((d.dg_amount for d in self.days), ZERO)

    @property
    def fixed_charges(self) -> Decimal:
        return sum((d.fixed_charge for d in self.days), ZERO)

    @property
    def debits(self) -> Decimal:
        """Energy and fixed charges: everything the month took from the balance."""
        return self.grid_amount + self.dg_amount + self.fixed_charges

    @property
    def total_credits(self) -> Decimal:
        return sum((c.amount for c in self.credits), ZERO)

    @property
    def total_adjustments(self) -> Decimal:
        return sum((a.amount for a in self.adjustments), ZERO)

    @property
    def computed_closing(self) -> Decimal:
        """opening + credits − debits ± adjustments, from the listed lines."""
        return self.opening_balance + self.total_credits - self.debits + self.total_adjustments

    @property
    def balanced(self) -> bool:
        """True when the lines account for the closing balance to the paisa."""
        return self.computed_closing == self.closing_balance

    @property
    def check_line(self) -> str:
        """The check in words: `opening + credits − debits ± adjustments = closing`."""
        sign = "+" if self.total_adjustments >= 0 else "−"
        verdict = "ok" if self.balanced else f"MISMATCH: closing balance is {self.closing_balance}"
        return (
            f"{self.opening_balance} + {self.total_credits} − {self.debits} {sign} {abs(self.total_adjustments)}"
            f" = {self.computed_closing} ({verdict})"
        )


def check_month_started(month: Month, now: dt.datetime) -> None:
    """InvalidInput for a month that has not begun at the site yet."""
    if month.start > now:
        raise InvalidInput(
            f"month {month.label} has not begun yet", {"month": ["Must not be after the current month."]}
        )


def _ledger_before(meter_no: int, start: dt.datetime, first: dt.date) -> sa.Select[tuple[Decimal | None]]:
    """Σ ledger amounts that fall before a month: fixed charges by their day, the rest by when made."""
    is_fixed = sa.and_(LedgerEntry.kind == "fixed", LedgerEntry.day.is_not(None))  # type: ignore[union-attr]
    before = sa.or_(
        sa.and_(is_fixed, LedgerEntry.day < first),  # type: ignore[operator]
        sa.and_(sa.not_(is_fixed), LedgerEntry.created_at < start),  # type: ignore[operator]
    )
    return select(func.sum(LedgerEntry.amount)).where(LedgerEntry.meter_no == meter_no, before)


async def balance_before(session: AsyncSession, *, meter_no: int, start: dt.datetime, first: dt.date) -> Decimal:
    """A meter's balance at the start of local day `first` (`start` in UTC), on the statement basis."""
    ledger = (await session.execute(_ledger_before(meter_no, start, first))).scalar_one() or ZERO
    charges = (
        await session.execute(
            select(func.sum(Reading.charge)).where(Reading.meter_no == meter_no, Reading.interval_start < start)  # type: ignore[arg-type]
        )
    ).scalar_one() or ZERO
    return (ledger - charges).quantize(CENT)


async def _tariffs(session: AsyncSession, site_id: str) -> tuple[list[dt.datetime], list[Tariff]]:
    query = select(Tariff).where(Tariff.site_id == site_id).order_by(Tariff.effective_from)  # type: ignore[arg-type]
    rows = list((await session.execute(query)).scalars())
    return [row.effective_from for row in rows], rows


async def _days(
    session: AsyncSession, meter: Meter, month: Month, zone: ZoneInfo, now: dt.datetime
) -> list[StatementDay]:
    starts, tariffs = await _tariffs(session, meter.site_id)

    def tariff_at(at: dt.datetime) -> Tariff:
        return tariffs[max(bisect.bisect_right(starts, at) - 1, 0)]

    rows: dict[tuple[dt.date, dt.datetime], StatementDay] = {}

    def row(day: dt.date, at: dt.datetime) -> StatementDay:
        tariff = tariff_at(at)
        key = (day, tariff.effective_from)
        if key not in rows:
            rows[key] = StatementDay(day=day, grid_rate=tariff.grid, dg_rate=tariff.dg)
        return rows[key]

    def day_start(day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)

    readings = select(
        Reading.interval_start,
        energy.grid_kwh().label("grid_kwh"),
        energy.dg_kwh().label("dg_kwh"),
        energy.grid_charge().label("grid_charge"),
        energy.dg_charge().label("dg_charge"),
    ).where(
        Reading.meter_no == meter.meter_no,
        Reading.interval_start >= month.start,  # type: ignore[arg-type]
        Reading.interval_start < month.end,  # type: ignore[arg-type]
    )
    for start, grid_kwh, dg_kwh, grid_charge, dg_charge in await session.execute(readings):
        line = row(start.astimezone(zone).date(), start)  # at the rates in force at the interval start
        line.grid_kwh += grid_kwh
        line.dg_kwh += dg_kwh
        line.grid_amount += grid_charge
        line.dg_amount += dg_charge
        line.intervals += 1

    def day_row(day: dt.date) -> StatementDay:
        """The day's first row; a day without readings gets the rates in force at its start."""
        ours = [key for key in rows if key[0] == day]
        return rows[min(ours)] if ours else row(day, day_start(day))

    fixed = select(LedgerEntry.day, LedgerEntry.amount).where(
        LedgerEntry.meter_no == meter.meter_no,
        LedgerEntry.kind == "fixed",
        LedgerEntry.day >= month.first,  # type: ignore[operator]
        LedgerEntry.day < month.next_first,  # type: ignore[operator]
    )
    for fixed_day, amount in await session.execute(fixed):
        day_row(fixed_day).fixed_charge -= amount
    # Every other day of the month the meter was in service (up to today), with nothing on it.
    day = max(month.first, meter.created_at.astimezone(zone).date())
    last = month.next_first - dt.timedelta(days=1)
    for until in (meter.retired_at, now):
        if until is not None:
            last = min(last, until.astimezone(zone).date())
    while day <= last:
        day_row(day)
        day += dt.timedelta(days=1)
    return [rows[key] for key in sorted(rows)]


async def _money_lines(
    session: AsyncSession, meter_no: int, month: Month
) -> tuple[list[StatementCredit], list[StatementAdjustment]]:
    query = (
        select(LedgerEntry)
        .where(
            LedgerEntry.meter_no == meter_no,
            LedgerEntry.kind != "fixed",
            LedgerEntry.created_at >= month.start,  # type: ignore[operator]
            LedgerEntry.created_at < month.end,  # type: ignore[operator]
        )
        .order_by(LedgerEntry.created_at, LedgerEntry.id)  # type: ignore[arg-type]
    )
    credits, adjustments = [], []
    for entry in (await session.execute(query)).scalars():
        if entry.kind == "opening" and not entry.amount:
            continue  # registered without money: nothing to explain
        if entry.kind == "credit":
            credits.append(StatementCredit(entry.created_at, entry.amount, entry.transaction_id, entry.reason))
        else:  # adjustments, and the balance a meter was registered with
            reason = entry.reason or ("opening balance" if entry.kind == "opening" else entry.kind)
            adjustments.append(StatementAdjustment(entry.created_at, entry.amount, reason, entry.created_by))
    return credits, adjustments


async def _supply(session: AsyncSession, meter_no: int, month: Month) -> list[SupplyChange]:
    events = select(SiteEvent.at, SiteEvent.type, SiteEvent.data).where(
        SiteEvent.meter_no == meter_no,
        SiteEvent.type.in_(SUPPLY_EVENTS),  # type: ignore[attr-defined]
        SiteEvent.at >= month.start,  # type: ignore[operator]
        SiteEvent.at < month.end,  # type: ignore[operator]
    )
    changes = []
    for at, type_, data in await session.execute(events):
        if type_ == "cut.deferred":
            reason = f"zero balance; a no-cut window defers it until {data.get('until', '?')}"
        else:
            reason = str(data.get("reason", ""))
        changes.append(SupplyChange(at, SUPPLY_EVENTS[type_], reason))
    staff = select(Command.finished_at, Command.action, Command.reason).where(
        Command.meter_no == meter_no,
        Command.action.in_(STAFF_RELAY),  # type: ignore[attr-defined]
        Command.state == "done",
        Command.finished_at >= month.start,  # type: ignore[operator]
        Command.finished_at < month.end,  # type: ignore[operator]
    )
    for at, action, reason in await session.execute(staff):
        changes.append(SupplyChange(at, STAFF_RELAY[action], reason))
    return sorted(changes, key=lambda change: change.at)


async def _notes(session: AsyncSession, meter_no: int, month: Month) -> list[str]:
    query = select(MeterChange).where(
        sa.or_(MeterChange.old_meter_no == meter_no, MeterChange.new_meter_no == meter_no),
        MeterChange.meter_change_date >= month.first,  # type: ignore[operator]
        MeterChange.meter_change_date < month.next_first,  # type: ignore[operator]
    )
    notes = []
    for change in (await session.execute(query)).scalars():
        if change.old_meter_no == meter_no:
            notes.append(f"replaced by meter {change.new_meter_no} on {change.meter_change_date}")
        else:
            notes.append(f"replaces meter {change.old_meter_no} from {change.meter_change_date}")
    return notes


async def meter_statement(db: Database, *, meter_no: int, year: int, month: int, now: dt.datetime) -> Statement:
    """The statement of `meter_no` for a calendar month of its site, read in one snapshot.

    NotFound for an unknown meter; InvalidInput for a month that has not begun at the site.
    """
    async with db.transaction() as session:  # one consistent snapshot (SQLite too)
        meter = await session.get(Meter, meter_no)
        if meter is None:
            raise unknown_meter(meter_no)
        site = await session.get(Site, meter.site_id)
        assert site is not None
        period = Month.of(year, month, site.timezone)
        check_month_started(period, now)
        zone = ZoneInfo(site.timezone)
        opening = await balance_before(session, meter_no=meter_no, start=period.start, first=period.first)
        closing = await balance_before(session, meter_no=meter_no, start=period.end, first=period.next_first)
        credits, adjustments = await _money_lines(session, meter_no, period)
        return Statement(
            meter_no=meter.meter_no,
            site_id=meter.site_id,
            unit_no=meter.unit_no,
            consumer_name=meter.consumer_name,
            timezone=site.timezone,
            month=period,
            opening_balance=opening,
            closing_balance=closing,
            days=await _days(session, meter, period, zone, now),
            credits=credits,
            adjustments=adjustments,
            supply=await _supply(session, meter_no, period),
            notes=await _notes(session, meter_no, period),
        )
