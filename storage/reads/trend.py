"""The dashboard's monthly trend: energy per local calendar month over the last 12 months, for
the sites a staff account sees (each site's months in its own timezone), from the same usage
query as every other fleet view (daily totals for rolled days, readings for the rest)."""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import func, select

from storage.calendar import Window, day_bounds, local_day
from storage.db.engine import Database
from storage.db.models import Site
from storage.reads.consumption import unrolled_days, usage_query

MONTHS = 12
ZERO = Decimal("0.000")


@dataclass(frozen=True)
class MonthUsage:
    """One month of the trend: its first day and energy by source, all the sites together."""

    month: dt.date
    grid: Decimal
    dg: Decimal

    @property
    def label(self) -> str:
        """What the axis shows: "Feb 2025"."""
        return self.month.strftime("%b %Y")


def _months(today: dt.date) -> list[tuple[dt.date, dt.date]]:
    """(first, last) day of each of the last MONTHS months, oldest first, this one included."""
    index = today.year * 12 + today.month - 1
    spans = []
    for k in range(index - MONTHS + 1, index + 1):
        first = dt.date(k // 12, k % 12 + 1, 1)
        spans.append((first, first.replace(day=calendar.monthrange(first.year, first.month)[1])))
    return spans


async def monthly_trend(db: Database, *, now: dt.datetime, only: Collection[str] | None) -> list[MonthUsage]:
    """Grid and DG energy per month, the last 12 months, summed over the sites."""
    totals: dict[dt.date, tuple[Decimal, Decimal]] = {}
    async with db.reader() as session:
        query = select(Site.id, Site.timezone)
        if only is not None:
            query = query.where(Site.id.in_(list(only)))  # type: ignore[attr-defined]
        zones: dict[str, list[str]] = {}
        for site_id, timezone in (await session.execute(query)).all():
            zones.setdefault(timezone, []).append(site_id)
        for timezone, ids in zones.items():
            today = local_day(timezone, now)
            for first, last in _months(today):
                start, end = day_bounds(timezone, first)[0], day_bounds(timezone, last)[1]
                span = Window("month", timezone, start, end, first, last, today, True)
                unrolled = await unrolled_days(session, ids, span)
                usage = usage_query(span, unrolled, sa.and_(Site.timezone == timezone, Site.id.in_(ids)))  # type: ignore[attr-defined]
                grid, dg = (await session.execute(select(func.sum(usage.c.grid_kwh), func.sum(usage.c.dg_kwh)))).one()
                before = totals.get(first, (ZERO, ZERO))
                totals[first] = (before[0] + (grid or ZERO), before[1] + (dg or ZERO))
    return [MonthUsage(month, grid, dg) for month, (grid, dg) in sorted(totals.items())]
