"""A real `gateway serve` in a child process, and the database it serves, for the reliability runs.

Shared by the quick tests (`tests/reliability/`) and the full runs (`bench/`): the same code
starts, kills and restarts the gateway, whichever of them drives it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import aiohttp
from sqlalchemy import insert

from storage import registry
from storage.engine import Database
from storage.migrate import upgrade
from storage.models import Meter

SITE = "PROOF"
FIRST_METER = 400_000_001
SECRET_KEY = "reliability-runs-portal-cookie-key-0123456789"  # 32+ characters; the portal needs one


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def prepare_site(url: str, *, meters: int, opening_balance: Decimal, tariff: Decimal = Decimal("8.00")) -> str:
    """Migrate, then one site with `meters` meters at `opening_balance` and an ingest key; returns the key."""
    db = Database(url)
    try:
        await upgrade(db)
        # No auto-cut: a cut would put rows in the command log, which these runs do not look at.
        await registry.add_site(
            db, site_id=SITE, name="Proof", region="Proof", tariff_grid=tariff, tariff_dg=tariff, auto_cut=False
        )
        async with db.transaction() as session:
            rows = [
                {"meter_no": FIRST_METER + i, "site_id": SITE, "unit_no": f"U{i}", "balance": opening_balance}
                for i in range(meters)
            ]
            for start in range(0, len(rows), 5000):
                await session.execute(insert(Meter), rows[start : start + 5000])
        return (await registry.create_key(db, name=f"proof-{os.getpid()}", role="ingest", sites=[SITE])).key
    finally:
        await db.dispose()


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

    def _spawn(self) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(self.port)]
        if self._cpu:
            cmd = ["taskset", "-c", self._cpu, *cmd]
        with open(self._workdir / "gateway.log", "ab") as log:  # the child keeps its own copy of the fd
            return subprocess.Popen(cmd, env=self._env, cwd=self._workdir, stdout=log, stderr=log)

    async def start(self, within: float = 60.0) -> float:
        """Start the gateway and wait until /healthz answers 200; returns the seconds it took."""
        assert self._proc is None or self._proc.poll() is not None, "already running"
        started = time.monotonic()
        self._proc = self._spawn()
        self.starts += 1
        async with aiohttp.ClientSession() as session:
            while time.monotonic() - started < within:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"gateway exited with {self._proc.returncode}; see {self._workdir}/gateway.log")
                try:
                    async with session.get(f"{self.url}/healthz", timeout=aiohttp.ClientTimeout(total=1)) as reply:
                        if reply.status == 200:
                            return time.monotonic() - started
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError(f"gateway did not answer /healthz within {within}s")

    async def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, in-flight requests and the writer's queue die with it."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(self._proc.wait)
        self.kills += 1

    async def stop(self) -> int:
        """SIGTERM (graceful: the writer commits what it accepted) and wait; returns the exit status."""
        if self._proc is None or self._proc.poll() is not None:
            return self._proc.returncode if self._proc else 0
        self._proc.terminate()
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._proc.wait), 30)
        except TimeoutError:
            self._proc.kill()
            return await asyncio.to_thread(self._proc.wait)
