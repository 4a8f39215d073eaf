"""Group commit: many ingest requests, one transaction, and no reply before the commit.

Each request hands its readings to `ReadingWriter.submit` and waits on a future. One writer
task drains the queue: it takes every waiting request (up to `max_batch` readings), records them
all with `record_readings` in one transaction, commits, and only then resolves each request's
future with its own results. Under load the batches grow by themselves (everything that arrived
during the previous commit goes into the next one), so throughput does not collapse to one
fsync per request; when idle a lone packet is committed at once, with no added delay.

Each group's transaction runs in the writer's own thread on the writer's own connection: a
`sqlite3` connection on SQLite (the whole plan in one call), an asyncpg connection driven by the
thread's own event loop on PostgreSQL. Either way the gateway's event loop hands over a group
and gets the results back once, instead of waiting on it for every statement of the plan (under
load each of those waits lasts a whole turn of a loop busy with HTTP: see storage/batch_sql.py).

On SQLite the writer's connection does not checkpoint the WAL itself: a `WalCheckpointer`
thread on its own connection does, after commits, so copying pages into the database file never
stretches a group's commit (with 1,000-reading groups the automatic checkpoint made COMMIT
several times slower than writing the group).

The queue is bounded in readings. A request that would overflow it is refused at once with
`Overloaded` (503 + Retry-After): a packet is never accepted and then dropped. If a commit
fails, every request of that batch gets the error (nothing of it was acknowledged).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
import threading
from collections import deque
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from prometheus_client import Gauge, Histogram

from storage.batch_sql import PlanOf, PostgresBatchSql, SqliteBatchSql, batch_sql
from storage.clock import Clock
from storage.engine import Database
from storage.errors import Overloaded
from storage.ingest import NewReading, ReadingResult, plan_readings

if TYPE_CHECKING:  # PostgreSQL only (the `postgres` extra): imported where it is used
    import asyncpg

log = logging.getLogger("gateway.writer")

QUEUE_DEPTH = Gauge(
    "gateway_writer_queue_readings", "Readings waiting for the group-commit writer", multiprocess_mode="livesum"
)
COMMIT_READINGS = Histogram(
    "gateway_writer_commit_readings",
    "Readings per group commit",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000),
)
COMMIT_REQUESTS = Histogram(
    "gateway_writer_commit_requests",
    "Requests per group commit",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
SWITCH_INTERVAL = 0.0005  # seconds; see ReadingWriter.start
COMMIT_SECONDS = Histogram("gateway_writer_commit_seconds", "Time to record and commit one group")


class _Request:
    """One request's readings and the future its handler awaits."""

    __slots__ = ("future", "readings")

    def __init__(self, readings: list[NewReading], future: asyncio.Future[list[ReadingResult]]) -> None:
        self.readings = readings
        self.future = future


class WalCheckpointer:
    """Checkpoints a SQLite WAL from its own thread and connection when nudged, at most every
    `pause` seconds. PASSIVE: it never blocks the writer or readers, and what it cannot copy
    yet waits for the next round."""

    def __init__(self, db: Database, pause: float = 0.2) -> None:
        self._db = db
        self._pause = pause
        self._nudged = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpointer", daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        """Something was committed: checkpoint soon."""
        self._nudged.set()

    def _run(self) -> None:
        conn = self._db.connect_sqlite()
        try:
            while True:
                self._nudged.wait()
                if self._stopping.is_set():
                    return
                self._nudged.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    log.exception("WAL checkpoint failed; the next commit retries")
                self._stopping.wait(self._pause)
        finally:
            conn.close()

    def close(self) -> None:
        """Stop the thread (closing the last connection checkpoints what is left)."""
        self._stopping.set()
        self._nudged.set()
        self._thread.join()


class SqliteExecutor:
    """Runs plans on a dedicated `sqlite3` connection in one worker thread."""

    def __init__(self, db: Database) -> None:
        # The writer thread needs the GIL back as soon as SQLite returns; by default a waiting
        # thread may wait 5 ms for the event loop to let go, which stretched every commit.
        sys.setswitchinterval(SWITCH_INTERVAL)
        self._sql = batch_sql(db.engine.dialect)
        assert isinstance(self._sql, SqliteBatchSql)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._conn: sqlite3.Connection = self._thread.submit(db.connect_sqlite).result()
        self._conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's job
        self._sql.prepare(self._conn)
        self._checkpointer = WalCheckpointer(db)

    def _run(self, plan: PlanOf[list[ReadingResult]]) -> list[ReadingResult]:
        try:
            return self._sql.run(self._conn, plan)  # type: ignore[union-attr]
        finally:
            self._checkpointer.nudge()

    async def run(self, plan: PlanOf[list[ReadingResult]]) -> list[ReadingResult]:
        """The plan's results, committed."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._run, plan)

    async def close(self) -> None:
        """Close the connection and the threads."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self._conn.close)
        self._thread.shutdown()
        await asyncio.to_thread(self._checkpointer.close)


class PostgresExecutor:
    """Runs plans on a dedicated asyncpg connection, driven by its own event loop in its own thread."""

    def __init__(self, db: Database) -> None:
        self._sql = batch_sql(db.engine.dialect)
        assert isinstance(self._sql, PostgresBatchSql)
        self._dsn = db.driver_dsn()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="postgres-writer", daemon=True)
        self._thread.start()
        self._conn: asyncpg.Connection | None = None

    def _in_thread(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def _run_here(self, plan: PlanOf[list[ReadingResult]]) -> list[ReadingResult]:
        if self._conn is None or self._conn.is_closed():  # first use, or the server went away
            import asyncpg

            self._conn = await asyncpg.connect(self._dsn)
        return await self._sql.run(self._conn, plan)  # type: ignore[union-attr]

    async def run(self, plan: PlanOf[list[ReadingResult]]) -> list[ReadingResult]:
        """The plan's results, committed."""
        return await self._in_thread(self._run_here(plan))

    async def close(self) -> None:
        """Close the connection, stop the loop and the thread."""
        if self._conn is not None:
            await self._in_thread(self._conn.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join)
        self._loop.close()


class ReadingWriter:
    """The one writer of readings in this process."""

    def __init__(self, db: Database, clock: Clock, *, max_queue: int = 50_000, max_batch: int = 5_000) -> None:
        self._db = db
        self._clock = clock
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._queue: deque[_Request] = deque()
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._sql = batch_sql(db.engine.dialect)
        self._executor: SqliteExecutor | PostgresExecutor | None = None

    def start(self) -> None:
        """Start the writer task on the running loop, with its own connection and thread."""
        self._executor = SqliteExecutor(self._db) if self._db.is_sqlite else PostgresExecutor(self._db)
        self._task = asyncio.create_task(self._run(), name="reading-writer")

    @property
    def running(self) -> bool:
        """True from `start` until `close` (or until the writer task died): readiness asks."""
        return self._task is not None and not self._task.done() and not self._closing

    async def close(self) -> None:
        """Commit everything already accepted into the queue, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        if self._executor is not None:
            await self._executor.close()

    async def submit(self, readings: list[NewReading]) -> list[ReadingResult]:
        """Record these readings; returns once they are committed (or raises, nothing acknowledged)."""
        if self._closing:
            raise Overloaded("Gateway is shutting down; retry shortly", retry_after=2)
        if self._queued + len(readings) > self._max_queue and self._queued > 0:
            raise Overloaded(f"Ingest queue is full ({self._queued} readings waiting); retry shortly")
        request = _Request(readings, asyncio.get_running_loop().create_future())
        self._queue.append(request)
        self._queued += len(readings)
        QUEUE_DEPTH.set(self._queued)
        self._wakeup.set()
        # A client that goes away cancels only its own wait: its readings stay in the group.
        return await request.future

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                await self._wakeup.wait()
                self._wakeup.clear()
                continue
            group = [self._queue.popleft()]
            size = len(group[0].readings)
            while self._queue and size + len(self._queue[0].readings) <= self._max_batch:
                request = self._queue.popleft()
                group.append(request)
                size += len(request.readings)
            await self._commit(group, size)
            self._queued -= size
            QUEUE_DEPTH.set(self._queued)

    async def _commit(self, group: list[_Request], size: int) -> None:
        readings = [r for request in group for r in request.readings]
        with COMMIT_SECONDS.time():
            try:
                results = await self._record(readings)
            except Exception as exc:  # every request of the group learns that nothing was stored
                log.exception("group commit of %d readings failed", size)
                error = Overloaded(f"Storage unavailable ({type(exc).__name__}); nothing was stored, retry")
                for request in group:
                    if not request.future.done():
                        request.future.set_exception(error)
                return
        COMMIT_READINGS.observe(size)
        COMMIT_REQUESTS.observe(len(group))
        offset = 0
        for request in group:
            n = len(request.readings)
            if not request.future.done():
                request.future.set_result(results[offset : offset + n])
            offset += n

    async def _record(self, readings: list[NewReading]) -> list[ReadingResult]:
        assert self._executor is not None, "ReadingWriter.start() was not called"
        return await self._executor.run(plan_readings(self._sql, readings, self._clock.now()))
