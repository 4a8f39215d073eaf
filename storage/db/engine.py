"""The one way to open the database: `Database(url)` for SQLite (aiosqlite) or PostgreSQL (asyncpg).

SQLite runs in WAL mode with `synchronous=FULL`, so a commit is on disk when it returns (a 2xx
on ingest means committed). Write transactions on SQLite start with `BEGIN IMMEDIATE`: a
deferred transaction that reads and then writes fails at once with SQLITE_BUSY when another
connection committed in between, instead of waiting its turn.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA foreign_keys=ON",
    "PRAGMA cache_size=-65536",
    "PRAGMA temp_store=MEMORY",
)
SQLITE_MINIMUM = (3, 38)  # ingest's MATERIALIZED CTEs (3.35); the tests' reference model's ->> (3.38)


def missing_driver(url: str) -> str | None:
    """Why this database URL cannot be opened with what is installed, or None when it can.

    The plain install carries SQLite only; PostgreSQL's driver comes with the `postgres` extra.
    """
    if make_url(url).get_backend_name() == "postgresql" and importlib.util.find_spec("asyncpg") is None:
        return (
            "PostgreSQL needs the asyncpg driver, which the plain install leaves out: "
            "install the `postgres` extra (pip install 'meter-gateway[postgres]')"
        )
    return None


def create_private_file(path: str | Path, *, parents: bool = True) -> None:
    """Create `path` readable by the owner only (0600), and its missing directories (0700)
    unless `parents` is false (then a missing directory raises FileNotFoundError).

    The database, its WAL (SQLite gives it the database file's mode), backups and exports hold
    webhook secrets, FINs and balances. An existing file or directory keeps the mode it has.
    """
    path = Path(path)
    missing = [parent for parent in (path.parent, *path.parent.parents) if not parent.exists()] if parents else []
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


class Database:
    """An async engine with a reading and a writing sessionmaker."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        parsed = make_url(url)
        if (why := missing_driver(url)) is not None:
            raise RuntimeError(why)
        self.url = url
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {}
        self.sqlite_path: str | None = None
        if self.is_sqlite:
            if sqlite3.sqlite_version_info < SQLITE_MINIMUM:
                raise RuntimeError(f"SQLite {sqlite3.sqlite_version} is too old: the gateway needs 3.38 or newer")
            self.sqlite_path = parsed.database
            if self.sqlite_path and self.sqlite_path != ":memory:":
                create_private_file(self.sqlite_path)
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        write_engine = self.engine.execution_options(sqlite_begin="BEGIN IMMEDIATE")
        self.reader = async_sessionmaker(self.engine, expire_on_commit=False)
        self.writer = async_sessionmaker(write_engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        """True on the embedded default."""
        return self.dialect == "sqlite"

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A write session in one transaction: committed on success, rolled back on error."""
        async with self.writer() as session, session.begin():
            yield session

    def driver_dsn(self) -> str:
        """The URL for the driver itself (asyncpg's `postgresql://...`), password included."""
        return make_url(self.url).set(drivername=self.dialect).render_as_string(hide_password=False)

    def connect_sqlite(self) -> sqlite3.Connection:
        """A plain `sqlite3` connection to the same file with the same pragmas (ingest's writer)."""
        if not self.sqlite_path:
            raise RuntimeError("not a SQLite database")
        conn = sqlite3.connect(self.sqlite_path, isolation_level=None, check_same_thread=False)
        for pragma in SQLITE_PRAGMAS:
            conn.execute(pragma)
        return conn

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (pysqlite's implicit transactions get in the way).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))


def upsert(session: AsyncSession, table: Any) -> Any:
    """`INSERT ... ON CONFLICT` for the session's dialect (both spell it the same way)."""
    if session.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)
