"""The per-meter ledger: every change of a prepaid balance that is not a reading's charge.

Entries are an `opening` (the balance a meter was registered with), `credit`s (recharges),
`adjustment`s (staff corrections, balances moved by a meter replacement) and `fixed` daily
charges (negative, one per meter per local day, `debit_fixed_charges`), each with a reason and
the balance after it. Energy debits are not repeated here: each reading's `charge` column is its
debit, written by ingest in the same transaction that lowers the balance. So, for every meter:

    balance = opening + Σ credits + Σ adjustments + Σ fixed charges − Σ reading charges

`check_ledger` computes both sides. Every entry is written by `add_entry` in the transaction
that changes the balance, on a meter row locked for that transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.db.engine import Database
from storage.db.models import LedgerEntry, Meter, Reading, Site
from storage.db.types import Money, UtcTime
from storage.errors import InvalidInput, unknown_meter
from storage.ingest.rules import RULES, in_units
from storage.money.command_log import restore_if_credited
from storage.money.tariffs import tariff_at
from storage.registry.meter_roles import FLAT, billed

ZERO = Decimal("0.00")
KINDS = ("opening", "credit", "adjustment", "fixed")


def add_entry(
    session: AsyncSession,
    *,
    meter: Meter,
    kind: str,
    amount: Decimal,
    reason: str,
    now: dt.datetime,
    transaction_id: str | None = None,
    created_by: str = "",
    day: dt.date | None = None,
) -> LedgerEntry:
    """Move `meter`'s balance by `amount` and record it (the caller holds the meter locked)."""
    meter.balance = (meter.balance + amount).quantize(Decimal("0.01"))
    entry = LedgerEntry(
        meter_no=meter.meter_no,
        kind=kind,
        amount=amount,
        balance_after=meter.balance,
        reason=reason,
        transaction_id=transaction_id,
        created_by=created_by,
        created_at=now,
        day=day,
    )
    session.add(entry)
    return entry


async def debit_fixed_charges(
    session: AsyncSession, *, site: Site, day: dt.date, start: dt.datetime, end: dt.datetime, now: dt.datetime
) -> int:
    """Debit the fixed daily charge in force at the local day's start (`start`..`end` in UTC) from
    every meter in service at its end that was not charged for it yet, in the caller's
    transaction; queue the cuts that this makes due. Returns the meters charged.

    Idempotent: a re-roll or a catch-up charges no meter twice (the ledger's unique index on
    meter, kind and day holds even against two processes).
    """
    tariff = await tariff_at(session, site_id=site.id, at=start)
    if tariff.fixed_daily <= 0:
        return 0
    charged = select(LedgerEntry.meter_no).where(LedgerEntry.kind == "fixed", LedgerEntry.day == day)
    query = (
        select(Meter)
        .where(
            Meter.site_id == site.id,
            billed(Meter.role),  # bulk meters carry no fixed charge
            Meter.created_at < end,  # type: ignore[operator]
            sa.or_(Meter.retired_at.is_(None), Meter.retired_at >= end),  # type: ignore[union-attr, operator]
            Meter.meter_no.not_in(charged),  # type: ignore[attr-defined]
        )
        .order_by(Meter.meter_no)
        .with_for_update()
    )
    meters = list((await session.execute(query)).scalars())
    for meter in meters:
        add_entry(
            session,
            meter=meter,
            kind="fixed",
            amount=-tariff.fixed_daily,
            reason=f"fixed charge for {day.isoformat()}",
            created_by="rollup",
            now=now,
            day=day,
        )
    if meters:
        await session.flush()  # the debited balances, which the cut decision reads
        debited_today = select(LedgerEntry.meter_no).where(LedgerEntry.kind == "fixed", LedgerEntry.day == day)
        site_meters = select(Meter.meter_no).where(Meter.site_id == site.id, col(Meter.meter_no).in_(debited_today))
        charge = in_units(sa.literal(tariff.fixed_daily, Money))  # paise, as ingest's charges are
        await session.execute(RULES.cut.queue(meter_nos=site_meters, charged_paise=charge, at=sa.literal(now, UtcTime)))
    return len(meters)


async def adjust_balance(
    db: Database, *, meter_no: int, amount: Decimal, reason: str, created_by: str, now: dt.datetime
) -> LedgerEntry:
    """A manual adjustment with a reason, in one transaction; lifting the balance above the cut threshold
    restores a supply cut for zero balance."""
    if amount == 0:
        raise InvalidInput("amount must not be zero", {"amount": ["Must not be zero."]})
    if not reason.strip():
        raise InvalidInput("reason must not be empty", {"reason": ["Must not be empty."]})
    async with db.transaction() as session:
        meter = await session.get(Meter, meter_no, with_for_update=True)
        if meter is None:
            raise unknown_meter(meter_no)
        if meter.role != FLAT:
            raise InvalidInput(
                f"meter {meter_no} is a bulk meter ({meter.role}): it is never billed and has no balance",
                {"meter_no": ["A bulk meter has no balance."]},
            )
        entry = add_entry(
            session, meter=meter, kind="adjustment", amount=amount, reason=reason, created_by=created_by, now=now
        )
        await restore_if_credited(session, meter=meter, now=now)
    return entry


async def list_ledger(db: Database, *, meter_no: int) -> list[LedgerEntry]:
    """A meter's entries, oldest first."""
    query = select(LedgerEntry).where(LedgerEntry.meter_no == meter_no).order_by(LedgerEntry.id)  # type: ignore[arg-type]
    async with db.reader() as session:
        return list((await session.execute(query)).scalars())


@dataclass(frozen=True)
class LedgerCheck:
    """Both sides of a meter's balance equation."""

    meter_no: int
    opening: Decimal
    credits: Decimal
    adjustments: Decimal
    debits: Decimal  # Σ reading charges
    balance: Decimal  # as stored on the meter
    fixed: Decimal = ZERO  # Σ fixed daily charges (negative)

    @property
    def expected(self) -> Decimal:
        """opening + credits + adjustments + fixed charges − debits."""
        return self.opening + self.credits + self.adjustments + self.fixed - self.debits

    @property
    def ok(self) -> bool:
        """True when the stored balance is exactly what the ledger and the readings say."""
        return self.expected == self.balance


async def check_ledger(db: Database, *, meter_no: int) -> LedgerCheck:
    """Sum the ledger and the readings' charges of a meter, beside its stored balance (one snapshot)."""
    by_kind = select(LedgerEntry.kind, func.sum(LedgerEntry.amount)).where(LedgerEntry.meter_no == meter_no)
    charges = select(func.sum(Reading.charge)).where(Reading.meter_no == meter_no)
    async with db.transaction() as session:  # a write transaction: one consistent snapshot on SQLite too
        meter = await session.get(Meter, meter_no)
        if meter is None:
            raise unknown_meter(meter_no)
        sums = dict((await session.execute(by_kind.group_by(LedgerEntry.kind))).all())
        debits = (await session.execute(charges)).scalar_one() or ZERO
    return LedgerCheck(
        meter_no=meter_no,
        opening=sums.get("opening") or ZERO,
        credits=sums.get("credit") or ZERO,
        adjustments=sums.get("adjustment") or ZERO,
        debits=debits,
        balance=meter.balance,
        fixed=sums.get("fixed") or ZERO,
    )
