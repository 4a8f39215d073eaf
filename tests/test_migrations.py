"""The migrations create exactly what the models describe, on both databases, and convert what
older versions stored (0013: SQLite's text times into integers, exactly, and back)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, select
from sqlmodel import SQLModel

# Every table on the metadata (both modules), whatever else the tests imported.
import storage.db.event_models
import storage.db.models  # noqa: F401
from storage.db.engine import Database
from storage.db.event_models import AuditEvent
from storage.db.migrate import alembic_config, current_revision, head_revision, upgrade
from storage.db.models import Meter, Reading
from storage.ops.partitions import include_name
from storage.registry import sites


async def test_migrated_database_matches_the_models(db: Database) -> None:
    def diff(connection: Connection) -> list:
        # On PostgreSQL `reading` is partitioned: its monthly partitions are data, not models.
        context = MigrationContext.configure(connection, opts={"include_name": include_name})
        return compare_metadata(context, SQLModel.metadata)

    async with db.engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == [], f"models and migrations differ; add a migration: {differences}"
    assert await current_revision(db) == head_revision()


async def test_upgrade_is_idempotent(db: Database) -> None:
    await upgrade(db)
    await upgrade(db)
    assert await current_revision(db) == head_revision()


OLD_TEXT_TIMES = {  # (table, column, key column, key): the text the gateway stored before 0013
    ("reading", "interval_start", "meter_no", 7): "2026-11-20 10:30:00.000000",
    ("reading", "received_at", "meter_no", 7): "2026-11-20 11:02:03.456789",
    ("meter", "created_at", "meter_no", 7): "2026-11-01 09:00:00",  # no fraction: written by hand
    ("audit_event", "at", "id", 1): "2026-11-21 23:59:59.999999",
}


async def test_sqlite_times_stored_as_text_become_exact_integers_and_back(tmp_path: Path) -> None:
    """0013: every text time of an older SQLite database becomes the same instant in integer
    microseconds (fractions and NULLs kept, the audit trail still append-only); the downgrade
    gives the text back."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    try:
        await upgrade(db, "0012_meter_role")
        await sites.add_site(db, site_id="OLD", name="Old", region="R")
        async with db.transaction() as session:
            session.add(Meter(meter_no=7, site_id="OLD", unit_no="A-1"))
        async with db.transaction() as session:
            moment = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
            session.add(Reading(meter_no=7, interval_start=moment, kwh=1, source="grid", charge=8, received_at=moment))
        async with db.engine.begin() as conn:
            await conn.exec_driver_sql(
                "INSERT INTO audit_event (id, at, actor, address, action, site_id, target, details) "
                "VALUES (1, '2026-11-21 23:59:59.999999', 'cli:root', '', 'site.add', 'OLD', 'OLD', '{}')"
            )
            for (table, column, key, value), text in OLD_TEXT_TIMES.items():
                if table != "audit_event":
                    await conn.exec_driver_sql(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", (text, value))

        await upgrade(db)

        async with db.reader() as session:
            reading = (await session.execute(select(Reading))).scalar_one()
            meter = await session.get(Meter, 7)
            event = (await session.execute(select(AuditEvent))).scalar_one()
        assert reading.interval_start == dt.datetime(2026, 11, 20, 10, 30, tzinfo=dt.UTC)
        assert reading.received_at == dt.datetime(2026, 11, 20, 11, 2, 3, 456789, tzinfo=dt.UTC)
        assert meter is not None and meter.created_at == dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC)
        assert meter.retired_at is None and meter.last_reading_at is None
        assert event.at == dt.datetime(2026, 11, 21, 23, 59, 59, 999999, tzinfo=dt.UTC)
        async with db.engine.connect() as conn:
            stored = (await conn.exec_driver_sql("SELECT typeof(interval_start), received_at FROM reading")).one()
        assert stored == ("integer", 1_795_172_523_456_789)
        async with db.engine.begin() as conn:  # the append-only guard came back
            with pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"):
                await conn.exec_driver_sql("UPDATE audit_event SET actor = 'someone else'")

        def downgrade(connection: Connection) -> None:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "0012_meter_role")

        async with db.engine.begin() as conn:
            await conn.run_sync(downgrade)
            for (table, column, key, value), text in OLD_TEXT_TIMES.items():
                back = await conn.scalar(sqlalchemy.text(f"SELECT {column} FROM {table} WHERE {key} = {value}"))
                assert back == (text if "." in text else text + ".000000"), (table, column)
    finally:
        await db.dispose()
