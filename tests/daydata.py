"""Test data for days: sites and meters with a chosen creation time, readings inserted directly."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import insert, select

from storage.calendar import day_intervals
from storage.db.engine import Database
from storage.db.models import DailyTotal, Meter, Reading, Site
from storage.money.tariffs import first_tariff

UTC = dt.UTC


def at(timezone: str, text: str) -> dt.datetime:
    """A local wall-clock time 'YYYY-MM-DD HH:MM' in a zone, as an aware UTC instant."""
    from zoneinfo import ZoneInfo

    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(timezone)).astimezone(UTC)


async def make_site(
    db: Database,
    site_id: str = "S1",
    *,
    timezone: str = "Asia/Kolkata",
    meters: tuple[int, ...] = (1, 2),
    created: dt.datetime = dt.datetime(2025, 1, 1, tzinfo=UTC),
) -> None:
    """A site and its meters, registered at `created` (the injected clock's past, not real time)."""
    async with db.transaction() as session:
        session.add(Site(id=site_id, name=site_id, region="North", timezone=timezone, created_at=created))
        await session.flush()
        session.add(first_tariff(site_id=site_id, grid=Decimal("8.00"), dg=Decimal("20.00"), created_at=created))
        for meter_no in meters:
            session.add(
                Meter(
                    meter_no=meter_no,
                    site_id=site_id,
                    unit_no=f"U{meter_no}",
                    consumer_name=f"Consumer {meter_no}",
                    fin_no=f"F{meter_no}",
                    created_at=created,
                )
            )


async def add_readings(
    db: Database,
    meter_no: int,
    starts: list[dt.datetime],
    *,
    received_at: dt.datetime,
    kwh: str = "0.500",
    source: str = "grid",
) -> None:
    """One reading of `kwh` per interval start, all received at one instant."""
    rows = [
        {
            "meter_no": meter_no,
            "interval_start": start,
            "kwh": Decimal(kwh),
            "source": source,
            "charge": Decimal("4.00"),
            # The DG part only when there is one: a database at a revision before 0010 lacks the columns.
            **({"dg_kwh": Decimal(kwh), "dg_charge": Decimal("4.00")} if source == "dg" else {}),
            "received_at": received_at,
        }
        for start in starts
    ]
    async with db.transaction() as session:
        await session.execute(insert(Reading), rows)


def whole_day(timezone: str, day: str) -> list[dt.datetime]:
    """Every interval start of a local day."""
    return day_intervals(timezone, dt.date.fromisoformat(day))


async def totals(db: Database, day: str) -> dict[int, tuple[Decimal, Decimal, Decimal, int]]:
    """meter → (kwh, grid_kwh, dg_kwh, intervals) for one day."""
    async with db.reader() as session:
        rows = await session.execute(
            select(
                DailyTotal.meter_no,
                DailyTotal.kwh,
                DailyTotal.grid_kwh,
                DailyTotal.dg_kwh,
                DailyTotal.intervals,
            )
            .where(DailyTotal.day == dt.date.fromisoformat(day))
            .order_by(DailyTotal.meter_no)
        )
        return {n: (k, g, d, i) for n, k, g, d, i in rows.all()}
