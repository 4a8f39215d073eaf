"""Building blocks for the API tests: register sites, meters and keys straight through the store."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import update

from storage.db.engine import Database
from storage.db.models import DieselGenerator, Meter
from storage.registry import keys, meters
from storage.registry import sites as site_registry


async def add_site(db: Database, site_id: str, **kwargs: Any) -> None:
    """A site with a name and region derived from its id."""
    await site_registry.add_site(db, site_id=site_id, name=f"Society {site_id}", region="North", **kwargs)


async def add_meter(db: Database, meter_no: int, site_id: str, unit_no: str, **state: Any) -> str:
    """A meter, then any stored state (registers, relay, last reading...) set as given; returns its token."""
    created = await meters.add_meter(db, meter_no=meter_no, site_id=site_id, unit_no=unit_no)
    if state:
        async with db.transaction() as session:
            await session.execute(update(Meter).where(Meter.meter_no == meter_no).values(**state))  # type: ignore[arg-type]
    return created.token


async def add_dg(db: Database, site_id: str, dg_no: str, **state: Any) -> None:
    """A DG row as `POST /dg` would have left it."""
    async with db.transaction() as session:
        session.add(DieselGenerator(site_id=site_id, dg_no=dg_no, **state))


async def add_key(db: Database, role: str, *sites: str, name: str | None = None) -> str:
    """An API key with this role on these sites; returns the secret."""
    name = name or f"{role}-{'-'.join(sites)}".replace("*", "all")
    return (await keys.create_key(db, name=name, role=role, sites=list(sites))).key


def headers(key: str) -> dict[str, str]:
    """The Factech/admin API header for a key."""
    return {"X-API-Key": key}


UTC = dt.UTC
ZERO = Decimal(0)
