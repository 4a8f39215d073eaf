"""A real `gateway serve` in a child process, the database it serves and the mock head-end it
talks to, for the reliability runs.

Shared by the quick tests (`tests/reliability/`) and the full runs (`bench/`): the same code
starts, kills and restarts the gateway, whichever of them drives it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import insert

from storage.db.engine import Database
from storage.db.migrate import upgrade
from storage.db.models import LedgerEntry, Meter
from storage.registry import keys, sites

SITE = "PROOF"
REPO = Path(__file__).resolve().parents[2]  # the child runs in a work directory: `tests` comes from here
FIRST_METER = 400_000_001
SECRET_KEY = "reliability-runs-portal-cookie-key-0123456789"  # 32+ characters; the portal needs one


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def prepare_site(url: str, *, meters: int, opening_balance: Decimal, tariff: Decimal = Decimal("8.00")) -> str:
    """Migrate, then one site with `meters` meters at `opening_balance` (each with its ledger's
    opening entry, as `gateway meter add` writes it) and an ingest key; returns the key."""
    db = Database(url)
    try:
        await upgrade(db)
        # No auto-cut: a cut would put rows in the command log, which these runs do not look at.
        await sites.add_site(
            db, site_id=SITE, name="Proof", region="Proof", tariff_grid=tariff, tariff_dg=tariff, auto_cut=False
        )
        async with db.transaction() as session:
            rows = [
                {"meter_no": FIRST_METER + i, "site_id": SITE, "unit_no": f"U{i}", "balance": opening_balance}
                for i in range(meters)
            ]
            now = dt.datetime.now(dt.UTC)
            openings = [
                {
                    "meter_no": row["meter_no"],
                    "kind": "opening",
                    "amount": opening_balance,
                    "balance_after": opening_balance,
                    "reason": "balance when registered",
                    "created_at": now,
                }
                for row in rows
            ]
            for start in range(0, len(rows), 5000):
                await session.execute(insert(Meter), rows[start : start + 5000])
                await session.execute(insert(LedgerEntry), openings[start : start + 5000])
        return (await keys.create_key(db, name=f"proof-{os.getpid()}", role="ingest", sites=[SITE])).key
    finally:
        await db.dispose()


async def wait_healthy(url: str, proc: subprocess.Popen[bytes], within: float, log: Path) -> None:
    """Wait until `url` answers 200; RuntimeError if the child exits first or takes too long."""
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        while time.monotonic() - started < within:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args} exited with {proc.returncode}; see {log}")
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as reply:
                    if reply.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not answer 200 within {within}s; see {log}")


async def terminate(proc: subprocess.Popen[bytes] | None) -> int:
    """SIGTERM, SIGKILL after 30 s; waits, returns the exit status (0 if it never ran)."""
    if proc is None:
        return 0
    if proc.poll() is not None:
        return proc.returncode
    proc.terminate()
    try:
        return await asyncio.wait_for(asyncio.to_thread(proc.wait), 30)
    except TimeoutError:
        proc.kill()
        return await asyncio.to_thread(proc.wait)


class GatewayProcess:
    """`python -m gateway.cli serve` on a free port; start, SIGKILL, restart, stop."""

    def __init__(self, database_url: str, workdir: Path, *, env: dict[str, str] | None = None, cpu: str = "") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._workdir = workdir
        self._cpu = cpu
        self._env = {
            **os.environ,
            "GATEWAY_DATABASE_URL": database_url,
            "GATEWAY_LOG_LEVEL": "WARNING",
            "GATEWAY_SECRET_KEY": SECRET_KEY,
            **(env or {}),
        }
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    def _spawn(self, env: dict[str, str], faults: str) -> subprocess.Popen[bytes]:
        if faults:  # the test-only entry point: the same app, wrapped to die at the armed points
            cmd = [sys.executable, "-m", "tests.reliability.faulty_gateway", "--faults", faults]
            env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        else:
            cmd = [sys.executable, "-m", "gateway.cli", "serve"]
        cmd += ["--port", str(self.port)]
        if self._cpu:
            cmd = ["taskset", "-c", self._cpu, *cmd]
        with open(self._workdir / "gateway.log", "ab") as log:  # the child keeps its own copy of the fd
            return subprocess.Popen(cmd, env={**self._env, **env}, cwd=self._workdir, stdout=log, stderr=log)

    async def start(self, within: float = 60.0, *, env: dict[str, str] | None = None, faults: str = "") -> float:
        """Start the gateway (`env`: extra variables for this start only; `faults`: fault points
        to arm, tests/reliability/faults.py) and wait until /healthz answers 200; returns the
        seconds it took."""
        assert self._proc is None or self._proc.poll() is not None, "already running"
        started = time.monotonic()
        self._proc = self._spawn(env or {}, faults)
        self.starts += 1
        await wait_healthy(f"{self.url}/healthz", self._proc, within, self._workdir / "gateway.log")
        return time.monotonic() - started

    async def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, in-flight requests and the writer's queue die with it."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(self._proc.wait)
        self.kills += 1

    async def exited(self, within: float) -> int | None:
        """Wait up to `within` seconds for the gateway to end by itself; its exit status, or None."""
        assert self._proc is not None
        try:
            return await asyncio.to_thread(self._proc.wait, within)
        except subprocess.TimeoutExpired:
            return None

    async def stop(self) -> int:
        """SIGTERM (graceful: the writer commits what it accepted) and wait; returns the exit status."""
        return await terminate(self._proc)


class HeadEndProcess:
    """`python -m mock_meter_server` (the head-end alone) on a free port, behind a bearer token."""

    def __init__(self, workdir: Path, *, seed: int = 0, cpu: str = "") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_urlsafe(16)
        self._log = workdir / "headend.log"
        self._seed = seed
        self._cpu = cpu
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def gateway_env(self) -> dict[str, str]:
        """What points a gateway's HTTP head-end client at this head-end."""
        return {"GATEWAY_HEADEND_URL": self.url, "GATEWAY_HEADEND_TOKEN": self.token}

    def _spawn(self) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "mock_meter_server", "--port", str(self.port), "--seed", str(self._seed)]
        if self._cpu:
            cmd = ["taskset", "-c", self._cpu, *cmd]
        env = {**os.environ, "MOCK_METER_SERVER_TOKEN": self.token}
        with open(self._log, "ab") as log:
            return subprocess.Popen([*cmd, "--log-level", "WARNING"], env=env, stdout=log, stderr=log)

    async def start(self, within: float = 30.0) -> None:
        """Start it and wait for its /healthz."""
        self._proc = self._spawn()
        await wait_healthy(f"{self.url}/healthz", self._proc, within, self._log)

    async def state(self) -> dict[str, Any]:
        """`GET /control/state`: every meter's credited total and every credit as the head-end has it."""
        headers = {"Authorization": f"Bearer {self.token}"}
        async with aiohttp.ClientSession(headers=headers) as session, session.get(f"{self.url}/control/state") as reply:
            reply.raise_for_status()
            return await reply.json()

    async def stop(self) -> int:
        """SIGTERM and wait."""
        return await terminate(self._proc)
