"""Locks between gateway processes: who may run a job, and who may replace the SQLite file.

`JobLeases` — several gateways may share one PostgreSQL database, and each job must then run
in one of them only. A per-run lock is not enough for that: processes started at different
times fire their triggers at different moments, so a short run in one process is over long
before the same job fires in the next one, which would then take the free lock and do the
work again. So a process that gets a job's PostgreSQL advisory lock keeps it, on one dedicated
connection, for as long as it lives: it is that job's runner. The others skip their runs and
try again at each trigger; when the runner stops or dies its session ends, PostgreSQL frees
the lock, and the next process whose trigger fires takes the job over. On SQLite there is one
gateway process by design: no lock at all.

`SqliteFileLock` — `flock` on `<database>.lock` beside the SQLite file. Every gateway process
holds it shared while it has the database open; `gateway restore` needs it exclusive. The
kernel drops a lock when its process ends, crashed or not, so a stale lock cannot outlive a
gateway the way a pid file can (and a recycled pid cannot fake a live one).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
from pathlib import Path
from typing import Any

from storage.db.engine import Database

KEY_NAMESPACE = b"meter-gateway:job:"  # keeps our keys apart from other users of the same database


def job_key(job_id: str) -> int:
    """The advisory lock key of a job: a fixed hash of its id, the same in every process and release."""
    digest = hashlib.blake2b(KEY_NAMESPACE + job_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)  # PostgreSQL's key is a signed bigint


class JobLeases:
    """The jobs this process runs, each held by a session-level advisory lock on one connection."""

    def __init__(self, db: Database | None) -> None:
        self._db = db
        self._conn: Any = None  # asyncpg.Connection, opened at the first claim
        self._held: set[str] = set()
        self._guard = asyncio.Lock()  # one asyncpg connection runs one query at a time

    @property
    def enabled(self) -> bool:
        """True on PostgreSQL; on SQLite (or without a database) every claim is granted unlocked."""
        return self._db is not None and not self._db.is_sqlite

    @property
    def held(self) -> frozenset[str]:
        """The job ids this process holds the lock of."""
        return frozenset(self._held)

    async def claim(self, job_id: str) -> bool:
        """True if this process is (or has just become) the job's runner, False if another is.

        A broken connection is replaced once and the claim asked again on the new one (the old
        session's locks are gone with it); a second failure raises.
        """
        if not self.enabled:
            return True
        import asyncpg

        failures = (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
        async with self._guard:
            try:
                return await self._claim(job_id)
            except failures:
                await self._drop()
            return await self._claim(job_id)

    async def _claim(self, job_id: str) -> bool:
        if self._conn is None or self._conn.is_closed():
            self._held.clear()
            import asyncpg

            assert self._db is not None
            self._conn = await asyncpg.connect(self._db.driver_dsn(), timeout=10)
        if job_id in self._held:
            # Session-level locks last as long as the session: a live connection still holds it.
            await self._conn.fetchval("SELECT 1", timeout=10)
            return True
        if await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", job_key(job_id), timeout=10):
            self._held.add(job_id)
            return True
        return False

    async def release_all(self) -> None:
        """Give up every job: closing the session frees its locks for the other processes."""
        async with self._guard:
            await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._held.clear()
        if conn is None or conn.is_closed():
            return
        try:
            await conn.close(timeout=5)
        except Exception:  # closing is best effort; terminate cuts the socket whatever happened
            conn.terminate()


class SqliteFileLock:
    """`flock` on `<database>.lock`: shared by running gateways, exclusive for a restore."""

    def __init__(self, sqlite_path: str | os.PathLike[str]) -> None:
        self.path = Path(f"{os.fspath(sqlite_path)}.lock")
        self._fd: int | None = None

    def try_acquire(self, *, exclusive: bool) -> bool:
        """Take the lock without waiting; False when another process holds it in a conflicting mode."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this object")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        """Let go (closing the descriptor drops the lock)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def database_lock(db: Database) -> SqliteFileLock | None:
    """The file lock of a SQLite database on disk; None on PostgreSQL and in-memory SQLite."""
    if not db.sqlite_path or db.sqlite_path == ":memory:":
        return None
    return SqliteFileLock(db.sqlite_path)
