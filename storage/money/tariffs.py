"""A site's tariff history: grid and DG ₹/kWh and a fixed ₹ per meter per local day, each row in
force from its `effective_from` until the next one.

A reading is charged at the row in force at its interval's start, whenever it arrives, so a
tariff change never reprices what came before it; that is also why a new row may not start in
the past (corrections are ledger adjustments). A site's first row is in force since
`TARIFF_EPOCH`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db.engine import Database
from storage.db.models import TARIFF_EPOCH, Site, Tariff
from storage.errors import Conflict, InvalidInput, NotFound, unknown_site

CENT = Decimal("0.01")


@dataclass(frozen=True)
class TariffView:
    """A tariff row with its start in the site's local time, as staff wrote it."""

    site_id: str
    grid: Decimal
    dg: Decimal
    fixed_daily: Decimal
    effective_from: dt.datetime  # local wall-clock time, naive
    effective_from_utc: dt.datetime
    created_by: str


@dataclass(frozen=True)
class SiteView:
    """A site with the tariff in force now (a site's tariffs live in its history, `Tariff`)."""

    id: str
    name: str
    region: str
    timezone: str
    auto_cut: bool
    created_at: dt.datetime
    grace_amount: Decimal
    alert_thresholds: list[str]
    no_cut_hours: str
    no_cut_weekdays: str
    tariff_grid: Decimal
    tariff_dg: Decimal
    fixed_daily: Decimal


async def site_view(session: AsyncSession, site: Site, now: dt.datetime) -> SiteView:
    """The site as staff see it, with the tariff in force at `now`."""
    tariff = await tariff_at(session, site_id=site.id, at=now)
    return SiteView(
        id=site.id,
        name=site.name,
        region=site.region,
        timezone=site.timezone,
        auto_cut=site.auto_cut,
        created_at=site.created_at,
        grace_amount=site.grace_amount,
        alert_thresholds=list(site.alert_thresholds),
        no_cut_hours=site.no_cut_hours,
        no_cut_weekdays=site.no_cut_weekdays,
        tariff_grid=tariff.grid,
        tariff_dg=tariff.dg,
        fixed_daily=tariff.fixed_daily,
    )


def _view(row: Tariff, timezone: str) -> TariffView:
    local = row.effective_from.astimezone(ZoneInfo(timezone)).replace(tzinfo=None)
    return TariffView(row.site_id, row.grid, row.dg, row.fixed_daily, local, row.effective_from, row.created_by)


def first_tariff(*, site_id: str, grid: Decimal, dg: Decimal, created_at: dt.datetime) -> Tariff:
    """The row a new site starts with: in force since `TARIFF_EPOCH`."""
    return Tariff(
        site_id=site_id, effective_from=TARIFF_EPOCH, grid=grid, dg=dg, created_at=created_at, created_by="site"
    )


async def tariff_at(session: AsyncSession, *, site_id: str, at: dt.datetime) -> Tariff:
    """The row in force at `at` (every site has one since `TARIFF_EPOCH`)."""
    query = (
        select(Tariff)
        .where(Tariff.site_id == site_id, Tariff.effective_from <= at)  # type: ignore[arg-type]
        .order_by(Tariff.effective_from.desc())  # type: ignore[attr-defined]
        .limit(1)
    )
    row = (await session.execute(query)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"site {site_id!r} has no tariff at {at:%Y-%m-%d %H:%M}", {"site_id": ["No tariff."]})
    return row


async def set_tariff(
    db: Database,
    *,
    site_id: str,
    grid: Decimal,
    dg: Decimal,
    fixed_daily: Decimal,
    effective_from: dt.datetime | None,
    now: dt.datetime,
    created_by: str = "",
) -> TariffView:
    """Add a row from `effective_from` (site-local wall-clock time, naive; None: now).

    InvalidInput if it starts in the past; Conflict if the site already has a row from that instant.
    """
    async with db.transaction() as session:
        site = await session.get(Site, site_id)
        if site is None:
            raise unknown_site(site_id)
        if effective_from is None:
            start = now
        else:
            start = effective_from.replace(tzinfo=ZoneInfo(site.timezone)).astimezone(dt.UTC)
            if start < now.replace(second=0, microsecond=0):
                raise InvalidInput(
                    "effective_from is in the past: a tariff may not reprice what was already billed "
                    "(correct past charges with a ledger adjustment)",
                    {"effective_from": ["Must not be in the past (site local time)."]},
                )
        row = Tariff(
            site_id=site_id,
            effective_from=start,
            grid=grid.quantize(CENT),
            dg=dg.quantize(CENT),
            fixed_daily=fixed_daily.quantize(CENT),
            created_at=now,
            created_by=created_by,
        )
        session.add(row)
        try:
            await session.flush()
        except IntegrityError:
            raise Conflict(
                "the site already has a tariff from that time", {"effective_from": ["A tariff starts then already."]}
            ) from None
        timezone = site.timezone
    return _view(row, timezone)


async def list_tariffs(db: Database, *, site_id: str) -> list[TariffView]:
    """Every row of a site, oldest first; NotFound for an unknown site."""
    async with db.reader() as session:
        site = await session.get(Site, site_id)
        if site is None:
            raise unknown_site(site_id)
        rows = (
            await session.execute(select(Tariff).where(Tariff.site_id == site_id).order_by(Tariff.effective_from))  # type: ignore[arg-type]
        ).scalars()
        return [_view(row, site.timezone) for row in rows]


async def current_tariff(db: Database, *, site_id: str, now: dt.datetime) -> TariffView:
    """The row in force now."""
    async with db.reader() as session:
        site = await session.get(Site, site_id)
        if site is None:
            raise unknown_site(site_id)
        return _view(await tariff_at(session, site_id=site_id, at=now), site.timezone)
