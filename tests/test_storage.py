"""Store functions for sites, meters, DGs and keys, on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import pytest
from marshmallow import ValidationError
from sqlalchemy import func, select

from schemas.admin import SiteCreate
from storage.db.engine import Database
from storage.db.models import ApiKey, Meter, Site
from storage.errors import Conflict, InvalidInput, NotFound
from storage.registry import dgs, keys, meters, sites


async def test_site_and_meter_round_trip_keeps_decimals_exact(db: Database) -> None:
    await sites.add_site(db, site_id="S1", name="Green Park", region="North", tariff_grid=Decimal("7.35"))
    created = await meters.add_meter(
        db,
        meter_no=999999999,
        site_id="S1",
        unit_no="A-101",
        balance=Decimal("0.1"),
        start_grid=Decimal("12.345"),
    )
    assert created.token.startswith("mtr_") and len(created.token) > 40
    async with db.reader() as session:
        meter = await session.get(Meter, 999999999)
        site = await session.get(Site, "S1")
    assert meter is not None and site is not None
    assert meter.balance == Decimal("0.10") and isinstance(meter.balance, Decimal)
    assert meter.grid_kwh == Decimal("12.345") and meter.start_grid == Decimal("12.345")
    assert meter.relay_on is True and meter.active is True
    assert meter.token_hash == keys.hash_secret(created.token)
    assert site.timezone == "Asia/Kolkata"
    assert (await sites.get_site(db, site_id="S1")).tariff_grid == Decimal("7.35")


async def test_money_sums_exactly_in_sql(db: Database) -> None:
    await sites.add_site(db, site_id="S1", name="n", region="r")
    for n in range(1, 11):
        await meters.add_meter(db, meter_no=n, site_id="S1", unit_no=f"U{n}", balance=Decimal("0.10"))
    async with db.reader() as session:
        total = (await session.execute(select(func.sum(Meter.balance)))).scalar_one()
    assert Decimal(total) == Decimal("1.00")


async def test_duplicate_site_meter_and_dg_are_conflicts_and_change_nothing(db: Database) -> None:
    await sites.add_site(db, site_id="S1", name="first", region="r")
    with pytest.raises(Conflict, match="already exists"):
        await sites.add_site(db, site_id="S1", name="second", region="r")
    await meters.add_meter(db, meter_no=1, site_id="S1", unit_no="U1")
    with pytest.raises(Conflict, match="never reused"):
        await meters.add_meter(db, meter_no=1, site_id="S1", unit_no="U2")
    await dgs.add_dg(db, site_id="S1", dg_no="DG1")
    with pytest.raises(Conflict):
        await dgs.add_dg(db, site_id="S1", dg_no="DG1")
    async with db.reader() as session:
        assert (await session.get(Site, "S1")).name == "first"  # type: ignore[union-attr]
        assert (await session.get(Meter, 1)).unit_no == "U1"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kwargs", "errors"),
    [
        ({"timezone": "Mars/Base"}, {"timezone": ["Unknown IANA timezone."]}),
        ({"tariff_grid": "-1"}, {"tariff_grid": ["Must be at least 0."]}),
        ({"tariff_dg": "1.234"}, {"tariff_dg": ["At most 2 decimals."]}),
        ({"site_id": " "}, {"site_id": ["Must not be empty."]}),
    ],
)
async def test_bad_site_input_is_refused(db: Database, kwargs: dict, errors: dict) -> None:
    # Checked once, at the edge (schemas.admin.SiteCreate, which the CLI's flags follow): the
    # store receives typed values. A blank id the store refuses too.
    with pytest.raises(ValidationError) as refused:
        SiteCreate().load({"site_id": "S1", "name": "n", "region": "r", **kwargs})
    assert refused.value.messages == errors
    with pytest.raises(InvalidInput, match="site_id"):
        await sites.add_site(db, site_id=" ", name="n", region="r")
    async with db.reader() as session:
        assert (await session.execute(select(func.count()).select_from(Site))).scalar_one() == 0


async def test_meter_and_dg_on_unknown_site_are_not_found(db: Database) -> None:
    with pytest.raises(NotFound, match="unknown site 'NOPE'"):
        await meters.add_meter(db, meter_no=1, site_id="NOPE", unit_no="U1")
    with pytest.raises(NotFound, match="unknown site 'NOPE'"):
        await dgs.add_dg(db, site_id="NOPE", dg_no="DG1")


async def test_key_lifecycle_create_find_rotate_revoke(db: Database) -> None:
    await sites.add_site(db, site_id="S1", name="n", region="r")
    created = await keys.create_key(db, name="ism", role="read", sites=["S1"])
    found = await keys.find_key(db, key_hash=keys.hash_secret(created.key))
    assert found is not None and found.role == "read" and found.sites == ["S1"]
    rotated = await keys.rotate_key(db, name="ism")
    assert await keys.find_key(db, key_hash=keys.hash_secret(created.key)) is None
    assert await keys.find_key(db, key_hash=keys.hash_secret(rotated.key)) is not None
    await keys.revoke_key(db, name="ism")
    assert await keys.find_key(db, key_hash=keys.hash_secret(rotated.key)) is None
    with pytest.raises(Conflict, match="already revoked"):
        await keys.revoke_key(db, name="ism")
    with pytest.raises(Conflict, match="revoked"):
        await keys.rotate_key(db, name="ism")
    async with db.reader() as session:
        stored = (await session.execute(select(ApiKey))).scalars().all()
    assert all(created.key not in k.key_hash and rotated.key not in k.key_hash for k in stored)


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"role": "root"}, "unknown role"),
        ({"sites": []}, "at least one site"),
        ({"sites": ["NOPE"]}, "unknown site"),
        ({"name": ""}, "must not be empty"),
    ],
)
async def test_bad_key_input_is_refused(db: Database, kwargs: dict, text: str) -> None:
    with pytest.raises((InvalidInput, NotFound), match=text):
        await keys.create_key(db, **{"name": "k", "role": "read", "sites": ["*"], **kwargs})
    assert await keys.list_keys(db) == []


async def test_unknown_key_cannot_be_revoked_or_rotated(db: Database) -> None:
    with pytest.raises(NotFound):
        await keys.revoke_key(db, name="ghost")
    with pytest.raises(NotFound):
        await keys.rotate_key(db, name="ghost")
