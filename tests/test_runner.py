"""One runner: with several gateways on one PostgreSQL database each job runs in one of them only."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY

from gateway.app import create_app
from gateway.app_keys import RUNNER
from gateway.settings import Settings
from scheduler.runner import JobRunner, ScheduledJob, start_scheduler, stop_scheduler
from storage.clock import Clock, FixedClock
from storage.db.engine import Database
from storage.ops.locks import job_key
from tests.conftest import PG_ADMIN_URL

NOW = dt.datetime(2025, 2, 8, 6, 0, tzinfo=dt.UTC)


class Runs(list):
    """The runs recorded, with an event set once there are `enough` of them."""

    def __init__(self, enough: int = 1) -> None:
        super().__init__()
        self.enough = enough
        self.reached = asyncio.Event()

    def append(self, run: tuple) -> None:
        super().append(run)
        if len(self) >= self.enough:
            self.reached.set()


class RecordingJob:
    """A job that records each run as (who ran it, the clock's "now"), optionally failing."""

    def __init__(self, job_id: str, who: str, clock: Clock, runs: list, *, every: float = 300, fail: int = 0) -> None:
        self.job_id = job_id
        self.name = f"record runs of {job_id}"
        self.interval = dt.timedelta(seconds=every)
        self.who, self.clock, self.runs, self.fail = who, clock, runs, fail
        self.release = asyncio.Event()
        self.release.set()

    async def run(self) -> None:
        await self.release.wait()
        if self.fail:
            self.fail -= 1
            raise RuntimeError(f"{self.who} broke")
        self.runs.append((self.who, self.clock.now()))

    async def stop(self) -> None:
        pass


def count(job_id: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("gateway_job_runs_total", {"job": job_id, "outcome": outcome}) or 0.0


async def two_gateways(aiohttp_client, url: str, clock: Clock) -> tuple[TestClient, TestClient]:  # type: ignore[no-untyped-def]
    settings = Settings(database_url=url, scheduler=False)
    first = await aiohttp_client(create_app(settings, clock=clock))
    second = await aiohttp_client(create_app(settings, clock=clock))
    return first, second


async def test_two_gateways_on_postgresql_run_each_scheduled_run_once(aiohttp_client, postgres_url: str) -> None:  # type: ignore[no-untyped-def]
    clock = FixedClock(NOW)
    a, b = await two_gateways(aiohttp_client, postgres_url, clock)
    runs = Runs()
    job_a, job_b = (RecordingJob("one-runner", who, clock, runs) for who in ("a", "b"))
    skipped_before = count("one-runner", "skipped")
    # Runs that fire together: one process gets the job (either may), the other skips.
    for job in (job_a, job_b):
        job.release.clear()
    started = asyncio.gather(a.app[RUNNER].run(job_a), b.app[RUNNER].run(job_b))
    await asyncio.sleep(0.2)
    for job in (job_a, job_b):
        job.release.set()
    outcomes = await started
    assert sorted(outcomes) == ["ran", "skipped"]
    pairs = [(a, job_a), (b, job_b)]
    (runner, job), (other, other_job) = pairs if outcomes[0] == "ran" else pairs[::-1]
    # Runs that fire apart (each process's trigger has its own phase): still the same runner.
    for _ in range(3):
        clock.advance(minutes=5)
        assert await runner.app[RUNNER].run(job) == "ran"
        clock.advance(seconds=40)
        assert await other.app[RUNNER].run(other_job) == "skipped"
    who = job.who
    assert runs == [(who, NOW)] + [(who, NOW + dt.timedelta(minutes=5 * k, seconds=40 * (k - 1))) for k in (1, 2, 3)]
    assert count("one-runner", "skipped") - skipped_before == 4
    assert runner.app[RUNNER].leases.held == {"one-runner"} and other.app[RUNNER].leases.held == set()
    # The runner stops: the next run of the job happens in the other process.
    await runner.close()
    clock.advance(minutes=5)
    assert await other.app[RUNNER].run(other_job) == "ran"
    assert runs[-1] == (other_job.who, clock.now())


async def test_the_job_moves_when_its_runners_session_dies(aiohttp_client, postgres_url: str) -> None:  # type: ignore[no-untyped-def]
    clock = FixedClock(NOW)
    a, b = await two_gateways(aiohttp_client, postgres_url, clock)
    runs = Runs()
    job_a, job_b = (RecordingJob("session-dies", who, clock, runs) for who in ("a", "b"))
    assert await a.app[RUNNER].run(job_a) == "ran"
    key = job_key("session-dies")
    database = postgres_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        # Operators see who holds a job: the bigint key is split in two 32-bit halves in pg_locks.
        holders = await admin.fetch(
            "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory'"
            " AND l.granted AND d.datname = $1 AND l.classid = $2 AND l.objid = $3 AND l.objsubid = 1",
            database,
            (key >> 32) & 0xFFFFFFFF,
            key & 0xFFFFFFFF,
        )
        assert len(holders) == 1
        await admin.execute("SELECT pg_terminate_backend($1)", holders[0]["pid"])
    finally:
        await admin.close()
    assert await b.app[RUNNER].run(job_b) == "ran"  # the lock died with the session
    assert await a.app[RUNNER].run(job_a) == "skipped"  # a reconnects and finds b running the job
    assert [who for who, _ in runs] == ["a", "b"]


async def test_on_sqlite_no_lock_is_taken(aiohttp_client, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    clock = FixedClock(NOW)
    a, b = await two_gateways(aiohttp_client, sqlite_url, clock)
    runs = Runs()
    for who, client in (("a", a), ("b", b)):
        runner = client.app[RUNNER]
        assert await runner.run(RecordingJob("sqlite-job", who, clock, runs)) == "ran"
        assert not runner.leases.enabled and runner.leases.held == set()
    assert [who for who, _ in runs] == ["a", "b"]


async def test_a_failed_run_is_logged_counted_and_the_next_one_runs(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    runner = JobRunner(db)
    runs = Runs()
    job = RecordingJob(f"flaky-{db.dialect}", "a", FixedClock(NOW), runs, fail=1)
    before = {outcome: count(job.job_id, outcome) for outcome in ("ran", "failed")}
    try:
        with caplog.at_level(logging.ERROR, logger="gateway.jobs"):
            assert await runner.run(job) == "failed"
        assert await runner.run(job) == "ran"
    finally:
        await runner.close()
    failure = next(r for r in caplog.records if r.name == "gateway.jobs")
    assert failure.getMessage() == f"job {job.job_id} failed" and "RuntimeError: a broke" in caplog.text
    assert failure.exc_info is not None  # the traceback is logged
    assert {o: count(job.job_id, o) - before[o] for o in before} == {"ran": 1, "failed": 1}
    assert REGISTRY.get_sample_value("gateway_job_run_seconds_count", {"job": job.job_id}) == 2
    assert len(runs) == 1


async def test_a_failing_job_does_not_stop_the_scheduler(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    runner = JobRunner(db)
    runs = Runs()
    job = RecordingJob("keeps-failing", "a", Clock(), runs, every=0.05, fail=3)
    scheduler = start_scheduler([job], runner)
    try:
        await asyncio.wait_for(runs.reached.wait(), 10)
    finally:
        await stop_scheduler(scheduler, [job])
        await runner.close()
        await db.dispose()
    # Three runs failed, and the scheduler went on to the fourth, which ran.
    assert count("keeps-failing", "failed") == 3 and count("keeps-failing", "ran") >= 1


async def test_schedulers_of_two_processes_run_a_job_in_one_of_them(postgres_url: str) -> None:
    databases = [Database(postgres_url), Database(postgres_url)]
    runners = [JobRunner(db) for db in databases]
    runs = Runs(enough=8)
    jobs = [RecordingJob("scheduled-once", who, Clock(), runs, every=0.05) for who in ("a", "b")]
    schedulers = [start_scheduler([job], runner) for job, runner in zip(jobs, runners, strict=True)]
    try:
        await asyncio.wait_for(runs.reached.wait(), 10)
    finally:
        for scheduler, job in zip(schedulers, jobs, strict=True):
            await stop_scheduler(scheduler, [job])
        for runner in runners:
            await runner.close()
        for db in databases:
            await db.dispose()
    assert len({who for who, _ in runs}) == 1  # every run in the same one process
    assert count("scheduled-once", "skipped") >= 1


def test_job_keys_are_fixed_signed_bigints() -> None:
    assert job_key("rollup") == job_key("rollup") != job_key("backup")
    assert -(2**63) <= job_key("rollup") < 2**63
    assert job_key("rollup") == 7522615989676385668  # the same in every process and release


class GatedJob(ScheduledJob[int]):
    """A job whose pass waits for `release`; counts its passes."""

    job_id = "gated"
    name = "wait for the test"

    def __init__(self) -> None:
        super().__init__(dt.timedelta(seconds=60))
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.passes = 0
        self.fail = False

    async def run_once(self) -> int:
        self.started.set()
        await self.release.wait()
        if self.fail:
            raise RuntimeError("the pass broke")
        self.passes += 1
        return self.passes

    def idle(self) -> int:
        return -1


async def test_a_scheduled_job_runs_one_pass_at_a_time_and_stop_waits_for_it() -> None:
    job = GatedJob()
    first = asyncio.create_task(job.run())
    await job.started.wait()
    second = asyncio.create_task(job.run())  # waits for the first: one pass at a time
    stopping = asyncio.create_task(job.stop())
    await asyncio.sleep(0)  # let stop() set its flag and queue behind the pass in progress
    assert job.stopping and not stopping.done()
    job.release.set()
    assert await first == 1
    await stopping
    assert await second == -1  # it got the lock after stop: nothing done
    assert await job.run() == -1 and job.passes == 1


async def test_a_kicked_run_that_fails_is_logged_and_stop_waits_for_kicks(caplog: pytest.LogCaptureFixture) -> None:
    job = GatedJob()
    job.fail = True
    job.kick()
    await job.started.wait()
    job.release.set()
    with caplog.at_level(logging.ERROR, logger="gateway.jobs"):
        await job.stop()
    assert "job gated: a kicked run failed" in caplog.text
    job.kick()  # after stop: nothing starts
    assert job.passes == 0 and not job._kicks
