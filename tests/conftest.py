"""Shared fixtures: every storage-touching test runs on SQLite and on a real PostgreSQL.

PostgreSQL cases need `PG_TEST_ADMIN_URL` (e.g. postgresql://postgres@127.0.0.1:5432/postgres):
the session creates a throwaway database there, migrates it once, empties it before each
test, and drops it at the end. Without the variable they skip with the reason printed; on CI
(`CI=true`) a missing or unreachable server fails the run instead.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from storage.db.engine import Database
from storage.db.migrate import upgrade
from tests.contract.options import add_contract_options

pytest_plugins = ["tests.command_setup"]

PG_ADMIN_URL = os.environ.get("PG_TEST_ADMIN_URL", "")
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_addoption(parser: pytest.Parser) -> None:
    """The contract suite's options (`--base-url`, ...): see tests/contract/options.py."""
    add_contract_options(parser)


async def _migrate(url: str) -> None:
    db = Database(url)
    try:
        await upgrade(db)
    finally:
        await db.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating each time is slow)."""
    path = tmp_path_factory.mktemp("template") / "gateway.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway, migrated PostgreSQL database for this test session."""
    if not PG_ADMIN_URL:
        if ON_CI:
            pytest.fail("CI=true but PG_TEST_ADMIN_URL is not set: PostgreSQL tests must run on CI")
        pytest.skip("PostgreSQL cases skipped: set PG_TEST_ADMIN_URL to run them")
    name = f"gateway_test_{os.getpid()}_{secrets.token_hex(3)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {exc}")
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    url = f"{base}/{name}"
    asyncio.run(_migrate(url))
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


FEW_ROWS = 1000  # a table with more is truncated; with fewer, its rows are deleted


async def _truncate_all(url: str) -> None:
    """Empty every table and restart every sequence, as `TRUNCATE ... RESTART IDENTITY CASCADE`
    of all tables did, faster: a TRUNCATE costs ~15 ms a table even when empty (and CASCADE
    pulls in every table referring to it), which made each PostgreSQL test start half a second
    late. So only tables holding rows are emptied: by DELETE when they hold few (foreign keys
    and triggers off for this transaction, so the order does not matter: the user of
    PG_TEST_ADMIN_URL must be a superuser, as `postgres` is), else by TRUNCATE."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        tables = [
            row["tablename"]
            for row in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
        ]
        if tables:
            probes = " UNION ALL ".join(
                f'SELECT {i}, (SELECT count(*) FROM (SELECT 1 FROM "{name}" LIMIT {FEW_ROWS + 1}) AS rows)'
                for i, name in enumerate(tables)
            )
            rows = {tables[i]: count for i, count in await conn.fetch(probes) if count}
            async with conn.transaction():
                await conn.execute("SET LOCAL session_replication_role = replica")
                for name in (name for name, count in rows.items() if count <= FEW_ROWS):
                    await conn.execute(f'DELETE FROM "{name}"')
                many = [f'"{name}"' for name, count in rows.items() if count > FEW_ROWS]
                if many:
                    await conn.execute(f"TRUNCATE {', '.join(many)} CASCADE")
        # Every sequence a test advanced (rows since deleted and rolled-back inserts included),
        # back to its start: the next id is the first again, as after RESTART IDENTITY.
        await conn.execute(
            "SELECT setval(format('%I.%I', schemaname, sequencename)::regclass, start_value, false)"
            " FROM pg_sequences WHERE schemaname = 'public' AND last_value IS NOT NULL"
        )
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated database: a SQLite file, or the session's PostgreSQL database emptied."""
    if request.param == "sqlite":
        path = tmp_path / "gateway.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url = request.getfixturevalue("postgres_url")
    asyncio.run(_truncate_all(url))
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """An empty, migrated SQLite database, for tests that only concern the embedded default."""
    path = tmp_path / "gateway.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """The store opened on the test database."""
    database = Database(database_url)
    yield database
    await database.dispose()


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Gateway settings on the test database, without background jobs (tests that need them say so)."""
    return Settings(database_url=database_url, scheduler=False)


@pytest.fixture
async def client(aiohttp_client, settings: Settings) -> TestClient:  # type: ignore[no-untyped-def]
    """The real gateway app over a real socket."""
    return await aiohttp_client(create_app(settings))
