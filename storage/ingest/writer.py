"""Group commit: many ingest requests, one transaction, and no reply before the commit.

Each request hands its readings to `ReadingWriter.submit` and waits on a future. One writer
task drains the queue: it takes every waiting request (up to `max_batch` readings), records them
all in one transaction, commits, and only then resolves each request's
future with its own results. Under load the batches grow by themselves (everything that arrived
during the previous commit goes into the next one), so throughput does not collapse to one
fsync per request; when idle a lone packet is committed at once, with no timer to wait for.

Before it takes a group, the writer lets the event loop turn a few times (`GATHER_TURNS`, no
timer): requests whose bytes have already arrived then reach the queue and join this group
instead of waiting for the next commit.

Each group is recorded by `storage.ingest.run` on the writer's own connection and thread (the
executor), with the set-based statements of `storage.ingest.sql`; this module only queues.

The queue is bounded in readings. A request that would overflow it is refused at once with
`Overloaded` (503 + Retry-After): a packet is never accepted and then dropped. If a commit
fails, every request of that batch gets the error (nothing of it was acknowledged).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from prometheus_client import Gauge, Histogram

from storage.clock import Clock
from storage.db.engine import Database
from storage.errors import Overloaded
from storage.ingest.readings import NewReading, ReadingResult
from storage.ingest.run import IngestExecutor, executor_for

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
# Turns of the event loop from a request's bytes arriving to its `submit`: one reads the socket,
# one resumes aiohttp's connection task with the message, one runs the handler. Measured on
# single packets (64 connections, server on one core): a group took about half the connections'
# requests without them (30 of 64), all of them with (63), and the CPU per request fell by a
# seventh (100 → 86 µs, in turns), the writer's fixed cost of a transaction being shared by twice
# as many. Idle, a lone packet waits these three turns only, microseconds.
GATHER_TURNS = 3
COMMIT_SECONDS = Histogram("gateway_writer_commit_seconds", "Time to record and commit one group")


class _Request:
    """One request's readings and the future its handler awaits."""

    __slots__ = ("future", "readings")

    def __init__(self, readings: list[NewReading], future: asyncio.Future[list[ReadingResult]]) -> None:
        self.readings = readings
        self.future = future


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
        self._executor: IngestExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Start the writer task on the running loop, with its own connection and thread."""
        self._loop = asyncio.get_running_loop()
        self._executor = executor_for(self._db)
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
        assert self._loop is not None, "ReadingWriter.start() was not called"
        # The loop kept from start(): asyncio.get_running_loop() costs a getpid() system call
        # per request on Python 3.11. The queue gauge is set by the writer, once per group.
        request = _Request(readings, self._loop.create_future())
        self._queue.append(request)
        self._queued += len(readings)
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
            for _ in range(GATHER_TURNS):
                await asyncio.sleep(0)
            group = [self._queue.popleft()]
            size = len(group[0].readings)
            while self._queue and size + len(self._queue[0].readings) <= self._max_batch:
                request = self._queue.popleft()
                group.append(request)
                size += len(request.readings)
            QUEUE_DEPTH.set(self._queued)  # this group and what waits behind it
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
        return await self._executor.record(readings, self._clock.now())
