"""Rollup benchmark: one day of 100,000 meters x 48 half hours, rolled into daily totals.

    taskset -c 1 python bench/rollup.py [--meters 100000] [--no-postgres] [--no-sqlite] [--no-unpartitioned]

Loads the readings straight through the driver (executemany on SQLite, COPY on PostgreSQL),
then times what the gateway does: the rollup of that site-day (one upsert statement), the
due-day check of an idle scheduler tick afterwards, and the gaps call. Target: the rollup
≤ 10 s on each database. PostgreSQL is a throwaway database at PG_BENCH_ADMIN_URL (default
the local server), dropped at the end; SQLite a file in a temporary directory.

On PostgreSQL `reading` is partitioned by month (migration 0007_partitions): the day's month
and 15 others around it are created (empty), beside those of the current months, so queries
that cannot prune (the scheduler tick's look at arrivals goes through every partition's
`received_at` index) pay for them. The same run on the table as it was before that migration
follows, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sqlite3
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import asyncpg
from common import data_dir, machine, throwaway_postgres
from sqlalchemy import insert, text

from storage import calendar, days
from storage.db.engine import Database
from storage.db.migrate import upgrade
from storage.db.models import Meter, Reading, Site
from storage.money.tariffs import first_tariff
from storage.ops import partitions

TIMEZONE = "Asia/Kolkata"
DAY = dt.date(2025, 2, 8)
FIRST_METER = 100_000_001


def progress(label: str, done: int, total: int) -> None:
    print(f"\r  {label}: {done:,}/{total:,} readings ({100 * done // total}%)", end="", flush=True)
    if done == total:
        print()


def readings(meters: int) -> Iterator[tuple[int, dt.datetime, Decimal, str, Decimal, dt.datetime]]:
    """48 readings per meter for DAY, in the order ingest stores them: every meter's packet of
    one half hour, then the next half hour. Every 7th meter ran on the DG for the evening."""
    starts = calendar.day_intervals(TIMEZONE, DAY)
    kwh = [Decimal(f"{0.1 + (i % 9) * 0.137:.3f}") for i in range(48)]
    charge = Decimal("1.10")
    for i, start in enumerate(starts):
        received = start + dt.timedelta(minutes=31)
        for n in range(meters):
            source = "dg" if n % 7 == 0 and i >= 38 else "grid"
            yield FIRST_METER + n, start, kwh[i], source, charge, received


async def setup_site(db: Database, meters: int) -> None:
    """The site and its meters (through SQLAlchemy, as the registry would), registered on DAY."""
    created = calendar.day_bounds(TIMEZONE, DAY)[0]
    async with db.transaction() as session:
        session.add(Site(id="BENCH", name="Bench", region="North", timezone=TIMEZONE, created_at=created))
        await session.flush()
        session.add(first_tariff(site_id="BENCH", grid=Decimal("8.00"), dg=Decimal("20.00"), created_at=created))
    rows = [
        Meter(meter_no=FIRST_METER + n, site_id="BENCH", unit_no=f"U{n}", created_at=created).model_dump()
        for n in range(meters)
    ]
    for at in range(0, len(rows), 20_000):
        async with db.transaction() as session:
            await session.execute(insert(Meter), rows[at : at + 20_000])


def load_sqlite(path: str, meters: int) -> None:
    """Readings through sqlite3's executemany, values in the column types' own representation."""
    from sqlalchemy.dialects import sqlite

    dialect = sqlite.dialect()
    columns = Reading.__table__.c  # type: ignore[attr-defined]
    time_, energy, money = (
        columns[name].type.dialect_impl(dialect).bind_processor(dialect) for name in ("interval_start", "kwh", "charge")
    )
    total, batch = meters * 48, []
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    done = 0
    for meter_no, start, kwh, source, charge, received in readings(meters):
        batch.append((meter_no, time_(start), energy(kwh), source, money(charge), time_(received)))
        if len(batch) == 96_000:
            with connection:
                connection.executemany(
                    "INSERT INTO reading (meter_no, interval_start, kwh, source, charge, received_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    batch,
                )
            done += len(batch)
            batch.clear()
            progress("loading", done, total)
    with connection:
        connection.executemany(
            "INSERT INTO reading (meter_no, interval_start, kwh, source, charge, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            batch,
        )
    progress("loading", total, total)
    connection.close()


async def load_postgres(url: str, meters: int) -> None:
    """Readings through COPY."""
    connection = await asyncpg.connect(url)
    total, done, batch = meters * 48, 0, []
    columns = ["meter_no", "interval_start", "kwh", "source", "charge", "received_at"]
    try:
        for row in readings(meters):
            batch.append(row)
            if len(batch) == 240_000:
                await connection.copy_records_to_table("reading", records=batch, columns=columns)
                done += len(batch)
                batch.clear()
                progress("loading", done, total)
        await connection.copy_records_to_table("reading", records=batch, columns=columns)
        progress("loading", total, total)
        await connection.execute("ANALYZE")  # what autovacuum does soon after a bulk load
    finally:
        await connection.close()


async def timed(label: str, work: Any) -> Any:
    started = time.perf_counter()
    result = await work
    print(f"  {label}: {time.perf_counter() - started:.2f} s")
    return result


async def bytes_on_disk(db: Database) -> int:
    """The readings' table and indexes (every partition) on PostgreSQL; the whole file on SQLite."""
    async with db.engine.connect() as conn:
        if db.is_sqlite:
            size = "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size"
            return int(await conn.scalar(text(size)))
        # pg_partition_tree lists a partitioned table's partitions; a plain table is just itself.
        tree = "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('reading')"
        whole = f"SELECT coalesce(({tree}), pg_total_relation_size('reading'))"
        return int(await conn.scalar(text(whole)))


async def bench(name: str, url: str, meters: int, load: Any, revision: str = "head") -> None:
    print(f"{name}:")
    db = Database(url)
    try:
        await upgrade(db, revision)
        made = await partitions.ensure_partitions(
            db, now=dt.datetime.combine(DAY, dt.time(), dt.UTC), behind=12, ahead=3
        )
        if made:
            every = await partitions.list_partitions(db)
            print(f"  {len(every)} partitions ({made[0]} to {made[-1]} made for the bench, the default one last)")
        started = time.perf_counter()
        await setup_site(db, meters)
        await load()
        print(f"  load {meters:,} meters + {meters * 48:,} readings: {time.perf_counter() - started:.1f} s")
        now = calendar.day_bounds(TIMEZONE, DAY)[1] + dt.timedelta(minutes=20)
        written = await timed("rollup of the day (one upsert)", days.roll_up_day(db, site_id="BENCH", day=DAY, now=now))
        assert written == meters, written
        again = await timed("rollup again (idempotent)", days.roll_up_day(db, site_id="BENCH", day=DAY, now=now))
        assert again == meters
        report = await timed("first scheduler tick (looks at all arrivals so far)", days.roll_up_due(db, now=now))
        later = now + dt.timedelta(minutes=5)
        idle = await timed("next scheduler tick (nothing new)", days.roll_up_due(db, now=later))
        assert [r.day for r in idle.days] == [], idle
        gaps = await timed("gaps call", days.day_gaps(db, site_id="BENCH", day=DAY, now=later))
        assert report.days == [] and gaps.meters == [], (report, gaps)
        per_reading = await bytes_on_disk(db) / (meters * 48)
        print(f"  on disk: {per_reading:.0f} bytes per reading (table + indexes; SQLite: whole file)")
    finally:
        await db.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=100_000)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-unpartitioned", action="store_true", help="PostgreSQL: skip the unpartitioned run")
    args = parser.parse_args()
    print(machine())
    if not args.no_sqlite:
        with data_dir() as tmp:
            path = f"{tmp}/bench.db"
            await bench(
                "SQLite",
                f"sqlite+aiosqlite:///{path}",
                args.meters,
                lambda: asyncio.to_thread(load_sqlite, path, args.meters),
            )
    from alembic.script import ScriptDirectory

    from storage.db.migrate import alembic_config

    before = ScriptDirectory.from_config(alembic_config()).get_revision("0007_partitions").down_revision
    runs = [("partitioned by month", "head"), ("one table, before 0007_partitions", str(before))]
    for shape, revision in [] if args.no_postgres else runs[: 1 if args.no_unpartitioned else 2]:
        async with throwaway_postgres() as url:
            plain = url.replace("postgresql+asyncpg://", "postgresql://", 1)
            connection = await asyncpg.connect(plain)
            try:
                version = (await connection.fetchval("SHOW server_version")).split()[0]
            finally:
                await connection.close()
            name = f"PostgreSQL {version}, {shape}"
            await bench(name, url, args.meters, lambda plain=plain: load_postgres(plain, args.meters), revision)


if __name__ == "__main__":
    asyncio.run(main())
