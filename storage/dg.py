"""DG controllers' posts: latest state, fuel, energy register, and the full ON/OFF history."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import InvalidInput, NotFound
from storage.models import DgStatusChange, DieselGenerator
from storage.rules import dg_state_in_force


@dataclass(frozen=True)
class DgUpdate:
    """A DG controller's post, validated."""

    site_id: str
    dg_no: str
    timestamp: dt.datetime
    status: str | None = None
    fuel_litres: Decimal | None = None
    reading_kwh: Decimal | None = None


async def record_dg_state(session: AsyncSession, *, update_: DgUpdate, sites: frozenset[str] | None) -> bool:
    """Apply a DG post; True when it changed the DG's ON/OFF state (a transition was recorded).

    Older posts never overwrite newer latest values, but a status seen out of order still
    enters the history if it differs from the state in force at its time.
    """
    if sites is not None and update_.site_id not in sites:
        raise NotFound(f"Unknown DG {update_.dg_no!r} on site {update_.site_id!r}", {"dg_number": ["Unknown DG."]})
    dg = await session.get(DieselGenerator, (update_.site_id, update_.dg_no), with_for_update=True)
    if dg is None:
        raise NotFound(f"Unknown DG {update_.dg_no!r} on site {update_.site_id!r}", {"dg_number": ["Unknown DG."]})
    at = update_.timestamp.astimezone(dt.UTC)
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
        return False
    # The state ingest would see in force at that instant (the same rule, ties included).
    previous = (await session.execute(select(dg_state_in_force(update_.site_id, update_.dg_no, at)))).scalar_one()
    changed = (previous or "OFF") != update_.status
    if changed:
        session.add(DgStatusChange(site_id=update_.site_id, dg_no=update_.dg_no, at=at, status=update_.status))
    if dg.status_at is None or at >= dg.status_at:
        dg.status, dg.status_at = update_.status, at
    return changed
