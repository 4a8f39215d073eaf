"""A local deployment for the contract suite: `gateway serve` wired to a `mock-meter-server`
head-end, both real processes on 127.0.0.1, over a fresh SQLite database seeded here.

Also used by `bench/schemathesis_stateful.py`. Everything is started with the same commands an
operator would use; secrets go to the children by environment, never on the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import requests

from storage.db.engine import Database
from storage.db.migrate import upgrade
from storage.registry import dgs, sites
from storage.registry import keys as key_registry
from storage.registry import meters as meter_registry

HOST = "127.0.0.1"
SITE_ID = "QA1"
DG_NUMBER = "DG1"
FLEET_DG = "DG2"  # the fleet's DG, so its random ON/OFF never races the callback scenario's DG1
FIRST_METER = 710000001
METERS = 6
START_SECONDS = 30.0
VICTIM_KEY = "qa-victim"


@dataclass
class LocalDeployment:
    """What the suite needs to know about the deployment it started."""

    base_url: str
    headend_url: str
    headend_token: str
    keys: dict[str, str]  # role -> key: admin (every site), operate, read, ingest (site QA1)
    meters: list[int]
    data_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)


def free_port() -> int:
    """A port free right now on 127.0.0.1 (the child binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


async def seed(database_url: str) -> tuple[dict[str, str], list[int]]:
    """Site QA1 with its meters, DG1 and the fleet's DG2, and a key per role: (keys, meters)."""
    db = Database(database_url)
    try:
        await upgrade(db)
        await sites.add_site(db, site_id=SITE_ID, name="QA Residency", region="North", auto_cut=False)
        meters = [FIRST_METER + i for i in range(METERS)]
        for i, meter_no in enumerate(meters):
            await meter_registry.add_meter(
                db, meter_no=meter_no, site_id=SITE_ID, unit_no=f"Q-{101 + i}", balance=Decimal("1000.00")
            )
        for dg_no in (DG_NUMBER, FLEET_DG):
            await dgs.add_dg(db, site_id=SITE_ID, dg_no=dg_no, meter_no=f"{dg_no}-EM")
        keys = {
            "admin": (await key_registry.create_key(db, name="qa-admin", role="admin", sites=["*"])).key,
            "operate": (await key_registry.create_key(db, name="qa-operate", role="operate", sites=[SITE_ID])).key,
            "read": (await key_registry.create_key(db, name="qa-read", role="read", sites=[SITE_ID])).key,
            "ingest": (await key_registry.create_key(db, name="qa-ingest", role="ingest", sites=[SITE_ID])).key,
        }
        # For schemathesis to revoke and rotate (it would otherwise find and revoke its own key).
        await key_registry.create_key(db, name=VICTIM_KEY, role="read", sites=[SITE_ID])
        return keys, meters
    finally:
        await db.dispose()


def wait_healthy(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    """Wait for 200 from `url`; RuntimeError (with the child's output) if it exits or is slow."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise RuntimeError(f"{what} exited with {process.returncode} while starting:\n{output}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer {url} within {START_SECONDS:g} s")


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, *args], env={**os.environ, "PYTHONUNBUFFERED": "1", **env}, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s; always waited for."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def local_deployment(data_dir: Path, **gateway_env: str) -> Iterator[LocalDeployment]:
    """Seed a database, start the mock head-end and the gateway; stop both on exit."""
    data_dir.mkdir(parents=True, exist_ok=True)
    database_url = f"sqlite+aiosqlite:///{data_dir / 'gateway.db'}"
    keys, meters = asyncio.run(seed(database_url))
    token = secrets.token_urlsafe(24)
    headend_port, gateway_port = free_port(), free_port()
    headend_url, base_url = f"http://{HOST}:{headend_port}", f"http://{HOST}:{gateway_port}"
    deployment = LocalDeployment(base_url, headend_url, token, keys, meters, data_dir)
    try:
        headend = _spawn(
            ["-m", "mock_meter_server", "--host", HOST, "--port", str(headend_port), "--log-level", "WARNING"],
            {"MOCK_METER_SERVER_TOKEN": token},
            data_dir / "headend.log",
        )
        deployment.processes.append(headend)
        wait_healthy(f"{headend_url}/healthz", headend, "mock-meter-server")
        env = {
            "GATEWAY_DATABASE_URL": database_url,
            "GATEWAY_HEADEND_URL": headend_url,
            "GATEWAY_HEADEND_TOKEN": token,
            "GATEWAY_CALLBACK_ALLOW_PRIVATE": "1",  # the suite's callback receiver is on 127.0.0.1
            "GATEWAY_LOG_LEVEL": "WARNING",
            "GATEWAY_COMMANDS_EVERY_SECONDS": "2",  # queued work is picked up within the tests' patience
            "GATEWAY_RECONCILE_EVERY_SECONDS": "2",
            **gateway_env,
        }
        gateway = _spawn(["-m", "gateway.cli", "serve", "--host", HOST, "--port", str(gateway_port)], env,
                         data_dir / "gateway.log")  # fmt: skip
        deployment.processes.append(gateway)
        wait_healthy(f"{base_url}/healthz", gateway, "gateway")
        yield deployment
    finally:
        for process in reversed(deployment.processes):
            stop(process)


Registers = dict[str, tuple[Decimal, Decimal, str]]  # meter_no -> (grid kWh, DG kWh, date_time)


def registers(call_1_body: dict) -> Registers:
    """Each meter's grid and DG registers and reading time from a call 1 (site readings) reply."""
    return {
        row["meter_no"]: (Decimal(row["grid"]), Decimal(row["dg"]), row["date_time"]) for row in call_1_body["data"]
    }


def site_energy(snapshot: Registers) -> Decimal:
    """The site's total energy: grid and DG registers of every meter. A fleet's energy goes to one or
    the other by its DG plan, which depends on the replayed hours, so only the sum says it grew."""
    return sum((grid + dg for grid, dg, _ in snapshot.values()), Decimal(0))


def check_fleet_snapshots(snapshots: list[Registers], *, quiet: set[str], distinct_totals: int = 4) -> None:
    """What call 1 must show while a fleet posts: no register ever goes back, the site's energy
    grows (at least `distinct_totals` different totals), every meter but the `quiet` ones is heard."""
    for before, after in itertools.pairwise(snapshots):
        for meter, (grid, dg, _when) in before.items():
            assert after[meter][0] >= grid and after[meter][1] >= dg, f"meter {meter}'s registers went back"
    totals = [site_energy(s) for s in snapshots]
    assert len(set(totals)) >= distinct_totals, f"the site's energy did not grow while the fleet posted: {totals}"
    silent = [m for m, v in snapshots[-1].items() if not v[2] and m not in quiet]
    assert not silent, f"meters never heard from while the fleet posted: {silent}"


def fleet_done(snapshots: list[Registers], *, quiet: set[str], distinct_totals: int = 4) -> bool:
    """Whether the snapshots so far already show what `check_fleet_snapshots` asks."""
    return len({site_energy(s) for s in snapshots}) >= distinct_totals and all(
        v[2] for m, v in snapshots[-1].items() if m not in quiet
    )


@contextlib.contextmanager
def fleet(deployment: LocalDeployment, *, hours: float = 3.0, speed: float = 1800) -> Iterator[None]:
    """The mock fleet posting the deployment's meters but the last (which the suite posts itself, and
    sends commands to) and DG2, with the ingest key, from `hours` ago."""
    meter_file = deployment.data_dir / "fleet-meters.txt"
    meter_file.write_text("".join(f"{n}\n" for n in deployment.meters[:-1]))
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
    args = ["-m", "mock_meter_server", "--host", HOST, "--port", "0", "--log-level", "WARNING",
            "--gateway", deployment.base_url, "--meter-file", str(meter_file), "--site-id", SITE_ID,
            "--dgs", FLEET_DG, "--start", start, "--speed", f"{speed:g}", "--progress-seconds", "5",
            "--dup-rate", "0.02", "--late-rate", "0"]  # fmt: skip
    env = {"MOCK_METER_SERVER_TOKEN": deployment.headend_token, "MOCK_FLEET_INGEST_KEY": deployment.keys["ingest"]}
    process = _spawn(args, env, deployment.data_dir / "fleet.log")
    try:
        yield
    finally:
        stop(process)
