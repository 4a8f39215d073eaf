"""Diesel generators: register and list a site's DGs."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from storage.db.engine import Database
from storage.db.models import DieselGenerator, Site
from storage.errors import Conflict, InvalidInput, unknown_site


async def add_dg(db: Database, *, site_id: str, dg_no: str, meter_no: str = "") -> DieselGenerator:
    """Register a diesel generator on a site; it starts OFF."""
    if not dg_no.strip():
        raise InvalidInput("dg_no must not be empty", {"dg_number": ["Must not be empty."]})
    dg = DieselGenerator(site_id=site_id, dg_no=dg_no, meter_no=meter_no)
    try:
        async with db.transaction() as session:
            if await session.get(Site, site_id) is None:
                raise unknown_site(site_id)
            if await session.get(DieselGenerator, (site_id, dg_no)) is not None:
                raise Conflict(f"DG {dg_no!r} already exists on site {site_id!r}", {"dg_number": ["Already exists."]})
            session.add(dg)
    except IntegrityError:
        raise Conflict(f"DG {dg_no!r} already exists on site {site_id!r}", {"dg_number": ["Already exists."]}) from None
    return dg


async def list_dgs(db: Database, *, site_id: str) -> list[DieselGenerator]:
    """The DGs of a site, ordered by number."""
    query = select(DieselGenerator).where(DieselGenerator.site_id == site_id).order_by(DieselGenerator.dg_no)  # type: ignore[arg-type]
    async with db.reader() as session:
        return list((await session.execute(query)).scalars())
