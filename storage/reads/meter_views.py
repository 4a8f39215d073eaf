"""What a resident's pages read besides consumption: why the supply is off, the meter's
recharges (receipts), and when the site's DGs ran.

- Supply: the last relay command carried out says why a meter is off: `cut` is the gateway's
  zero-balance cut (a recharge restores it), `stop` is staff's call 7 (only staff start it again).
- Charges per local day: the readings' charges split by source (storage/reads/energy.py) and the
  fixed daily charges of the ledger, so ₹ per day is exactly what the balance lost that day.
- DG runs: pairs of ON and OFF from `dg_status_change`, clipped to nothing; a run still going has
  no end. Its minutes are what the DG share of a half hour is computed from.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.calendar import local_day
from storage.db.engine import Database
from storage.db.models import Command, DgStatusChange, DieselGenerator, LedgerEntry, Meter, Reading, Recharge
from storage.ingest.rules import change_order
from storage.reads import energy

RELAY_OFF_REASONS = {"cut": "cut", "stop": "stopped"}  # last relay action → why the supply is off
RELAY_ACTIONS = ("cut", "restore", "stop", "start")


@dataclass(frozen=True)
class Supply:
    """A meter's supply: `on`, `cut` (zero balance), `stopped` (by staff) or `off` (reason unknown,
    e.g. the head-end reported it off), with the command that did it."""

    state: str
    since: dt.datetime | None
    reason: str


async def supply(db: Database, *, meter: Meter) -> Supply:
    """Why a meter's supply is on or off, from its last relay command carried out."""
    if meter.relay_on:
        return Supply("on", None, "")
    async with db.reader() as session:
        last = (
            await session.execute(
                select(Command)
                .where(
                    Command.meter_no == meter.meter_no,
                    Command.action.in_(RELAY_ACTIONS),  # type: ignore[attr-defined]
                    Command.state == "done",
                )
                .order_by(Command.id.desc())  # type: ignore[union-attr]
                .limit(1)
            )
        ).scalar_one_or_none()
    if last is None or last.action not in RELAY_OFF_REASONS:
        return Supply("off", None, "")
    return Supply(RELAY_OFF_REASONS[last.action], last.finished_at, last.reason)


async def recharges(db: Database, *, meter_no: int, limit: int = 20) -> list[Recharge]:
    """A meter's latest recharges, newest first, in every state (receipts for the resident)."""
    async with db.reader() as session:
        query = (
            select(Recharge)
            .where(Recharge.meter_no == meter_no)
            .order_by(Recharge.created_at.desc(), Recharge.id.desc())  # type: ignore[attr-defined,union-attr]
            .limit(limit)
        )
        return list((await session.execute(query)).scalars())


@dataclass(frozen=True)
class DgRun:
    """One run of a DG: switched ON at `on_at`, OFF at `off_at` (None: still running at `until`)."""

    dg_no: str
    on_at: dt.datetime
    off_at: dt.datetime | None
    minutes_in_window: int  # whole minutes of the run inside the window asked for

    @property
    def running(self) -> bool:
        """Whether the run had not ended by the end of the window."""
        return self.off_at is None


async def dg_runs(db: Database, *, site_id: str, start: dt.datetime, end: dt.datetime) -> list[DgRun]:
    """The runs of the site's DGs that overlap [start, end), in time order (a run that began
    before `start` is included with its real ON time). Changes are read in `change_order`, as
    ingest bills them: two at one instant leave the DG ON."""
    async with db.reader() as session:
        dgs = list(
            (await session.execute(select(DieselGenerator.dg_no).where(DieselGenerator.site_id == site_id))).scalars()
        )
        runs: list[DgRun] = []
        for dg_no in dgs:
            before = (
                await session.execute(
                    select(DgStatusChange.at, DgStatusChange.status)
                    .where(DgStatusChange.site_id == site_id, DgStatusChange.dg_no == dg_no, DgStatusChange.at < start)  # type: ignore[arg-type,operator]
                    .order_by(*change_order(DgStatusChange.at, DgStatusChange.status, in_force_first=True))
                    .limit(1)
                )
            ).all()
            inside = (
                await session.execute(
                    select(DgStatusChange.at, DgStatusChange.status)
                    .where(
                        DgStatusChange.site_id == site_id,
                        DgStatusChange.dg_no == dg_no,
                        DgStatusChange.at >= start,  # type: ignore[operator]
                        DgStatusChange.at < end,  # type: ignore[operator]
                    )
                    .order_by(*change_order(DgStatusChange.at, DgStatusChange.status))
                )
            ).all()
            runs += pair_runs(dg_no, [*before, *inside], start=start, end=end)
    return sorted(runs, key=lambda run: (run.on_at, run.dg_no))


def pair_runs(
    dg_no: str, changes: list[tuple[dt.datetime, str]], *, start: dt.datetime, end: dt.datetime
) -> list[DgRun]:
    """ON/OFF changes of one DG in time order → runs overlapping [start, end). A repeated ON
    keeps the first; an OFF with no ON before it ends nothing."""
    runs: list[DgRun] = []
    on_at: dt.datetime | None = None

    def close(off_at: dt.datetime | None) -> None:
        assert on_at is not None
        stop = min(off_at or end, end)
        minutes = int(max((stop - max(on_at, start)).total_seconds(), 0) // 60)
        if stop > start:
            runs.append(DgRun(dg_no, on_at, off_at, minutes))

    for at, status in changes:
        if status == "ON" and on_at is None:
            on_at = at
        elif status == "OFF" and on_at is not None:
            close(at)
            on_at = None
    if on_at is not None:
        close(None)
    return runs


MONEY_ZERO = Decimal("0.00")


async def daily_charges(
    session: AsyncSession, meter_no: int, start: dt.datetime, end: dt.datetime, timezone: str
) -> dict[dt.date, tuple[Decimal, Decimal, Decimal]]:
    """Per local day of [start, end) (day bounds in `timezone`): ₹ for grid and DG energy (the
    readings' charges, as the ledger debits them) and the fixed charge the rollup debited."""
    per_day: dict[dt.date, tuple[Decimal, Decimal, Decimal]] = {}
    rows = await session.execute(
        select(Reading.interval_start, energy.grid_charge(), energy.dg_charge()).where(
            Reading.meter_no == meter_no, Reading.interval_start >= start, Reading.interval_start < end
        )
    )
    for interval_start, grid_part, dg_part in rows.all():
        day = local_day(timezone, interval_start)
        grid, dg, fixed = per_day.get(day, (MONEY_ZERO, MONEY_ZERO, MONEY_ZERO))
        per_day[day] = (grid + grid_part, dg + dg_part, fixed)
    fixed_rows = await session.execute(
        select(LedgerEntry.day, func.sum(LedgerEntry.amount))
        .where(
            LedgerEntry.meter_no == meter_no,
            LedgerEntry.kind == "fixed",
            LedgerEntry.day >= local_day(timezone, start),  # type: ignore[operator]
            LedgerEntry.day < local_day(timezone, end),  # type: ignore[operator]
        )
        .group_by(LedgerEntry.day)
    )
    for day, amount in fixed_rows.all():
        grid, dg, _ = per_day.get(day, (MONEY_ZERO, MONEY_ZERO, MONEY_ZERO))
        per_day[day] = (grid, dg, -Decimal(amount))  # debits are negative in the ledger
    return per_day
