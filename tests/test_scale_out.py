"""Several gateway processes on one PostgreSQL database: real `gateway serve` subprocesses.

Packets sent to two processes are stored once; a key revoked through one is refused by the other
(at once: LISTEN/NOTIFY; at worst within the caches' lifetime); each job runs in one of them;
`--workers N` serves under gunicorn; SQLite refuses more than one process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from gateway.auth import CACHE_SECONDS
from storage import calendar
from storage.db.engine import Database
from storage.db.models import Meter, Reading
from storage.ops import partitions
from storage.ops.notify import credential_changes
from storage.registry import keys, meters, sites

postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
METERS = (700_000_001, 700_000_002)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def gateway_serve(database_url: str, tmp_path: Path, *extra: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`gateway serve` as a child process; its base URL once /healthz answers."""
    port = free_port()
    log = (tmp_path / f"serve-{port}.log").open("wb")
    env = {**os.environ, "GATEWAY_DATABASE_URL": database_url, "GATEWAY_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port), *extra]
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gateway serve did not start:\n{_text(tmp_path, port)}") from None
                time.sleep(0.1)
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def _text(tmp_path: Path, port: int) -> str:
    return (tmp_path / f"serve-{port}.log").read_text(errors="replace")


def children(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


async def healthy(session: aiohttp.ClientSession, base: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            async with session.get(f"{base}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{base} never became healthy")
        await asyncio.sleep(0.1)


async def job_runs(session: aiohttp.ClientSession, base: str) -> dict[tuple[str, str], float]:
    """(job, outcome) → runs counted by this process, from its /metrics."""
    async with session.get(f"{base}/metrics") as response:
        text = await response.text()
    return {
        (sample.labels["job"], sample.labels["outcome"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "gateway_job_runs"
        for sample in family.samples
        if sample.name == "gateway_job_runs_total"
    }


@pytest.fixture
async def fleet(database_url: str) -> AsyncIterator[dict[str, str]]:
    """A site with two meters (their device tokens), an admin key and a read key."""
    db = Database(database_url)
    try:
        await sites.add_site(db, site_id="S1", name="Towers", region="North", auto_cut=False)
        secrets = {}
        for meter_no in METERS:
            created = await meters.add_meter(
                db, meter_no=meter_no, site_id="S1", unit_no=f"U{meter_no}", balance=Decimal("1000.00")
            )
            secrets[str(meter_no)] = created.token
        secrets["admin"] = (await keys.create_key(db, name="ops", role="admin", sites=["*"])).key
        secrets["read"] = (await keys.create_key(db, name="portal", role="read", sites=["S1"])).key
        yield secrets
    finally:
        await db.dispose()


def packets(meter_no: int, count: int) -> list[dict[str, object]]:
    """`count` half-hour packets of one meter ending in the last hour, 0.5 kWh each."""
    last = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    last = last.replace(minute=1 if last.minute < 31 else 31)
    return [
        {"id": meter_no, "timestamp": (last - dt.timedelta(minutes=30 * i)).isoformat(), "reading_kWh": 0.5}
        for i in range(count)
    ]


@postgresql_only
async def test_two_processes_store_packets_once_refuse_a_key_revoked_through_either_and_run_jobs_once(
    database_url: str, fleet: dict[str, str], tmp_path: Path
) -> None:
    with gateway_serve(database_url, tmp_path) as (a, _), gateway_serve(database_url, tmp_path) as (b, _):
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(healthy(session, a), healthy(session, b))

            # The same packets to both processes at once, batch by batch and one by one.
            async def post(base: str, meter_no: int, body: object) -> dict[str, object]:
                headers = {"Authorization": f"Bearer {fleet[str(meter_no)]}"}
                async with session.post(f"{base}/meter", json=body, headers=headers) as response:
                    assert response.status == 200, await response.text()
                    return await response.json()

            batch = packets(METERS[0], 40)
            singles = packets(METERS[1], 12)
            replies = await asyncio.gather(
                post(a, METERS[0], batch),
                post(b, METERS[0], batch),
                *(post(base, METERS[1], packet) for packet in singles for base in (a, b)),
            )
            assert replies[0]["data"]["accepted"] + replies[1]["data"]["accepted"] == 40  # type: ignore[index]
            assert replies[0]["data"]["duplicates"] + replies[1]["data"]["duplicates"] == 40  # type: ignore[index]
            assert sum(not r["data"]["duplicate"] for r in replies[2:]) == 12  # type: ignore[index]

            # A read key used on B (now cached there), revoked through A's admin API.
            read = {"X-API-Key": fleet["read"]}
            url = f"{b}/api/v1/meter/reading?meter_no={METERS[0]}"
            async with session.get(url, headers=read) as response:
                assert response.status == 200
            revoke = f"{a}/api/v1/admin/keys/portal/revoke"
            async with session.post(revoke, headers={"X-API-Key": fleet["admin"]}) as response:
                assert response.status == 200, await response.text()
            revoked_at = time.monotonic()
            while True:
                async with session.get(url, headers=read) as response:
                    if response.status == 401:
                        break
                    assert response.status == 200
                assert time.monotonic() - revoked_at < CACHE_SECONDS, "B still accepts the revoked key"
                await asyncio.sleep(0.05)
            refused_after = time.monotonic() - revoked_at
            assert refused_after < 1.0, f"refused after {refused_after:.2f} s: the NOTIFY did not arrive"

            # Every job ran in one process only (advisory lock per job, scheduler/runner.py).
            jobs = ("rollup", "partitions", "dg-callbacks")
            deadline = time.monotonic() + 20
            while True:
                runs = [await job_runs(session, base) for base in (a, b)]
                if all(any(r.get((job, "ran")) for r in runs) for job in jobs) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            for job in jobs:
                assert [bool(r.get((job, "ran"))) for r in runs].count(True) == 1, (job, runs)

    db = Database(database_url)
    try:
        async with db.reader() as s:
            stored = dict(
                (await s.execute(sa.select(Reading.meter_no, sa.func.count()).group_by(Reading.meter_no))).all()
            )
            balances = dict((await s.execute(sa.select(Meter.meter_no, Meter.balance))).all())
        assert stored == {METERS[0]: 40, METERS[1]: 12}
        # Billed once: 0.5 kWh at the default grid tariff 8.00 is 4.00 a packet.
        assert balances == {METERS[0]: Decimal("840.00"), METERS[1]: Decimal("952.00")}
        # Both processes ran the partition job at start, racing: each month exists once.
        names = await partitions.list_partitions(db)
        this_month = partitions.partition_name(calendar.month_start(dt.datetime.now(dt.UTC)))
        assert this_month in names and len(names) == len(set(names))
    finally:
        await db.dispose()


@postgresql_only
async def test_a_credential_change_committed_anywhere_is_heard_at_once(
    database_url: str, fleet: dict[str, str]
) -> None:
    listening, changing = Database(database_url), Database(database_url)
    heard = asyncio.Event()
    try:
        async with credential_changes(listening, heard.set):
            await keys.revoke_key(changing, name="portal")  # as `gateway key revoke` does
            await asyncio.wait_for(heard.wait(), timeout=2)
            heard.clear()
            await meters.set_meter_token(changing, meter_no=METERS[0])
            await asyncio.wait_for(heard.wait(), timeout=2)
            heard.clear()
            async with changing.transaction() as session:  # ingest's kind of update: not a credential
                await session.execute(sa.update(Meter).values(balance=Meter.balance - 1))
            await asyncio.sleep(0.3)
            assert not heard.is_set()
    finally:
        await listening.dispose()
        await changing.dispose()


@postgresql_only
async def test_serve_with_workers_shares_one_port_and_stops_cleanly(
    database_url: str, fleet: dict[str, str], tmp_path: Path
) -> None:
    with gateway_serve(database_url, tmp_path, "--workers", "2") as (base, process):
        async with aiohttp.ClientSession() as session:
            await healthy(session, base)
            assert len(children(process.pid)) == 2  # gunicorn's workers, forked by its arbiter
            headers = {"Authorization": f"Bearer {fleet[str(METERS[0])]}"}
            async with session.post(f"{base}/meter", json=packets(METERS[0], 3), headers=headers) as response:
                assert response.status == 200
                assert (await response.json())["data"]["accepted"] == 3
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert "(2 processes)" in _text(tmp_path, int(base.rsplit(":", 1)[1]))


def test_serve_refuses_several_processes_on_sqlite(tmp_path: Path) -> None:
    env = {**os.environ, "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/gateway.db"}
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--workers", "2", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "--workers 2 needs PostgreSQL: SQLite has one writer by design" in result.stderr
    assert not (tmp_path / "gateway.db").exists()
