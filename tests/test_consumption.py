"""Consumption for the portal, on both databases: rolled days from daily totals, unrolled days
and today from readings, half-hourly bars, and the dashboard's fleet figures."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from storage.db.engine import Database
from storage.errors import NotFound
from storage.reads import consumption, fleet
from tests.daydata import add_readings, at, whole_day
from tests.portaldata import CUT, KOLKATA, NEIGHBOUR, NOW, RESIDENT, make_world

D = Decimal


@pytest.fixture
async def world(db: Database) -> Database:
    await make_world(db)
    return db


async def test_week_combines_rolled_days_unrolled_days_and_today(world: Database) -> None:
    usage = await consumption.meter_consumption(world, meter_no=RESIDENT, period="current-week", now=NOW)
    by_day = {b.key: (b.grid, b.dg, b.intervals) for b in usage.bars}
    assert next(iter(by_day)) == "2025-02-10" and len(by_day) == 7
    assert by_day["2025-02-10"] == (D("24.000"), D("0.000"), 48)  # rolled: daily_total
    assert by_day["2025-02-11"] == (D("20.000"), D("10.000"), 48)  # not rolled yet: readings
    assert by_day["2025-02-12"] == (D("4.750"), D("1.500"), 21)  # today: readings
    assert by_day["2025-02-13"] == (D("0.000"), D("0.000"), 0)
    assert usage.total == D("60.250") and usage.dg == D("11.500")


async def test_a_rolled_day_is_read_from_daily_total_not_readings(world: Database) -> None:
    # A reading that arrives after the roll counts only once the rollup re-rolls the day.
    await add_readings(world, CUT, [at(KOLKATA, "2025-02-10 23:30")], received_at=NOW, kwh="9.000")
    usage = await consumption.meter_consumption(world, meter_no=CUT, period="current-week", now=NOW)
    assert usage.bars[0].total == D("4.800") and usage.bars[0].intervals == 24


async def test_day_has_48_half_hour_bars_with_sources(world: Database) -> None:
    usage = await consumption.meter_consumption(world, meter_no=RESIDENT, period="current-day", now=NOW)
    assert len(usage.bars) == 48
    assert usage.bars[0].label == "00:00" and usage.bars[0].key == "2025-02-12T00:00:00+05:30"
    assert (usage.bars[19].label, usage.bars[19].dg, usage.bars[19].grid) == ("09:30", D("0.750"), D("0.000"))
    assert usage.total == D("6.250") and usage.intervals == 21


async def test_prev_hr_is_the_last_two_intervals(world: Database) -> None:
    usage = await consumption.meter_consumption(world, meter_no=RESIDENT, period="prev-hr", now=NOW)
    assert [(b.label, b.total) for b in usage.bars] == [("09:30", D("0.750")), ("10:00", D("0.750"))]


async def test_month_and_previous_month(world: Database) -> None:
    month = await consumption.meter_consumption(world, meter_no=RESIDENT, period="current-month", now=NOW)
    assert len(month.bars) == 28 and month.total == D("60.250")
    previous = await consumption.meter_consumption(world, meter_no=RESIDENT, period="prev-month", now=NOW)
    assert len(previous.bars) == 31 and previous.bars[-1].total == D("4.800") and previous.total == D("4.800")


async def test_summary_has_today_so_far(world: Database) -> None:
    summary = await consumption.meter_summary(world, meter_no=RESIDENT, now=NOW)
    assert (summary.today_grid, summary.today_dg, summary.today_intervals) == (D("4.750"), D("1.500"), 21)
    assert summary.site.id == "S1" and summary.meter.balance == D("150.00")


async def test_unknown_meter_is_not_found(world: Database) -> None:
    with pytest.raises(NotFound):
        await consumption.meter_consumption(world, meter_no=42, period="current-day", now=NOW)


async def test_site_and_region_usage_for_a_week(world: Database) -> None:
    sites = await fleet.site_usage(world, period="current-week", now=NOW)
    assert [(s.site_id, s.region, s.total, s.meters) for s in sites] == [
        ("S1", "North", D("60.250") + D("48.000") + D("20.000"), 2),
        ("S2", "South", D("4.800"), 1),
    ]
    regions = fleet.region_usage(sites)
    assert [(r.name, r.total) for r in regions] == [("North", D("128.250")), ("South", D("4.800"))]


async def test_top_consumers_silent_and_cut_meters(world: Database) -> None:
    top = await fleet.top_consumers(world, period="current-week", now=NOW, limit=2)
    assert [(m.meter_no, m.total) for m in top] == [(NEIGHBOUR, D("68.000")), (RESIDENT, D("60.250"))]
    silent_count, silent = await fleet.silent_meters(world, now=NOW)
    assert silent_count == 2 and {m.meter_no for m in silent} == {NEIGHBOUR, CUT}  # RESIDENT read at 10:31
    later_count, _ = await fleet.silent_meters(world, now=NOW + dt.timedelta(hours=1))
    assert later_count == 3
    cut_count, cut = await fleet.cut_meters(world)
    assert cut_count == 1 and cut[0].meter_no == CUT and cut[0].balance == D("-5.00")


async def test_completeness_of_yesterday_and_today(world: Database) -> None:
    found = {c.site_id: c for c in await fleet.completeness(world, now=NOW)}
    s1 = found["S1"]
    assert (s1.day, s1.meters, s1.day_expected, s1.day_seen, s1.day_complete_meters) == (
        dt.date(2025, 2, 11),
        2,
        48,
        48,
        1,
    )
    assert (s1.today_expected, s1.today_seen) == (21, 31)  # 10:30 has passed: 21 intervals ended
    assert found["S2"].day_percent == 0.0


async def test_whole_day_of_one_meter_matches_between_sources(db: Database) -> None:
    # The same readings give the same bars whether the day is rolled or not.
    await make_world(db)
    await add_readings(db, NEIGHBOUR, whole_day(KOLKATA, "2025-02-11"), received_at=NOW, kwh="0.300")
    before = await consumption.meter_consumption(db, meter_no=NEIGHBOUR, period="current-week", now=NOW)
    from storage import days

    await days.roll_up_day(db, site_id="S1", day=dt.date(2025, 2, 11), now=NOW)
    after = await consumption.meter_consumption(db, meter_no=NEIGHBOUR, period="current-week", now=NOW)
    assert before.bars == after.bars and after.bars[1].total == D("14.400")
