"""DG controllers' posts: latest state, fuel, energy register, and the full ON/OFF history."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db.engine import Database
from storage.db.models import DgSample, DgStatusChange, DieselGenerator, Meter, Reading
from storage.dg import dg_events
from storage.errors import InvalidInput, unknown_dg
from storage.ingest.rules import dg_state_in_force
from storage.money import site_events


@dataclass(frozen=True)
class DgUpdate:
    """A DG controller's post, validated."""

    site_id: str
    dg_no: str
    timestamp: dt.datetime
    status: str | None = None
    fuel_litres: Decimal | None = None
    reading_kwh: Decimal | None = None


class DgRecorded(NamedTuple):
    """What a DG post did: a transition recorded, and whether it came after its half hour was billed."""

    changed: bool
    late: bool


class DgPosted(NamedTuple):
    """A DG post committed: what it recorded, and whether an ON/OFF callback was queued with it."""

    changed: bool
    late: bool
    callback_queued: bool


async def record_dg_post(db: Database, *, update_: DgUpdate, now: dt.datetime) -> DgPosted:
    """Apply a DG post in one transaction, queueing the ON/OFF callback of a transition with it
    (never one without the other)."""
    async with db.transaction() as session:
        changed, late = await record_dg_state(session, update_=update_, now=now)
        queued = False
        if changed and update_.status is not None:
            await dg_events.queue_event(
                session,
                site_id=update_.site_id,
                dg_no=update_.dg_no,
                status=update_.status,
                at=update_.timestamp,
                now=now,
            )
            queued = True
    return DgPosted(changed, late, queued)


async def record_dg_state(session: AsyncSession, *, update_: DgUpdate, now: dt.datetime) -> DgRecorded:
    """Apply a DG post; `changed` when it changed the DG's ON/OFF state (a transition was recorded).

    Older posts never overwrite newer latest values, but a status seen out of order still
    enters the history if it differs from the state in force at its time.
    """
    dg = await session.get(DieselGenerator, (update_.site_id, update_.dg_no), with_for_update=True)
    if dg is None:
        raise unknown_dg(update_.site_id, update_.dg_no)
    at = update_.timestamp.astimezone(dt.UTC)
    if update_.fuel_litres is not None or update_.reading_kwh is not None:
        # Every value, in or out of order: the energy audit reads the series (storage.reads.energy_audit).
        litres, kwh = update_.fuel_litres, update_.reading_kwh
        session.add(DgSample(site_id=dg.site_id, dg_no=dg.dg_no, at=at, fuel_litres=litres, reading_kwh=kwh))
    if update_.fuel_litres is not None and (dg.fuel_at is None or at >= dg.fuel_at):
        dg.fuel_litres, dg.fuel_at = update_.fuel_litres, at
    if update_.reading_kwh is not None and (dg.reading_at is None or at >= dg.reading_at):
        if dg.reading_kwh is not None and update_.reading_kwh < dg.reading_kwh:
            raise InvalidInput(
                f"reading_kWh {update_.reading_kwh} is below the DG register {dg.reading_kwh}",
                {"reading_kWh": ["The cumulative register cannot go backwards."]},
            )
        dg.reading_kwh, dg.reading_at = update_.reading_kwh, at
    if update_.status is None:
        return DgRecorded(False, False)
    # The state ingest would see in force at that instant (the same rule, ties included).
    previous = (await session.execute(select(dg_state_in_force(update_.site_id, update_.dg_no, at)))).scalar_one()
    changed = (previous or "OFF") != update_.status
    if changed:
        session.add(DgStatusChange(site_id=update_.site_id, dg_no=update_.dg_no, at=at, status=update_.status))
    late = changed and await _late_change(session, dg=dg, status=update_.status, at=at, now=now)
    if dg.status_at is None or at >= dg.status_at:
        dg.status, dg.status_at = update_.status, at
    return DgRecorded(changed, late)


async def _late_change(
    session: AsyncSession, *, dg: DieselGenerator, status: str, at: dt.datetime, now: dt.datetime
) -> bool:
    """A change inside a half hour whose readings were already billed: they keep their charge
    (billing never reruns), and a `dg.late_change` event tells staff, who may adjust."""
    start = at - dt.timedelta(minutes=at.minute % 30, seconds=at.second, microseconds=at.microsecond)
    billed = await session.scalar(
        select(func.count())
        .select_from(Reading)
        .join(Meter, Meter.meter_no == Reading.meter_no)  # type: ignore[arg-type]
        .where(Meter.site_id == dg.site_id, Reading.interval_start == start)
    )
    if not billed:
        return False
    await site_events.add_event(
        session,
        site_id=dg.site_id,
        type="dg.late_change",
        at=now,
        now=now,
        data={
            "dg_no": dg.dg_no,
            "status": status,
            "changed_at": at.isoformat().replace("+00:00", "Z"),
            "interval_start": start.isoformat().replace("+00:00", "Z"),
            "readings_billed": int(billed),
        },
    )
    return True
