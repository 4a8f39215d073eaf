"""Sites: register, list, read and edit them (name, region, tariffs, prepaid policy). One transaction per function."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db.engine import Database
from storage.db.models import Site, Tariff, utcnow
from storage.errors import Conflict, InvalidInput, unknown_site
from storage.money import tariffs
from storage.money.tariffs import SiteView, first_tariff, site_view


async def add_site(
    db: Database,
    *,
    site_id: str,
    name: str,
    region: str,
    timezone: str = "Asia/Kolkata",
    tariff_grid: Decimal = Decimal("8.00"),
    tariff_dg: Decimal = Decimal("20.00"),
    auto_cut: bool = True,
) -> SiteView:
    """Register a site, with its first tariff (in force since always). Conflict if the id is taken.

    The values come checked (schemas.admin.SiteCreate, the CLI's flags): a known timezone,
    tariffs of at least 0 with at most 2 decimals.
    """
    if not site_id.strip():
        raise InvalidInput("site_id must not be empty", {"site_id": ["Must not be empty."]})
    site = Site(
        id=site_id,
        name=name,
        region=region,
        timezone=timezone,
        auto_cut=auto_cut,
    )
    try:
        async with db.transaction() as session:
            if await session.get(Site, site_id) is not None:
                raise Conflict(f"site {site_id!r} already exists", {"site_id": ["Already exists."]})
            session.add(site)
            await session.flush()
            session.add(first_tariff(site_id=site_id, grid=tariff_grid, dg=tariff_dg, created_at=site.created_at))
            await session.flush()
            view = await site_view(session, site, site.created_at)
    except IntegrityError:
        raise Conflict(f"site {site_id!r} already exists", {"site_id": ["Already exists."]}) from None
    return view


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


def check_editable(changes: dict[str, object], editable: tuple[str, ...]) -> None:
    """InvalidInput unless `changes` is non-empty and names only fields in `editable`."""
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
            raise unknown_site(site_id)
        return await tariffs.site_view(session, site, utcnow())


async def edit_site(
    db: Database, *, site_id: str, changes: dict[str, object], now: dt.datetime | None = None
) -> tariffs.SiteView:
    """Change a site's name, region, tariffs, auto_cut or prepaid policy (storage/money/policy.py).

    New tariffs start a tariff row from now (storage/money/tariffs.py), keeping the fixed daily charge
    in force. The timezone is fixed once days exist.
    """
    check_editable(changes, SITE_EDITABLE)
    changes = dict(changes)  # the caller's (what was asked, for the audit trail) stays whole
    for field in ("name", "region"):
        if field in changes and not str(changes[field]).strip():
            raise InvalidInput(f"{field} must not be empty", {field: ["Must not be empty."]})
    for field in ("tariff_grid", "tariff_dg", "grace_amount"):
        if field in changes:
            # Quantized so the returned site reads exactly as stored.
            changes[field] = Decimal(str(changes[field])).quantize(Decimal("0.01"))
    now = now or utcnow()
    new_grid, new_dg = changes.pop("tariff_grid", None), changes.pop("tariff_dg", None)
    async with db.transaction() as session:
        site = await session.get(Site, site_id)
        if site is None:
            raise unknown_site(site_id)
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


async def site_row(session: AsyncSession, site_id: str) -> Site:
    """The site's row, in the caller's transaction, or NotFound."""
    site = await session.get(Site, site_id)
    if site is None:
        raise unknown_site(site_id)
    return site
