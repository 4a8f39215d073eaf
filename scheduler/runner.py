"""The one scheduler: an APScheduler 3 AsyncIOScheduler in the gateway's event loop.

Every job is an object with an id, a name, an interval, `run()` and `stop()`; the gateway's
jobs get them from `ScheduledJob` (one run at a time, a stop that waits for the run in progress,
runs kicked in the background). Each is added with
its explicit id and `replace_existing`, coalesced (runs missed while the loop was busy collapse
into one), at most one instance at a time, and a misfire grace of one interval: a run later than
that is skipped, the next one doing the same work, since every job is idempotent and takes
"now" from the injected clock. Every job's first run is at start: the catch-up.

Every run goes through `JobRunner.run`, which gives each job one runner among the gateway
processes sharing a PostgreSQL database (storage/ops/locks.py: an advisory lock per job id, kept by
the process that got it; the others skip), counts the outcome, and logs a failure with its
traceback without letting it reach the scheduler. On SQLite there is no lock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import Counter, Histogram

from storage.db.engine import Database
from storage.ops.locks import JobLeases

log = logging.getLogger("gateway.jobs")

Outcome = Literal["ran", "skipped", "failed"]
RUNS = Counter(
    "gateway_job_runs_total",
    "Scheduled job runs: ran, skipped (another gateway process runs this job), failed",
    ["job", "outcome"],
)
RUN_SECONDS = Histogram(
    "gateway_job_run_seconds",
    "Duration of the job runs this process made (ran or failed)",
    ["job"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600),
)


class Job(Protocol):
    """What the scheduler runs."""

    job_id: str
    name: str
    interval: dt.timedelta

    async def run(self) -> Any:
        """One idempotent pass at the clock's "now"."""

    async def stop(self) -> None:
        """Let a run in progress reach a clean point, then refuse further work."""


R = TypeVar("R")


class ScheduledJob(Generic[R]):
    """The base of the gateway's jobs: one run at a time in this process, a stop flag that
    every run checks, and a `stop` that waits for the run in progress.

    A job says what one pass does (`run_once`, idempotent at the clock's "now", checking
    `stopping` between steps when it has many) and what a run answers once stopped (`idle`).
    """

    job_id: ClassVar[str]
    name: ClassVar[str]

    def __init__(self, interval: dt.timedelta) -> None:
        self.interval = interval
        self._running = asyncio.Lock()
        self._stopping = False
        self._kicks: set[asyncio.Task[R]] = set()

    @property
    def stopping(self) -> bool:
        """True once `stop` was called: no new run starts, a run in progress ends early."""
        return self._stopping

    async def run(self) -> R:
        """One pass (`run_once`) unless another is in progress here (it waits) or the job stopped."""
        async with self._running:
            if self._stopping:
                return self.idle()
            return await self.run_once()

    async def run_once(self) -> R:
        """What one pass does; called under the job's lock."""
        raise NotImplementedError

    def idle(self) -> R:
        """What a run answers after `stop`: nothing done."""
        raise NotImplementedError

    def kick(self) -> None:
        """Run now in the background (something became due); returns at once.

        Safe beside the scheduled runs: they take the same lock, and what they claim in the
        database other processes skip.
        """
        if self._stopping:
            return
        task = asyncio.get_running_loop().create_task(self.run())
        self._kicks.add(task)  # keep a reference until done, or the task may be collected
        task.add_done_callback(self._kick_done)

    def _kick_done(self, task: asyncio.Task[R]) -> None:
        self._kicks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Nothing is lost: what it did not do stays due and the periodic run does it.
            log.error("job %s: a kicked run failed", self.job_id, exc_info=task.exception())

    async def settle(self) -> None:
        """Wait for the runs kicked so far to finish (their failures were logged)."""
        if self._kicks:
            await asyncio.gather(*self._kicks, return_exceptions=True)

    async def stop(self) -> None:
        """Let the run in progress reach a clean point, refuse further work, wait for kicked runs."""
        self._stopping = True
        async with self._running:
            pass
        await self.settle()


class JobRunner:
    """Runs jobs in this process only when it is their runner; counts and logs every run."""

    def __init__(self, db: Database | None) -> None:
        self.leases = JobLeases(db)

    async def run(self, job: Job) -> Outcome:
        """One guarded run: `ran`, `skipped` (another process runs this job) or `failed`."""
        try:
            mine = await self.leases.claim(job.job_id)
        except Exception:  # the database is unreachable: this run cannot know whose it is
            log.exception("job %s: could not claim its lock", job.job_id)
            return self._count(job, "failed")
        if not mine:
            log.debug("job %s: skipped, another gateway process runs it", job.job_id)
            return self._count(job, "skipped")
        started = time.perf_counter()
        try:
            await job.run()
            outcome: Outcome = "ran"
        except Exception:  # any failure ends this run only; the next one starts afresh
            log.exception("job %s failed", job.job_id)
            outcome = "failed"
        RUN_SECONDS.labels(job.job_id).observe(time.perf_counter() - started)
        return self._count(job, outcome)

    async def close(self) -> None:
        """Give up every job this process runs, so another process takes them over."""
        await self.leases.release_all()

    @staticmethod
    def _count(job: Job, outcome: Outcome) -> Outcome:
        RUNS.labels(job.job_id, outcome).inc()
        return outcome


def start_scheduler(jobs: Sequence[Job], runner: JobRunner | None = None) -> AsyncIOScheduler:
    """Start the scheduler in the running loop with these jobs; each runs first at once.

    Runs go through `runner` (without one: unguarded, as on SQLite).
    """
    runner = runner or JobRunner(None)
    scheduler = AsyncIOScheduler(timezone=dt.UTC, job_defaults={"coalesce": True, "max_instances": 1})
    for job in jobs:
        scheduler.add_job(
            runner.run,
            IntervalTrigger(seconds=job.interval.total_seconds()),
            args=[job],
            id=job.job_id,
            name=job.name,
            replace_existing=True,
            misfire_grace_time=max(1, int(job.interval.total_seconds())),
            next_run_time=dt.datetime.now(dt.UTC),
        )
    scheduler.start()
    return scheduler


async def stop_scheduler(scheduler: AsyncIOScheduler, jobs: Sequence[Job]) -> None:
    """Stop scheduling, then wait for runs in progress to reach a clean point."""
    scheduler.pause()
    for job in jobs:
        await job.stop()
    scheduler.shutdown(wait=False)
