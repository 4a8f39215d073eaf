"""The latest state of meters and DGs, as polled by iSocietyManager. Read-only, one query each.

Rows come back as small named tuples rather than ORM objects: a site of 10,000 meters is one
`SELECT`, and building 10,000 ORM instances would cost more than the query itself.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import select

from storage.db.engine import Database
from storage.db.models import DieselGenerator, Meter, Site
from storage.errors import NotFound, unknown_dg, unknown_meter
from storage.registry.meter_roles import billed


class MeterState(NamedTuple):
    """What a meter reports: its unit, registers, prepaid balance and relay, and its site's timezone."""

    site_id: str
    timezone: str
    unit_no: str
    meter_no: int
    grid_kwh: Decimal
    dg_kwh: Decimal
    balance: Decimal
    relay_on: bool
    active: bool
    last_reading_at: dt.datetime | None


class DgState(NamedTuple):
    """A DG's latest posted status, fuel and energy register, with its site's timezone."""

    site_id: str
    timezone: str
    dg_no: str
    meter_no: str
    status: str
    status_at: dt.datetime | None
    fuel_litres: Decimal | None
    fuel_at: dt.datetime | None
    reading_kwh: Decimal | None
    reading_at: dt.datetime | None


_METER_COLUMNS = (
    Meter.site_id,
    Site.timezone,
    Meter.unit_no,
    Meter.meter_no,
    Meter.grid_kwh,
    Meter.dg_kwh,
    Meter.balance,
    Meter.relay_on,
    Meter.active,
    Meter.last_reading_at,
)


async def site_meters(db: Database, *, site_id: str) -> list[MeterState]:
    """The site's active flats (bulk meters are never billed) ordered by unit, in one query;
    NotFound if there are none.

    An unknown site and a site without active meters are the same answer to the caller.
    """
    query = (
        select(*_METER_COLUMNS)
        .join(Site, Site.id == Meter.site_id)
        # Flats only: iSocietyManager bills every meter it is given, and bulk meters are never billed.
        .where(Meter.site_id == site_id, Meter.active.is_(True), billed(Meter.role))  # type: ignore[attr-defined]
        .order_by(Meter.unit_no, Meter.meter_no)  # type: ignore[arg-type]
    )
    # A Core connection, not an ORM session: the ORM's row loading adds nothing here but time.
    async with db.engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    if not rows:
        raise NotFound(f"no active meters on site {site_id!r}", {"site_id": ["Unknown site or no meters."]})
    return [MeterState._make(row) for row in rows]


async def meter_state(db: Database, *, meter_no: int) -> MeterState:
    """One flat (retired ones too: they keep their last state); a bulk meter is unknown here."""
    query = (
        select(*_METER_COLUMNS)
        .join(Site, Site.id == Meter.site_id)
        .where(Meter.meter_no == meter_no, billed(Meter.role))  # a bulk meter is no Factech meter
    )
    async with db.reader() as session:
        row = (await session.execute(query)).first()
    if row is None:
        raise unknown_meter(meter_no)
    return MeterState._make(row)


async def dg_state(db: Database, *, site_id: str, dg_no: str) -> DgState:
    """A DG of a site; NotFound if the site has no such DG."""
    dg = DieselGenerator
    query = (
        select(
            dg.site_id,
            Site.timezone,
            dg.dg_no,
            dg.meter_no,
            dg.status,
            dg.status_at,
            dg.fuel_litres,
            dg.fuel_at,
            dg.reading_kwh,
            dg.reading_at,
        )
        .join(Site, Site.id == dg.site_id)
        .where(dg.site_id == site_id, dg.dg_no == dg_no)
    )
    async with db.reader() as session:
        row = (await session.execute(query)).first()
    if row is None:
        raise unknown_dg(site_id, dg_no)
    return DgState(*row)
