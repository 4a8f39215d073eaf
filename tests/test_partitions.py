"""Readings by month on PostgreSQL, retention on both databases, and the job that does both."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import pytest
import sqlalchemy as sa

from scheduler.partitions import PartitionJob
from storage import calendar
from storage.clock import FixedClock
from storage.db.engine import Database
from storage.db.migrate import current_revision, head_revision, upgrade
from storage.db.models import Meter, Reading, Site
from storage.ops import partitions
from tests.conftest import PG_ADMIN_URL
from tests.daydata import add_readings, make_site

UTC = dt.UTC
NOW = dt.datetime(2026, 5, 20, 10, 0, tzinfo=UTC)


def revision_before_partitions() -> str:
    """The migration `0007_partitions` follows (whatever the chain is re-ordered to)."""
    from alembic.script import ScriptDirectory

    from storage.db.migrate import alembic_config

    return str(ScriptDirectory.from_config(alembic_config()).get_revision("0007_partitions").down_revision)


def half_hours(start: dt.datetime, count: int) -> list[dt.datetime]:
    return [start + dt.timedelta(minutes=30 * i) for i in range(count)]


async def reading_starts(db: Database) -> list[dt.datetime]:
    async with db.reader() as session:
        return list(await session.scalars(sa.select(Reading.interval_start).order_by(Reading.interval_start)))


async def rows_in(db: Database, table: str) -> int:
    async with db.engine.connect() as conn:
        return int(await conn.scalar(sa.text(f"SELECT count(*) FROM {table}")))


postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
async def pg(database_url: str) -> AsyncIterator[Database]:
    """The session's PostgreSQL database, emptied, with only the months around NOW partitioned."""
    database = Database(database_url)
    async with database.engine.begin() as conn:
        for name in await partitions.list_partitions_in(conn):
            if name != partitions.DEFAULT_PARTITION:
                await conn.execute(sa.text(f"DROP TABLE {name}"))
    await partitions.ensure_partitions(database, now=NOW)
    yield database
    await database.dispose()


def test_partition_names_follow_postgresqls_documentation() -> None:
    month = calendar.month_start(dt.datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    assert partitions.partition_name(month) == "reading_y2026m12"
    assert calendar.add_months(month, 1) == dt.datetime(2027, 1, 1, tzinfo=UTC)
    assert calendar.add_months(month, -12) == dt.datetime(2025, 12, 1, tzinfo=UTC)
    assert partitions.month_of("reading_y2026m12") == month
    assert partitions.is_partition("reading_default") and not partitions.is_partition("reading_conflict")


@postgresql_only
async def test_months_around_now_are_created_ahead_once(pg: Database) -> None:
    assert await partitions.list_partitions(pg) == [
        "reading_y2026m03",
        "reading_y2026m04",
        "reading_y2026m05",
        "reading_y2026m06",
        "reading_y2026m07",
        "reading_y2026m08",
        "reading_default",
    ]
    assert await partitions.ensure_partitions(pg, now=NOW) == []
    later = await partitions.ensure_partitions(pg, now=NOW + dt.timedelta(days=31))
    assert later == ["reading_y2026m09"]


@postgresql_only
async def test_a_reading_without_its_month_lands_in_the_default_partition_and_moves_out(pg: Database) -> None:
    await make_site(pg, meters=(1,))
    far = dt.datetime(2027, 3, 1, tzinfo=UTC)
    await add_readings(pg, 1, [far, *half_hours(NOW, 2)], received_at=NOW)
    assert await rows_in(pg, "reading_default") == 1

    created = await partitions.ensure_partitions(pg, now=NOW)

    assert created == ["reading_y2027m03"]
    assert await rows_in(pg, "reading_default") == 0
    assert await rows_in(pg, "reading_y2027m03") == 1
    assert len(await reading_starts(pg)) == 3


@postgresql_only
async def test_processes_racing_to_create_partitions_create_each_once(database_url: str, pg: Database) -> None:
    others = [Database(database_url) for _ in range(3)]
    try:
        made = await asyncio.gather(
            *(partitions.ensure_partitions(db, now=NOW + dt.timedelta(days=92)) for db in others)
        )
    finally:
        await asyncio.gather(*(db.dispose() for db in others))
    assert sorted(name for names in made for name in names) == [
        "reading_y2026m09",
        "reading_y2026m10",
        "reading_y2026m11",
    ]


@postgresql_only
async def test_retention_drops_whole_old_partitions_and_leaves_current_data(pg: Database) -> None:
    await make_site(pg, meters=(1, 2))
    old = dt.datetime(2025, 11, 3, tzinfo=UTC)
    await partitions.ensure_partitions(pg, now=old, behind=0, ahead=3)  # Nov 2025 to Feb 2026
    await add_readings(pg, 1, half_hours(old, 4), received_at=old)
    await add_readings(pg, 2, half_hours(dt.datetime(2025, 12, 30, tzinfo=UTC), 4), received_at=old)
    recent = half_hours(NOW - dt.timedelta(days=3), 6)
    await add_readings(pg, 1, recent, received_at=NOW)
    await add_readings(pg, 2, half_hours(dt.datetime(2026, 3, 31, 22, tzinfo=UTC), 2), received_at=NOW)

    # 90 days before NOW is 2026-02-19: November, December and January lie wholly before it;
    # February straddles it and stays (retention drops whole months only).
    report = await partitions.apply_retention(pg, now=NOW, days=90)

    assert report.dropped == ["reading_y2025m11", "reading_y2025m12", "reading_y2026m01"]
    assert "reading_y2026m02" in await partitions.list_partitions(pg)
    assert await reading_starts(pg) == [*half_hours(dt.datetime(2026, 3, 31, 22, tzinfo=UTC), 2), *recent]
    again = await partitions.apply_retention(pg, now=NOW, days=90)
    assert again.dropped == [] and again.deleted == 0


@postgresql_only
async def test_retention_removes_old_rows_from_the_default_partition(pg: Database) -> None:
    await make_site(pg, meters=(1,))
    await add_readings(pg, 1, half_hours(dt.datetime(2024, 1, 1, tzinfo=UTC), 3), received_at=NOW)
    await add_readings(pg, 1, half_hours(NOW, 1), received_at=NOW)
    report = await partitions.apply_retention(pg, now=NOW, days=90)
    assert report.deleted == 3
    assert await reading_starts(pg) == [NOW]


async def test_sqlite_retention_deletes_old_readings_in_batches(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        await make_site(db, meters=(1, 2))
        old = NOW - dt.timedelta(days=100)
        for meter in (1, 2):
            await add_readings(db, meter, half_hours(old, 7), received_at=old + dt.timedelta(hours=4))
        recent = half_hours(NOW - dt.timedelta(days=1), 5)
        await add_readings(db, 1, recent, received_at=NOW)
        # An old interval imported just now stays until its arrival is as old (see the docstring).
        imported = NOW - dt.timedelta(days=95)
        await add_readings(db, 2, [imported], received_at=NOW)

        deleted = await partitions.delete_readings_before(db, cutoff=NOW - dt.timedelta(days=90), batch=3)

        assert deleted == 14
        assert await reading_starts(db) == [imported, *recent]
        assert await partitions.ensure_partitions(db, now=NOW) == []  # nothing to partition on SQLite
    finally:
        await db.dispose()


async def test_the_job_creates_months_and_applies_retention(database_url: str) -> None:
    db = Database(database_url)
    try:
        await make_site(db, meters=(1,))
        await add_readings(db, 1, half_hours(NOW - dt.timedelta(days=200), 2), received_at=NOW - dt.timedelta(days=200))
        await add_readings(db, 1, half_hours(NOW, 2), received_at=NOW)
        job = PartitionJob(db, FixedClock(NOW), retention_days=60)

        report = await job.run()

        assert report is not None
        assert await reading_starts(db) == half_hours(NOW, 2)
        if not db.is_sqlite:
            assert {"reading_y2026m05", "reading_y2026m08"} <= set(await partitions.list_partitions(db))
        assert await PartitionJob(db, FixedClock(NOW), retention_days=None).run() is None
        await job.stop()
    finally:
        await db.dispose()


async def test_migration_partitions_an_existing_reading_table_and_keeps_its_rows() -> None:
    if not PG_ADMIN_URL:
        pytest.skip("PostgreSQL cases skipped: set PG_TEST_ADMIN_URL to run them")
    name = f"gateway_migrate_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    db = Database(f"{base}/{name}")
    try:
        await upgrade(db, revision_before_partitions())
        await make_old_site(db, meters=(1, 2))
        starts = [dt.datetime(2024, 2, 29, 23, 30, tzinfo=UTC), dt.datetime(2024, 3, 1, tzinfo=UTC)]
        await add_old_readings(db, 1, starts)
        await add_old_readings(db, 2, half_hours(NOW, 3))

        await upgrade(db)

        assert await current_revision(db) == head_revision()
        async with db.engine.connect() as conn:
            assert await partitions.is_partitioned(conn)
        names = await partitions.list_partitions(db)
        assert {"reading_y2024m02", "reading_y2024m03", "reading_default"} <= set(names)
        assert await rows_in(db, "reading_y2024m02") == 1 and await rows_in(db, "reading_default") == 0
        assert await reading_starts(db) == [*starts, *half_hours(NOW, 3)]

        await upgrade_to(db, revision_before_partitions(), down=True)
        async with db.engine.connect() as conn:
            assert not await partitions.is_partitioned(conn)
        assert await rows_in(db, "reading") == 5
        await upgrade(db)
        assert await rows_in(db, "reading") == 5
    finally:
        await db.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def make_old_site(db: Database, *, meters: tuple[int, ...]) -> None:
    """A site and meters in a database at an older revision: only the columns it has yet
    (the models' later columns, e.g. meter.legacy_ingest, are not there; earlier ones, e.g. the
    site's tariff columns before 0010, are)."""
    async with db.transaction() as session:
        conn = await session.connection()
        for table, rows in (
            ("site", [Site(id="S1", name="S1", region="North")]),
            ("meter", [Meter(meter_no=n, site_id="S1", unit_no=f"U{n}") for n in meters]),
        ):
            columns = await conn.run_sync(lambda sync, t=table: {c["name"] for c in sa.inspect(sync).get_columns(t)})
            for row in rows:
                values = {k: v for k, v in row.model_dump().items() if k in columns and v is not None}
                if table == "site":  # before 0010 a site had its tariff in its own columns
                    values.update({c: Decimal("8.00") for c in ("tariff_grid", "tariff_dg") if c in columns})
                values = {k: (v.astimezone(UTC) if isinstance(v, dt.datetime) else v) for k, v in values.items()}
                names = ", ".join(values)
                await conn.execute(
                    sa.text(f"INSERT INTO {table} ({names}) VALUES ({', '.join(':' + k for k in values)})"), values
                )


async def add_old_readings(db: Database, meter_no: int, starts: list[dt.datetime]) -> None:
    """Readings in a database at a revision before 0010 (no DG part columns yet), 0.5 kWh each."""
    async with db.transaction() as session:
        for start in starts:
            await session.execute(
                sa.text(
                    "INSERT INTO reading (meter_no, interval_start, kwh, source, charge, received_at) "
                    "VALUES (:meter_no, :start, 0.5, 'grid', 4.00, :received)"
                ),
                {"meter_no": meter_no, "start": start, "received": NOW},
            )


async def upgrade_to(db: Database, revision: str, *, down: bool) -> None:
    """Alembic's downgrade on the store's connection (storage.db.migrate only goes up)."""
    from alembic import command
    from sqlalchemy import Connection

    from storage.db.migrate import alembic_config

    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)
