"""Looking up and editing what staff registered (sites, meters, DGs, keys): the admin API's store.

`registry` creates things; this module lists, reads, edits and retires them. One transaction
per function. `only` arguments limit a listing to a set of site ids (None: every site).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from decimal import Decimal

from sqlalchemy import select

from storage import tariffs
from storage.accounts import unlink_in
from storage.engine import Database
from storage.errors import Conflict, InvalidInput, NotFound
from storage.meter_roles import DG_METER
from storage.models import ApiKey, DieselGenerator, Meter, Site, Tariff, utcnow
from storage.registry import check_dg_of_site, check_role, parse_amount

SITE_EDITABLE = (
    "name",
    "region",
    "tariff_grid",
    "tariff_dg",
    "auto_cut",
    "grace_amount",
    "alert_thresholds",
    "no_cut_hours",
    "no_cut_weekdays",
)
METER_EDITABLE = ("consumer_name", "fin_no", "legacy_ingest", "role", "dg_no")
ROLE_FIELDS = ("role", "dg_no")  # what the meter measures: not a new resident


def _check_editable(changes: dict[str, object], editable: tuple[str, ...]) -> None:
    if not changes:
        raise InvalidInput("nothing to change", {"_schema": [f"Give at least one of: {', '.join(editable)}."]})
    unknown = sorted(set(changes) - set(editable))
    if unknown:
        raise InvalidInput(f"{unknown[0]} cannot be edited", {field: ["Cannot be edited."] for field in unknown})


async def list_sites(db: Database, *, only: Collection[str] | None = None) -> list[tariffs.SiteView]:
    """Sites ordered by id, limited to `only` when given, each with its tariff in force now."""
    query = select(Site).order_by(Site.id)
    if only is not None:
        query = query.where(Site.id.in_(list(only)))  # type: ignore[attr-defined]
    now = utcnow()
    async with db.reader() as session:
        return [await tariffs.site_view(session, site, now) for site in (await session.execute(query)).scalars()]


async def get_site(db: Database, *, site_id: str) -> tariffs.SiteView:
    """One site with its tariff in force now; NotFound if unknown."""
    async with db.reader() as session:
        site = await session.get(Site, site_id)
        if site is None:
            raise NotFound(f"unknown site {site_id!r}", {"site_id": ["Unknown site."]})
        return await tariffs.site_view(session, site, utcnow())


async def edit_site(
    db: Database, *, site_id: str, changes: dict[str, object], now: dt.datetime | None = None
) -> tariffs.SiteView:
    """Change a site's name, region, tariffs, auto_cut or prepaid policy (storage/policy.py).

    New tariffs start a tariff row from now (storage/tariffs.py), keeping the fixed daily charge
    in force. The timezone is fixed once days exist.
    """
    _check_editable(changes, SITE_EDITABLE)
    changes = dict(changes)  # the caller's (what was asked, for the audit trail) stays whole
    for field in ("name", "region"):
        if field in changes and not str(changes[field]).strip():
            raise InvalidInput(f"{field} must not be empty", {field: ["Must not be empty."]})
    for field in ("tariff_grid", "tariff_dg", "grace_amount"):
        if field in changes:
            # Quantized so the returned site reads exactly as stored.
            changes[field] = parse_amount(changes[field], field, minimum=Decimal(0)).quantize(Decimal("0.01"))
    now = now or utcnow()
    new_grid, new_dg = changes.pop("tariff_grid", None), changes.pop("tariff_dg", None)
    async with db.transaction() as session:
        site = await session.get(Site, site_id)
        if site is None:
            raise NotFound(f"unknown site {site_id!r}", {"site_id": ["Unknown site."]})
        for field, value in changes.items():
            setattr(site, field, value)
        if new_grid is not None or new_dg is not None:
            current = await tariffs.tariff_at(session, site_id=site_id, at=now)
            grid = current.grid if new_grid is None else Decimal(str(new_grid))
            dg = current.dg if new_dg is None else Decimal(str(new_dg))
            if current.effective_from == now:  # set twice in one instant: the later one wins
                current.grid, current.dg = grid, dg
            else:
                row = Tariff(
                    site_id=site_id,
                    effective_from=now,
                    grid=grid,
                    dg=dg,
                    fixed_daily=current.fixed_daily,
                    created_at=now,
                    created_by="site edit",
                )
                session.add(row)
            await session.flush()
        return await tariffs.site_view(session, site, now)


async def list_meters(db: Database, *, site_id: str) -> list[Meter]:
    """Every meter of a site, retired ones included, ordered by unit then number."""
    query = select(Meter).where(Meter.site_id == site_id).order_by(Meter.unit_no, Meter.meter_no)  # type: ignore[arg-type]
    async with db.reader() as session:
        return list((await session.execute(query)).scalars())


async def get_meter(db: Database, *, meter_no: int) -> Meter:
    """One meter; NotFound if unknown."""
    async with db.reader() as session:
        meter = await session.get(Meter, meter_no)
    if meter is None:
        raise NotFound(f"unknown meter {meter_no}", {"meter_no": ["Unknown meter."]})
    return meter


async def edit_meter(db: Database, *, meter_no: int, changes: dict[str, object]) -> tuple[Meter, bool]:
    """Change a meter's consumer details (name, fin_no), whether it may post without a token, or
    its role (`storage.meter_roles`: a DG's meter names a DG of its site; a bulk meter has no balance).
    A new consumer or FIN is a new resident: the old one's portal account is removed in the same
    transaction (True then), so they no longer see the meter and the new one can claim it."""
    _check_editable(changes, METER_EDITABLE)
    async with db.transaction() as session:
        meter = await session.get(Meter, meter_no)
        if meter is None:
            raise NotFound(f"unknown meter {meter_no}", {"meter_no": ["Unknown meter."]})
        if "role" in changes or "dg_no" in changes:
            role = str(changes.get("role", meter.role))
            # A meter that stops measuring a DG forgets its DG.
            kept_dg = meter.dg_no if role == DG_METER else None
            dg_no = changes.get("dg_no", kept_dg)
            check_role(role, None if dg_no is None else str(dg_no), meter.balance)
            await check_dg_of_site(session, site_id=meter.site_id, dg_no=None if dg_no is None else str(dg_no))
            changes = {**changes, "role": role, "dg_no": dg_no}
        new_resident = any(
            getattr(meter, field) != value for field, value in changes.items() if field not in ROLE_FIELDS
        )
        for field, value in changes.items():
            setattr(meter, field, value)
        unlinked = await unlink_in(session, meter_no=meter_no) if new_resident else False
    return meter, unlinked


async def retire_meter(db: Database, *, meter_no: int) -> Meter:
    """Take a meter out of service without a replacement; it keeps its history and balance."""
    async with db.transaction() as session:
        meter = await session.get(Meter, meter_no, with_for_update=True)
        if meter is None:
            raise NotFound(f"unknown meter {meter_no}", {"meter_no": ["Unknown meter."]})
        if not meter.active:
            raise Conflict(f"meter {meter_no} is already retired", {"meter_no": ["Already retired."]})
        meter.active = False
        meter.retired_at = utcnow()
    return meter


async def list_dgs(db: Database, *, site_id: str) -> list[DieselGenerator]:
    """The DGs of a site, ordered by number."""
    query = select(DieselGenerator).where(DieselGenerator.site_id == site_id).order_by(DieselGenerator.dg_no)  # type: ignore[arg-type]
    async with db.reader() as session:
        return list((await session.execute(query)).scalars())


async def get_key(db: Database, *, name: str) -> ApiKey:
    """One API key by name (revoked ones too); NotFound if unknown."""
    async with db.reader() as session:
        api_key = (await session.execute(select(ApiKey).where(ApiKey.name == name))).scalar_one_or_none()
    if api_key is None:
        raise NotFound(f"unknown key {name!r}", {"name": ["Unknown key."]})
    return api_key
