"""Apply the Alembic migrations programmatically (connection sharing, as Alembic documents it)."""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

from storage.db.engine import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    """The Alembic configuration pointing at `storage/db/migrations`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


async def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the database to `revision` (the newest by default)."""

    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)


async def current_revision(db: Database) -> str | None:
    """The revision the database is at, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with db.engine.connect() as conn:
        return await conn.run_sync(read)


@functools.cache  # the scripts do not change while the process runs; reading them takes ~10 ms
def head_revision() -> str | None:
    """The newest revision the code knows."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def known_revisions() -> set[str]:
    """Every revision the code knows: the head and all before it."""
    from alembic.script import ScriptDirectory

    return {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
