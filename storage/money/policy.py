"""A site's prepaid policy: when a meter is cut, when a cut must wait, when staff are warned.

- Cut threshold: an auto-cut meter is cut when its balance is at or below −`grace_amount`
  (`cut_threshold`).
- No-cut windows: local hours (`no_cut_hours`, may wrap midnight), weekdays and holidays during
  which a zero-balance cut is not carried out; it is deferred to the end of the window (windows
  that touch chain: a Sunday holiday's night ends on Monday morning), and a recharge before then
  cancels it (`NoCutWindows.deferral`). Staff stops (call 7) are never deferred.
- Alerts: `balance.low` once per downward crossing of each of `alert_thresholds`; thresholds
  below the balance are armed again when money comes in (`alert_step`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from storage.db.engine import Database
from storage.db.models import Command, Holiday, LedgerEntry, Meter, Reading, Site
from storage.errors import NotFound, unknown_site
from storage.money import site_events
from storage.registry.meter_roles import billed

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
MAX_CHAINED_WINDOWS = 400  # more than a year of back-to-back windows: a policy that never allows a cut


Amount = TypeVar("Amount", Decimal, ColumnElement[Any])


def cut_threshold(grace_amount: Amount) -> Amount:
    """The balance at or below which an auto-cut meter is cut: minus its site's grace credit.

    One definition for both sides: the dispatcher and restores pass a Decimal, ingest's cut
    rule (`storage.ingest.rules.CutDecision`) a SQL expression."""
    return -grace_amount


def _hours(text: str) -> tuple[dt.time, dt.time] | None:
    if not text:
        return None
    start, end = text.split("-")
    return dt.time.fromisoformat(start), dt.time.fromisoformat(end)


@dataclass(frozen=True)
class NoCutWindows:
    """When a site's zero-balance cuts must wait."""

    timezone: str
    hours: tuple[dt.time, dt.time] | None
    weekdays: frozenset[int]
    holidays: frozenset[dt.date]

    @classmethod
    def of(cls, site: Site, holidays: set[dt.date] | frozenset[dt.date]) -> NoCutWindows:
        """The windows of a site, with its holidays."""
        weekdays = frozenset(WEEKDAYS.index(day) for day in site.no_cut_weekdays.split(",") if day)
        return cls(site.timezone, _hours(site.no_cut_hours), weekdays, frozenset(holidays))

    def _in_hours(self, local: dt.datetime) -> bool:
        if self.hours is None:
            return False
        start, end, now = *self.hours, local.time()
        return start <= now < end if start < end else now >= start or now < end

    def _window_end(self, local: dt.datetime) -> dt.datetime | None:
        """The end of the window `local` is in (local wall time), None outside every window."""
        if local.date() in self.holidays or local.weekday() in self.weekdays:
            return dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(0), tzinfo=local.tzinfo)
        if self._in_hours(local):
            assert self.hours is not None
            end = dt.datetime.combine(local.date(), self.hours[1], tzinfo=local.tzinfo)
            return end if end > local else end + dt.timedelta(days=1)
        return None

    def deferral(self, at: dt.datetime) -> dt.datetime | None:
        """When a cut falling due at `at` may be carried out, if not at once: the end of the
        window (and of any window that follows without a gap); None outside every window."""
        zone = ZoneInfo(self.timezone)
        moment, moved = at.astimezone(zone), False
        for _ in range(MAX_CHAINED_WINDOWS):
            end = self._window_end(moment)
            if end is None:
                break
            # Through UTC, so a window ending in a DST gap lands on a real instant.
            moment, moved = end.astimezone(dt.UTC).astimezone(zone), True
        return moment.astimezone(dt.UTC) if moved else None


def parse_thresholds(values: list[str]) -> list[Decimal]:
    """A site's stored alert thresholds, highest first."""
    return sorted((Decimal(v) for v in values), reverse=True)


def alert_step(
    thresholds: list[Decimal], level: Decimal | None, balance: Decimal
) -> tuple[list[Decimal], Decimal | None]:
    """The thresholds to alert now (highest first) and the meter's alert level after.

    `level` is the lowest threshold already alerted (None: none). A balance above it re-arms
    every threshold below the balance; a balance at or below thresholds not yet alerted crosses
    them.
    """
    if level is not None and balance > level:
        above = [t for t in thresholds if t >= balance]
        return [], (min(above) if above else None)
    crossed = [t for t in thresholds if balance <= t and (level is None or t < level)]
    return crossed, (min(crossed) if crossed else level)


def days_left(balance: Decimal, charges: Decimal, days: int) -> Decimal | None:
    """Balance ÷ the average daily charge over `days` days (one decimal); None without charges."""
    if days <= 0 or charges <= 0:
        return None
    if balance <= 0:
        return Decimal("0.0")
    return (balance * days / charges).quantize(Decimal("0.1"))


# --- Holidays ---------------------------------------------------------------------------------


async def add_holiday(db: Database, *, site_id: str, day: dt.date, name: str) -> Holiday:
    """Add (or rename) a holiday of a site; NotFound for an unknown site."""
    async with db.transaction() as session:
        if await session.get(Site, site_id) is None:
            raise unknown_site(site_id)
        holiday = await session.get(Holiday, (site_id, day))
        if holiday is None:
            holiday = Holiday(site_id=site_id, day=day, name=name)
            session.add(holiday)
        else:
            holiday.name = name
    return holiday


async def remove_holiday(db: Database, *, site_id: str, day: dt.date) -> None:
    """Remove a holiday; NotFound if the site has none on that day."""
    async with db.transaction() as session:
        holiday = await session.get(Holiday, (site_id, day))
        if holiday is None:
            raise NotFound(f"site {site_id!r} has no holiday on {day}", {"date": ["Not a holiday of this site."]})
        await session.delete(holiday)


async def list_holidays(db: Database, *, site_id: str) -> list[Holiday]:
    """A site's holidays by date; NotFound for an unknown site."""
    async with db.reader() as session:
        if await session.get(Site, site_id) is None:
            raise unknown_site(site_id)
        query = select(Holiday).where(Holiday.site_id == site_id).order_by(Holiday.day)  # type: ignore[arg-type]
        return list((await session.execute(query)).scalars())


# --- Balance alerts ---------------------------------------------------------------------------


async def raise_balance_alerts(db: Database, *, now: dt.datetime) -> int:
    """One pass over the meters of sites with alert thresholds: a `balance.low` event for each
    threshold a balance crossed downwards since the last pass, re-arming thresholds a credit
    lifted it above. Returns the events written. One transaction per site."""
    async with db.reader() as session:
        sites = [s for s in (await session.execute(select(Site))).scalars() if s.alert_thresholds]
    written = 0
    for site in sites:
        thresholds = parse_thresholds(site.alert_thresholds)
        async with db.transaction() as session:
            query = (
                select(Meter)
                .where(
                    Meter.site_id == site.id,
                    Meter.active,
                    billed(Meter.role),
                    sa.or_(Meter.balance <= thresholds[0], Meter.alert_level.is_not(None)),  # type: ignore[union-attr]
                )
                .order_by(Meter.meter_no)
                .with_for_update()
            )
            for meter in (await session.execute(query)).scalars():
                crossed, level = alert_step(thresholds, meter.alert_level, meter.balance)
                if level != meter.alert_level:
                    meter.alert_level = level
                for threshold in crossed:
                    await site_events.add_event(
                        session,
                        site_id=site.id,
                        type="balance.low",
                        at=now,
                        now=now,
                        meter_no=meter.meter_no,
                        data={"threshold": str(threshold), "balance": str(meter.balance), "unit_no": meter.unit_no},
                    )
                    written += 1
    return written


# --- Days left --------------------------------------------------------------------------------

DAYS_LEFT_WINDOW = 7


async def days_left_of(
    session: AsyncSession, *, meters: Sequence[Meter], timezone: str, now: dt.datetime
) -> dict[int, Decimal | None]:
    """Each meter's balance ÷ its average daily charge (energy and fixed) over the last
    `DAYS_LEFT_WINDOW` ended local days it was in service; None when it was charged nothing.
    One aggregate per kind of charge for all the meters of a timezone."""
    zone = ZoneInfo(timezone)
    today = now.astimezone(zone).date()
    first = today - dt.timedelta(days=DAYS_LEFT_WINDOW)
    start = dt.datetime.combine(first, dt.time(0), tzinfo=zone).astimezone(dt.UTC)
    end = dt.datetime.combine(today, dt.time(0), tzinfo=zone).astimezone(dt.UTC)
    numbers = [meter.meter_no for meter in meters]
    energy = dict(
        (
            await session.execute(
                select(Reading.meter_no, func.sum(Reading.charge))
                .where(
                    Reading.meter_no.in_(numbers),  # type: ignore[attr-defined]
                    Reading.interval_start >= start,  # type: ignore[operator]
                    Reading.interval_start < end,  # type: ignore[operator]
                )
                .group_by(Reading.meter_no)
            )
        ).all()
    )
    fixed = dict(
        (
            await session.execute(
                select(LedgerEntry.meter_no, func.sum(LedgerEntry.amount))
                .where(
                    LedgerEntry.meter_no.in_(numbers),  # type: ignore[attr-defined]
                    LedgerEntry.kind == "fixed",
                    LedgerEntry.day >= first,  # type: ignore[operator]
                    LedgerEntry.day < today,  # type: ignore[operator]
                )
                .group_by(LedgerEntry.meter_no)
            )
        ).all()
    )
    left: dict[int, Decimal | None] = {}
    for meter in meters:
        # Readings and fixed charges exist only while in service: the window's sums need no
        # per-meter bounds, only the number of days it was in service.
        days = (today - max(first, meter.created_at.astimezone(zone).date())).days
        charges = Decimal(energy.get(meter.meter_no) or 0) - Decimal(fixed.get(meter.meter_no) or 0)
        left[meter.meter_no] = days_left(meter.balance, charges, days)
    return left


async def meter_days_left(db: Database, *, meter: Meter, timezone: str, now: dt.datetime) -> Decimal | None:
    """`days_left_of` for one meter."""
    async with db.reader() as session:
        return (await days_left_of(session, meters=[meter], timezone=timezone, now=now))[meter.meter_no]


@dataclass(frozen=True)
class PrepaidStatus:
    """What a resident should know about their meter's money now (the portal's alerts)."""

    days_left: Decimal | None
    below_threshold: Decimal | None  # the lowest alert threshold the balance is at or below
    cut_threshold: Decimal
    cut_deferred_until: dt.datetime | None  # a zero-balance cut waiting for a no-cut window to end


async def prepaid_status(db: Database, *, meter: Meter, site: Site, now: dt.datetime) -> PrepaidStatus:
    """Days left, the alert threshold crossed, and a deferred cut, for one meter."""
    left = await meter_days_left(db, meter=meter, timezone=site.timezone, now=now)
    async with db.reader() as session:
        deferred = await session.scalar(
            select(Command.params)
            .where(Command.meter_no == meter.meter_no, Command.action == "cut", Command.state == "requested")
            .order_by(Command.id.desc())  # type: ignore[union-attr]
            .limit(1)
        )
    until = (deferred or {}).get("deferred_until")
    return PrepaidStatus(
        days_left=left,
        below_threshold=meter.alert_level,
        cut_threshold=cut_threshold(site.grace_amount),
        cut_deferred_until=dt.datetime.fromisoformat(until) if until else None,
    )


def restore_amount(balance: Decimal, grace_amount: Decimal) -> Decimal:
    """The least recharge (₹, whole paise) that lifts a balance above the cut threshold, which
    is what restores a meter cut for zero balance; 0.00 when the balance is already above it."""
    short = cut_threshold(grace_amount) - balance
    return max(short + Decimal("0.01"), Decimal("0.00")) if short >= 0 else Decimal("0.00")
