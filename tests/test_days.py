"""The rollup with the injected clock: local midnights, DST days, catch-up, late packets."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest

from gateway.errors import day_input
from storage import calendar, days
from storage.clock import FixedClock
from storage.db.engine import Database
from storage.errors import InvalidInput, NotFound
from storage.legacy.seed_files import interval_label, label_starts
from tests.daydata import add_readings, at, make_site, totals, whole_day

KOLKATA = "Asia/Kolkata"
LONDON = "Europe/London"


def rolled_days(report: days.RollupReport) -> list[tuple[str, str, str]]:
    return [(r.site_id, r.day.isoformat(), r.reason) for r in report.days]


def test_a_day_has_48_intervals_and_46_or_50_on_dst_changes() -> None:
    assert len(whole_day(KOLKATA, "2025-02-08")) == 48
    assert len(whole_day(LONDON, "2025-03-30")) == 46  # clocks go forward: 23 hours
    assert len(whole_day(LONDON, "2025-10-26")) == 50  # clocks go back: 25 hours
    assert len(whole_day("America/New_York", "2025-03-09")) == 46
    assert len(whole_day("Asia/Kathmandu", "2025-02-08")) == 48  # +05:45: UTC half hours still


def test_kolkata_day_starts_at_1830_utc_and_labels_are_the_seeds() -> None:
    starts = whole_day(KOLKATA, "2025-02-08")
    assert starts[0] == dt.datetime(2025, 2, 7, 18, 30, tzinfo=dt.UTC)
    assert starts[-1] == dt.datetime(2025, 2, 8, 18, 0, tzinfo=dt.UTC)
    labels = [interval_label(KOLKATA, s) for s in starts]
    assert labels[:3] == ["00:31", "01:01", "01:31"]
    assert labels[-2:] == ["23:31", "00:01"]  # 23:30-24:00 is "00:01" of the same day
    assert len(set(labels)) == 48


def test_labels_on_dst_days() -> None:
    short = label_starts(LONDON, dt.date(2025, 3, 30))
    assert len(short) == 46 and "01:31" not in short and "02:01" in short
    long = [interval_label(LONDON, s) for s in whole_day(LONDON, "2025-10-26")]
    assert len(long) == 50 and len(set(long)) == 48  # the repeated hour repeats its labels
    assert [label for label in long if long.count(label) == 2] == ["01:01", "01:31", "01:01", "01:31"]


async def test_kolkata_day_rolls_only_after_local_0015(db: Database) -> None:
    await make_site(db, timezone=KOLKATA, created=at(KOLKATA, "2025-02-08 00:00"))
    day = whole_day(KOLKATA, "2025-02-08")
    received = at(KOLKATA, "2025-02-09 00:01")
    await add_readings(db, 1, day[:40], received_at=received, kwh="0.500")
    await add_readings(db, 1, day[40:], received_at=received, kwh="1.250", source="dg")
    await add_readings(db, 2, day[:10], received_at=received, kwh="2.000")
    # Neighbours in UTC that belong to other local days: the next day's first interval.
    await add_readings(db, 2, [day[-1] + calendar.HALF_HOUR], received_at=received, kwh="9.000")

    clock = FixedClock(at(KOLKATA, "2025-02-09 00:14"))
    assert rolled_days(await days.roll_up_due(db, now=clock.now())) == []
    assert await totals(db, "2025-02-08") == {}

    clock.set(at(KOLKATA, "2025-02-09 00:16"))
    report = await days.roll_up_due(db, now=clock.now())
    assert rolled_days(report) == [("S1", "2025-02-08", "unrolled")]
    assert report.days[0].meters == 2
    assert await totals(db, "2025-02-08") == {
        1: (Decimal("30.000"), Decimal("20.000"), Decimal("10.000"), 48),
        2: (Decimal("20.000"), Decimal("20.000"), Decimal("0.000"), 10),
    }
    clock.advance(minutes=5)
    assert rolled_days(await days.roll_up_due(db, now=clock.now())) == []  # nothing new: nothing rolled


async def test_the_2330_interval_counts_in_its_own_day(db: Database) -> None:
    await make_site(db, timezone=KOLKATA, meters=(1,), created=at(KOLKATA, "2025-02-08 00:00"))
    last = at(KOLKATA, "2025-02-08 23:30")
    assert interval_label(KOLKATA, last) == "00:01"
    await add_readings(db, 1, [last], received_at=at(KOLKATA, "2025-02-09 00:01"), kwh="4.730")
    await days.roll_up_due(db, now=at(KOLKATA, "2025-02-09 00:20"))
    assert await totals(db, "2025-02-08") == {1: (Decimal("4.730"), Decimal("4.730"), Decimal("0.000"), 1)}
    assert await totals(db, "2025-02-09") == {}


@pytest.mark.parametrize(("day", "intervals"), [("2025-03-30", 46), ("2025-10-26", 50)])
async def test_dst_days_roll_23_and_25_hours(db: Database, day: str, intervals: int) -> None:
    start = dt.date.fromisoformat(day)
    await make_site(db, timezone=LONDON, created=at(LONDON, f"{day} 00:00"))
    starts = whole_day(LONDON, day)
    await add_readings(db, 1, starts, received_at=at(LONDON, f"{day} 23:59"), kwh="1.000")
    await add_readings(db, 2, starts[:48], received_at=at(LONDON, f"{day} 23:59"), kwh="1.000")
    next_day = start + dt.timedelta(days=1)
    report = await days.roll_up_due(db, now=at(LONDON, f"{next_day} 00:15"))
    assert rolled_days(report) == [("S1", day, "unrolled")]
    rolled = await totals(db, day)
    assert rolled[1] == (Decimal(intervals), Decimal(intervals), Decimal(0), intervals)
    assert rolled[2][3] == min(48, intervals)
    gaps = await days.day_gaps(db, site_id="S1", day=start, now=at(LONDON, f"{next_day} 00:15"))
    assert gaps.intervals_expected == intervals
    assert gaps.meters == ([] if intervals < 48 else [(2, 48)])


async def test_each_site_rolls_at_its_own_midnight(db: Database) -> None:
    new_york = "America/New_York"
    await make_site(db, "IN", timezone=KOLKATA, meters=(1,), created=at(KOLKATA, "2025-02-07 00:00"))
    await make_site(db, "NY", timezone=new_york, meters=(2,), created=at(new_york, "2025-02-07 00:00"))
    received = at(KOLKATA, "2025-02-07 23:59")
    await add_readings(db, 1, whole_day(KOLKATA, "2025-02-07"), received_at=received)
    await add_readings(db, 2, whole_day(new_york, "2025-02-07"), received_at=received)
    # 00:20 on 8 February in Kolkata is 13:50 on 7 February in New York.
    report = await days.roll_up_due(db, now=at(KOLKATA, "2025-02-08 00:20"))
    assert rolled_days(report) == [("IN", "2025-02-07", "unrolled")]
    report = await days.roll_up_due(db, now=at(new_york, "2025-02-08 00:20"))
    assert rolled_days(report) == [("NY", "2025-02-07", "unrolled")]
    assert (await totals(db, "2025-02-07"))[2][3] == 48


async def test_catch_up_after_a_three_day_outage(db: Database) -> None:
    await make_site(db, timezone=KOLKATA, meters=(1,), created=at(KOLKATA, "2025-02-01 00:00"))
    clock = FixedClock(at(KOLKATA, "2025-02-01 00:00"))
    for day in ("2025-02-01", "2025-02-02", "2025-02-03", "2025-02-04"):
        await add_readings(db, 1, whole_day(KOLKATA, day), received_at=at(KOLKATA, f"{day} 23:59"))
    clock.set(at(KOLKATA, "2025-02-02 00:20"))
    assert rolled_days(await days.roll_up_due(db, now=clock.now())) == [("S1", "2025-02-01", "unrolled")]
    # Down from 2 February 00:25 to 5 February 09:00: three midnights missed.
    clock.set(at(KOLKATA, "2025-02-05 09:00"))
    report = await days.roll_up_due(db, now=clock.now())
    assert rolled_days(report) == [
        ("S1", "2025-02-02", "unrolled"),
        ("S1", "2025-02-03", "unrolled"),
        ("S1", "2025-02-04", "unrolled"),
    ]
    for day in ("2025-02-02", "2025-02-03", "2025-02-04"):
        assert await totals(db, day) == {1: (Decimal("24.000"), Decimal("24.000"), Decimal("0.000"), 48)}


async def test_a_late_packet_rerolls_its_day_once(db: Database) -> None:
    await make_site(db, timezone=KOLKATA, meters=(1, 2), created=at(KOLKATA, "2025-02-08 00:00"))
    starts = whole_day(KOLKATA, "2025-02-08")
    await add_readings(db, 1, starts[:47], received_at=at(KOLKATA, "2025-02-08 23:59"))
    clock = FixedClock(at(KOLKATA, "2025-02-09 00:20"))
    await days.roll_up_due(db, now=clock.now())
    assert await totals(db, "2025-02-08") == {1: (Decimal("23.500"), Decimal("23.500"), Decimal("0.000"), 47)}

    # A concentrator delivers the missing half hour, and a silent meter's first one, at 10:00.
    clock.set(at(KOLKATA, "2025-02-09 10:00"))
    await add_readings(db, 1, starts[47:], received_at=clock.now(), kwh="3.000")
    await add_readings(db, 2, starts[:1], received_at=clock.now(), kwh="1.000", source="dg")
    clock.advance(minutes=5)
    assert rolled_days(await days.roll_up_due(db, now=clock.now())) == [("S1", "2025-02-08", "late")]
    assert await totals(db, "2025-02-08") == {
        1: (Decimal("26.500"), Decimal("26.500"), Decimal("0.000"), 48),
        2: (Decimal("1.000"), Decimal("0.000"), Decimal("1.000"), 1),
    }
    clock.advance(minutes=5)
    assert rolled_days(await days.roll_up_due(db, now=clock.now())) == []


async def test_a_packet_still_committing_during_a_roll_is_caught_by_the_next_run(db: Database) -> None:
    await make_site(db, timezone=KOLKATA, meters=(1,), created=at(KOLKATA, "2025-02-08 00:00"))
    starts = whole_day(KOLKATA, "2025-02-08")
    roll_time = at(KOLKATA, "2025-02-09 00:20")
    await days.roll_up_due(db, now=roll_time)
    # Received a minute before the roll, committed just after it: still newer than the stamp.
    await add_readings(db, 1, starts[:1], received_at=roll_time - dt.timedelta(minutes=1))
    report = await days.roll_up_due(db, now=roll_time + dt.timedelta(minutes=5))
    assert rolled_days(report) == [("S1", "2025-02-08", "late")]
    assert (await totals(db, "2025-02-08"))[1][3] == 1


async def test_rolling_by_hand_is_idempotent(db: Database) -> None:
    await make_site(db, timezone=KOLKATA, meters=(1,), created=at(KOLKATA, "2025-02-08 00:00"))
    await add_readings(db, 1, whole_day(KOLKATA, "2025-02-08"), received_at=at(KOLKATA, "2025-02-08 23:59"))
    now = at(KOLKATA, "2025-02-10 12:00")
    for _ in range(2):
        report = await days.roll_up_date(db, day=dt.date(2025, 2, 8), now=now)
        assert rolled_days(report) == [("S1", "2025-02-08", "requested")]
        assert await totals(db, "2025-02-08") == {1: (Decimal("24.000"), Decimal("24.000"), Decimal("0.000"), 48)}


async def test_rolling_a_day_not_over_or_of_an_unknown_site_is_refused(db: Database) -> None:
    await make_site(db, timezone=KOLKATA, meters=(1,))
    with pytest.raises(InvalidInput, match=r"day 2025-02-09 is not over yet at site 'S1' \(Asia/Kolkata\)"):
        await days.roll_up_date(db, day=dt.date(2025, 2, 9), now=at(KOLKATA, "2025-02-09 23:59"))
    with pytest.raises(NotFound, match="unknown site 'NOPE'"):
        await days.roll_up_due(db, now=at(KOLKATA, "2025-02-09 23:59"), site_id="NOPE")


@pytest.mark.parametrize("text", ["2025-2-8", "20250208", "2025-02-30", "", "yesterday", "2025-W06-6", "0001-01-01"])
def test_days_must_be_yyyy_mm_dd(text: str) -> None:
    # The one rule (schemas.fields.day_from_text), as the gateway's parameters and flags word it.
    with pytest.raises(InvalidInput, match="day must be a date YYYY-MM-DD"):
        day_input(text)
    assert day_input("2025-02-08") == dt.date(2025, 2, 8)


async def test_the_job_runs_directly_and_stops_between_days(db: Database) -> None:
    from scheduler.rollup import RollupJob

    await make_site(db, timezone=KOLKATA, meters=(1,), created=at(KOLKATA, "2025-02-01 00:00"))
    clock = FixedClock(at(KOLKATA, "2025-02-04 00:20"))
    job = RollupJob(db, clock)
    assert [r.day.isoformat() for r in (await job.run()).days] == ["2025-02-01", "2025-02-02", "2025-02-03"]
    clock.advance(days=2)
    await job.stop()
    report = await job.run()  # a stopped job rolls nothing and records nothing
    assert report.days == [] and report.complete is False
    assert [r.day.isoformat() for r in (await days.roll_up_due(db, now=clock.now())).days] == [
        "2025-02-04",
        "2025-02-05",
    ]


async def test_sqlite_looks_for_late_readings_through_the_received_at_index(sqlite_url: str) -> None:
    from sqlalchemy.dialects import sqlite

    query = days._arrivals_query("S1", at(KOLKATA, "2025-02-09 00:00"), at(KOLKATA, "2025-02-09 00:05"))
    compiled = query.compile(dialect=sqlite.dialect())
    params = compiled.construct_params()
    processors = compiled._bind_processors
    values = [processors[name](params[name]) if name in processors else params[name] for name in compiled.positiontup]
    database = Database(sqlite_url)
    try:
        async with database.engine.connect() as conn:
            plan = (await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", tuple(values))).all()
    finally:
        await database.dispose()
    details = " | ".join(row[-1] for row in plan)
    assert re.search(r"SEARCH reading USING (COVERING )?INDEX ix_reading_received_at", details), details
