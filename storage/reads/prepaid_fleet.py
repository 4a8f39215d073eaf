"""The manager's prepaid view of their sites: who is running out (days left), who is below zero
or off and why, what was collected, which recharges are stuck, how long the DGs ran, and which
meter-intervals are missing. Every query is limited to the sites a staff account sees (`only`,
None for all) and, when one is chosen, to one site.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import func, select

from storage.calendar import HALF_HOUR, day_bounds, day_intervals, local_day
from storage.db.engine import Database
from storage.db.models import Command, DieselGenerator, Meter, Reading, Recharge, Site
from storage.money.policy import cut_threshold, days_left_of
from storage.reads.meter_views import RELAY_ACTIONS, RELAY_OFF_REASONS, dg_runs
from storage.registry.meter_roles import billed

LOW_DAYS = Decimal("3.0")  # a meter with fewer days left than this is listed as low
STUCK = ("requested", "waiting", "error")  # recharges a manager should look at
LISTED = 50  # rows per list; counts are of all


def _sites(only: Collection[str] | None, site_id: str | None) -> sa.ColumnElement[bool]:
    condition: sa.ColumnElement[bool] = sa.true()
    if only is not None:
        condition = sa.and_(condition, Site.id.in_(list(only)))  # type: ignore[attr-defined]
    if site_id:
        condition = sa.and_(condition, Site.id == site_id)
    return condition


async def visible_sites(db: Database, *, only: Collection[str] | None) -> list[Site]:
    """The sites a staff account sees, by name (for the site selector)."""
    async with db.reader() as session:
        query = select(Site).where(_sites(only, None)).order_by(Site.name, Site.id)
        return list((await session.execute(query)).scalars())


@dataclass(frozen=True)
class MeterMoney:
    """A meter's money and supply as a manager sees it."""

    meter_no: int
    site_id: str
    unit_no: str
    consumer_name: str
    balance: Decimal
    relay_on: bool
    days_left: Decimal | None
    off_reason: str  # "" when on; "cut" (zero balance), "stopped" (by staff) or "off"
    command_reason: str  # the reason written on the command that switched it off


async def meter_money(
    db: Database, *, now: dt.datetime, only: Collection[str] | None, site_id: str | None = None, search: str = ""
) -> list[MeterMoney]:
    """Every active flat of the sites (optionally matching `search` in its unit, meter number
    or consumer name), with days left at the last 7 days' spend and why it is off."""
    async with db.reader() as session:
        query = (
            select(Meter, Site)
            .join(Site, Site.id == Meter.site_id)  # type: ignore[arg-type]
            .where(Meter.active.is_(True), billed(Meter.role), _sites(only, site_id))  # type: ignore[attr-defined]
            .order_by(Meter.site_id, Meter.unit_no, Meter.meter_no)
        )
        if search:
            needle = f"%{search.strip().lower()}%"
            query = query.where(
                sa.or_(
                    func.lower(Meter.unit_no).like(needle),
                    func.lower(Meter.consumer_name).like(needle),
                    sa.cast(Meter.meter_no, sa.String).like(needle.replace("-", "")),
                )
            )
        rows = (await session.execute(query)).all()
        if not rows:
            return []
        numbers = [meter.meter_no for meter, _ in rows]
        left: dict[int, Decimal | None] = {}
        for timezone in {site.timezone for _, site in rows}:
            zoned = [meter for meter, site in rows if site.timezone == timezone]
            left.update(await days_left_of(session, meters=zoned, timezone=timezone, now=now))
        last_relay = (
            select(Command.meter_no, func.max(Command.id).label("id"))
            .where(Command.meter_no.in_(numbers), Command.action.in_(RELAY_ACTIONS), Command.state == "done")  # type: ignore[attr-defined]
            .group_by(Command.meter_no)
            .subquery()
        )
        offs = {
            meter_no: (action, reason)
            for meter_no, action, reason in (
                await session.execute(
                    select(Command.meter_no, Command.action, Command.reason).join(
                        last_relay,
                        Command.id == last_relay.c.id,  # type: ignore[arg-type]
                    )
                )
            ).all()
        }
    result = []
    for meter, site in rows:
        action, reason = offs.get(meter.meter_no, ("", ""))
        off = "" if meter.relay_on else RELAY_OFF_REASONS.get(action, "off")
        result.append(
            MeterMoney(
                meter.meter_no,
                site.id,
                meter.unit_no,
                meter.consumer_name,
                meter.balance,
                meter.relay_on,
                left[meter.meter_no],
                off,
                "" if meter.relay_on else reason,
            )
        )
    return result


@dataclass(frozen=True)
class MoneyLists:
    """The meters a manager should act on, each list lowest balance first."""

    low: list[MeterMoney]  # on, above the cut threshold, fewer than LOW_DAYS days left
    negative: list[MeterMoney]  # balance below zero
    cut: list[MeterMoney]  # off for zero balance
    stopped: list[MeterMoney]  # off because staff stopped them (call 7)


def money_lists(meters: list[MeterMoney], grace: dict[str, Decimal]) -> MoneyLists:
    """Sort meters into the lists of the dashboard (`grace`: site → grace amount)."""

    def by_balance(items: list[MeterMoney]) -> list[MeterMoney]:
        return sorted(items, key=lambda m: (m.balance, m.meter_no))

    low = [
        m
        for m in meters
        if m.relay_on
        and m.days_left is not None
        and m.days_left < LOW_DAYS
        and m.balance > cut_threshold(grace.get(m.site_id, Decimal("0")))
    ]
    return MoneyLists(
        low=sorted(low, key=lambda m: (m.days_left, m.meter_no)),
        negative=by_balance([m for m in meters if m.balance < 0]),
        cut=by_balance([m for m in meters if m.off_reason == "cut"]),
        stopped=by_balance([m for m in meters if m.off_reason == "stopped"]),
    )


@dataclass(frozen=True)
class Collected:
    """Recharges credited at a site today and this month (its local calendar)."""

    site_id: str
    today_amount: Decimal
    today_count: int
    month_amount: Decimal
    month_count: int


async def collected(
    db: Database, *, now: dt.datetime, only: Collection[str] | None, site_id: str | None = None
) -> list[Collected]:
    """Per site: successful recharges by when they were applied, today and this month."""
    result = []
    async with db.reader() as session:
        sites = (await session.execute(select(Site).where(_sites(only, site_id)).order_by(Site.id))).scalars().all()
        for site in sites:
            today = local_day(site.timezone, now)
            day_start = day_bounds(site.timezone, today)[0]
            month_start = day_bounds(site.timezone, today.replace(day=1))[0]
            applied = func.coalesce(Recharge.applied_at, Recharge.created_at)
            sums = []
            for start in (day_start, month_start):
                amount, count = (
                    await session.execute(
                        select(func.coalesce(func.sum(Recharge.amount), 0), func.count()).where(
                            Recharge.site_id == site.id, Recharge.state == "success", applied >= start, applied <= now
                        )
                    )
                ).one()
                sums.append((Decimal(amount), int(count)))
            result.append(Collected(site.id, sums[0][0], sums[0][1], sums[1][0], sums[1][1]))
    return result


async def stuck_recharges(
    db: Database, *, only: Collection[str] | None, site_id: str | None = None, limit: int = LISTED
) -> list[Recharge]:
    """Recharges that failed or are still pending, newest first."""
    async with db.reader() as session:
        query = (
            select(Recharge)
            .join(Site, Site.id == Recharge.site_id)  # type: ignore[arg-type]
            .where(Recharge.state.in_(STUCK), _sites(only, site_id))  # type: ignore[attr-defined]
            .order_by(Recharge.created_at.desc(), Recharge.id.desc())  # type: ignore[attr-defined,union-attr]
            .limit(limit)
        )
        return list((await session.execute(query)).scalars())


@dataclass(frozen=True)
class DgHours:
    """A DG's running time today and this month (site-local), and its last fuel level."""

    site_id: str
    dg_no: str
    status: str
    today_minutes: int
    month_minutes: int
    fuel_litres: Decimal | None
    fuel_at: dt.datetime | None


async def dg_hours(
    db: Database, *, now: dt.datetime, only: Collection[str] | None, site_id: str | None = None
) -> list[DgHours]:
    """Per DG of the sites: minutes run today and this month, from its ON/OFF changes."""
    async with db.reader() as session:
        rows = (
            await session.execute(
                select(DieselGenerator, Site.timezone)
                .join(Site, Site.id == DieselGenerator.site_id)  # type: ignore[arg-type]
                .where(_sites(only, site_id))
                .order_by(DieselGenerator.site_id, DieselGenerator.dg_no)
            )
        ).all()
    result = []
    for dg, timezone in rows:
        today = local_day(timezone, now)
        minutes = []
        for first in (today, today.replace(day=1)):
            runs = await dg_runs(db, site_id=dg.site_id, start=day_bounds(timezone, first)[0], end=now)
            minutes.append(sum(r.minutes_in_window for r in runs if r.dg_no == dg.dg_no))
        result.append(DgHours(dg.site_id, dg.dg_no, dg.status, minutes[0], minutes[1], dg.fuel_litres, dg.fuel_at))
    return result


@dataclass(frozen=True)
class MissingIntervals:
    """A meter's half hours without a reading on one local day."""

    meter_no: int
    unit_no: str
    missing: list[dt.datetime]  # UTC starts
    expected: int


async def missing_intervals(
    db: Database, *, site_id: str, day: dt.date, now: dt.datetime, only: Collection[str] | None
) -> list[MissingIntervals]:
    """The drill-down of completeness: each active meter of the site that lacks readings for
    ended half hours of `day` (while it was in service), with which ones."""
    async with db.reader() as session:
        site = (await session.execute(select(Site).where(_sites(only, site_id)))).scalar_one_or_none()
        if site is None:
            return []
        meters = (
            await session.execute(
                select(Meter).where(Meter.site_id == site.id, Meter.active.is_(True)).order_by(Meter.meter_no)  # type: ignore[attr-defined]
            )
        ).scalars()
        start, end = day_bounds(site.timezone, day)
        seen: dict[int, set[dt.datetime]] = {}
        for meter_no, interval_start in (
            await session.execute(
                select(Reading.meter_no, Reading.interval_start)
                .join(Meter, Meter.meter_no == Reading.meter_no)  # type: ignore[arg-type]
                .where(Meter.site_id == site.id, Reading.interval_start >= start, Reading.interval_start < end)
            )
        ).all():
            seen.setdefault(meter_no, set()).add(interval_start)
        result = []
        for meter in meters:
            due = [s for s in day_intervals(site.timezone, day) if s >= meter.created_at and s + HALF_HOUR <= now]
            gaps = [s for s in due if s not in seen.get(meter.meter_no, set())]
            if gaps:
                result.append(MissingIntervals(meter.meter_no, meter.unit_no, gaps, len(due)))
    return result
