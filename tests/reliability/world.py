"""Two societies side by side, for the tenancy and hostile-input tests: ours and theirs.

Every object exists once per side (site, meters, DG, callback event, keys), with ids that
differ between the sides, so a request that names one of theirs with one of our keys can be
told apart from a request that names nothing at all. `dump_tables` takes a picture of the
whole database to prove that a refused request changed nothing.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlmodel import SQLModel

# Registers both modules' tables on SQLModel.metadata.
import storage.db.event_models
import storage.db.models  # noqa: F401
from storage.db.engine import Database
from storage.db.models import PortalUser
from storage.dg import dg_events
from storage.money import policy, site_events
from storage.portal import passwords
from storage.registry import dgs, meters, sites
from storage.registry import keys as key_registry
from storage.registry.meter_changes import replace_meter

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
CHANGE_DAY = dt.date(2026, 11, 10)


@dataclass
class Side:
    """One society's objects and keys."""

    site_id: str
    meter_no: int  # an active meter, used by reads and commands
    spare_meter: int  # retired by the retire call's positive control
    change_meter: int  # replaced by the meter-change call's positive control
    replaced_meter: int  # already replaced on CHANGE_DAY (call 5 has something to list)
    dg_number: str
    event_id: str = ""
    victim_keys: tuple[str, str] = ("", "")  # names: revoked, rotated by positive controls
    keys: dict[str, str] = field(default_factory=dict)  # role → secret, for this site only
    transaction_id: str = ""  # filled once the recharge call exists (branch `commands`)
    token: str = ""  # device token of meter_no

    @property
    def resident_meter(self) -> int:
        """The meter that replaced `replaced_meter`: its resident's account is the matrix's."""
        return self.replaced_meter + 100

    staff: str = ""  # a portal staff account of this site only
    holiday: str = ""  # a holiday of this site only (another side's date is not one of ours)


@dataclass
class World:
    """Ours (the caller's site) and theirs (another society on the same gateway)."""

    ours: Side
    theirs: Side
    star_admin: str  # admin key for '*'


def _side(site_id: str, first_meter: int, dg_number: str) -> Side:
    return Side(
        site_id=site_id,
        meter_no=first_meter,
        spare_meter=first_meter + 1,
        change_meter=first_meter + 2,
        replaced_meter=first_meter + 3,
        dg_number=dg_number,
    )


@functools.cache
def _password_hash() -> str:
    return passwords.hash_password_now("a long portal password")


async def build_world(db: Database) -> World:
    """Create both societies with every kind of object the API names."""
    world = World(
        ours=_side("OURS", 500000001, "DG-OURS"), theirs=_side("THEIRS", 900000001, "DG-THEIRS"), star_admin=""
    )
    for side in (world.ours, world.theirs):
        await sites.add_site(db, site_id=side.site_id, name=f"Society {side.site_id}", region="North")
        for offset, meter_no in enumerate((side.meter_no, side.spare_meter, side.change_meter, side.replaced_meter)):
            created = await meters.add_meter(
                db, meter_no=meter_no, site_id=side.site_id, unit_no=f"U{offset}", balance=Decimal("500.00")
            )
            if meter_no == side.meter_no:
                side.token = created.token
        await replace_meter(
            db,
            site_id=side.site_id,
            old_meter_no=side.replaced_meter,
            new_meter_no=side.replaced_meter + 100,
            meter_change_date=CHANGE_DAY,
            now=NOW,
        )
        await dgs.add_dg(db, site_id=side.site_id, dg_no=side.dg_number)
        side.holiday = "2026-12-25" if side is world.ours else "2026-12-26"
        await policy.add_holiday(db, site_id=side.site_id, day=dt.date.fromisoformat(side.holiday), name="matrix")
        await site_events.set_webhook(
            db, site_id=side.site_id, url="https://example.com/site", secret="whsec_y", now=NOW
        )
        await dg_events.subscribe(
            db, site_id=side.site_id, dg_no=side.dg_number, url="https://example.com/hook", secret="whsec_x", now=NOW
        )
        async with db.transaction() as session:
            event = await dg_events.queue_event(
                session, site_id=side.site_id, dg_no=side.dg_number, status="ON", at=NOW, now=NOW
            )
            assert event is not None
            side.event_id = event.event_id
        for role in ("read", "operate", "admin", "ingest"):
            side.keys[role] = (
                await key_registry.create_key(db, name=f"{role}-{side.site_id}", role=role, sites=[side.site_id])
            ).key
        side.victim_keys = (f"victim-a-{side.site_id}", f"victim-b-{side.site_id}")
        for name in side.victim_keys:
            await key_registry.create_key(db, name=name, role="read", sites=[side.site_id])
        side.staff = f"staff-{side.site_id}"
        async with db.transaction() as session:
            # Portal accounts: a resident on the meter that replaced `replaced_meter` (no other call
            # changes it), one on the spare meter (removed by a positive control), and staff.
            for meter_no in (side.resident_meter, side.spare_meter):
                session.add(PortalUser(is_staff=False, meter_no=meter_no, password_hash=_password_hash()))
            session.add(
                PortalUser(is_staff=True, username=side.staff, sites=[side.site_id], password_hash=_password_hash())
            )
    world.star_admin = (await key_registry.create_key(db, name="admin-all", role="admin", sites=["*"])).key
    return world


async def dump_tables(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: equal dumps mean nothing changed."""
    dump: dict[str, list[tuple[Any, ...]]] = {}
    async with db.reader() as session:
        for table in SQLModel.metadata.sorted_tables:
            rows = (await session.execute(select(table))).all()
            dump[table.name] = sorted((tuple(row) for row in rows), key=repr)
    return dump


def describe_change(before: dict[str, list[tuple[Any, ...]]], after: dict[str, list[tuple[Any, ...]]]) -> str:
    """Which tables differ, with the rows added and removed (for a failure message)."""
    parts = []
    for name in before:
        if before[name] != after.get(name):
            added = [r for r in after.get(name, []) if r not in before[name]]
            removed = [r for r in before[name] if r not in after.get(name, [])]
            parts.append(f"{name}: +{added[:3]} -{removed[:3]}")
    return "; ".join(parts)
