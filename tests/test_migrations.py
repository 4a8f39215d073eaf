"""The migrations create exactly what the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection
from sqlmodel import SQLModel

# Every table on the metadata (both modules), whatever else the tests imported.
import storage.db.event_models
import storage.db.models  # noqa: F401
from storage.db.engine import Database
from storage.db.migrate import current_revision, head_revision, upgrade
from storage.ops.partitions import include_name


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
