"""Benchmark: Factech call 1 (`GET /api/v1/site/readings`) for a site of 10,000 meters.

One command: `python bench/site_readings.py` (or `make bench-readings`). For SQLite and for
PostgreSQL it builds a throwaway database with one 10,000-meter site (bulk insert), starts the
real gateway (`gateway serve`) on 127.0.0.1 pinned to one core, and times sequential requests
from this process pinned to the other core. Target: p99 ≤ 200 ms on each database.

PostgreSQL: `--pg-admin-url` (default postgresql://postgres@127.0.0.1:5432/postgres) is used
to create and drop a throwaway database; `--skip-postgres` to run SQLite only.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import aiohttp
from common import data_dir, free_port, machine, throwaway_postgres
from sqlalchemy import insert

from storage.db.engine import Database
from storage.db.migrate import upgrade
from storage.db.models import Meter
from storage.registry import keys, sites

SITE = "BENCH"
CHUNK = 2_000


async def build_site(url: str, meters: int) -> str:
    """Migrate, add the site and its meters in bulk, and return a read key for it."""
    db = Database(url)
    try:
        await upgrade(db)
        await sites.add_site(db, site_id=SITE, name="Benchmark Towers", region="North")
        now = dt.datetime.now(dt.UTC)
        for start in range(0, meters, CHUNK):
            rows = [
                {
                    "meter_no": 100_000_000 + n,
                    "site_id": SITE,
                    "unit_no": f"T{n // 400:02d}-{n % 400:03d}",
                    "consumer_name": f"Resident {n}",
                    "fin_no": "",
                    "relay_on": n % 50 != 0,
                    "balance": Decimal(n % 5000) + Decimal("0.25"),
                    "grid_kwh": Decimal(n) + Decimal("0.125"),
                    "dg_kwh": Decimal(n % 97) + Decimal("0.5"),
                    "start_grid": Decimal(0),
                    "start_dg": Decimal(0),
                    "last_reading_at": now - dt.timedelta(minutes=n % 30),
                    "active": True,
                    "created_at": now,
                }
                for n in range(start, min(start + CHUNK, meters))
            ]
            async with db.transaction() as session:
                await session.execute(insert(Meter), rows)  # executemany: one round trip per chunk
            print(f"  building: {min(start + CHUNK, meters):,}/{meters:,} meters", flush=True)
        return (await keys.create_key(db, name="bench", role="read", sites=[SITE])).key
    finally:
        await db.dispose()


def start_server(url: str, port: int, cpu: str) -> subprocess.Popen[bytes]:
    """`gateway serve` on this database, pinned to `cpu` with taskset when available."""
    env = {**os.environ, "GATEWAY_DATABASE_URL": url, "GATEWAY_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "gateway.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if cpu and os.path.exists("/usr/bin/taskset"):
        command = ["taskset", "-c", cpu, *command]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def measure(port: int, key: str, requests: int, meters: int, pid: int) -> tuple[list[float], float]:
    """Wait for the server, warm up, then time `requests` sequential calls.

    Returns each call's latency and the server's CPU time per call, both in milliseconds.
    """
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 30
        while True:
            try:
                async with http.get(f"{base}/healthz") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start within 30 s")
            await asyncio.sleep(0.1)
        url = f"{base}/api/v1/site/readings?site_id={SITE}"
        headers = {"X-API-Key": key}
        timings = []
        cpu_before = 0.0
        for i in range(10 + requests):
            if i == 10:
                cpu_before = cpu_seconds(pid)
            started = time.perf_counter()
            async with http.get(url, headers=headers) as response:
                body = await response.read()
                assert response.status == 200, body[:200]
            elapsed = (time.perf_counter() - started) * 1000
            if i == 0:
                assert f'"count":"{meters}"'.encode() in body, "unexpected reply"
                print(f"  reply: {len(body) / 1e6:.2f} MB for {meters:,} meters", flush=True)
            if i >= 10:  # the first ten warm the caches and the connection pool
                timings.append(elapsed)
        return timings, (cpu_seconds(pid) - cpu_before) * 1000 / requests


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux), to tell our cost from a busy machine's."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def run_one(label: str, url: str, args: argparse.Namespace) -> str:
    print(f"{label}:", flush=True)
    started = time.perf_counter()
    key = await build_site(url, args.meters)
    print(f"  built in {time.perf_counter() - started:.1f} s; load average {os.getloadavg()[0]:.2f}", flush=True)
    port = free_port()
    server = start_server(url, port, args.server_cpu)
    try:
        timings, cpu = await measure(port, key, args.requests, args.meters, server.pid)
    finally:
        server.terminate()
        server.wait(timeout=10)
    p50, p99 = percentile(timings, 0.50), percentile(timings, 0.99)
    verdict = "ok" if p99 <= 200 else "OVER TARGET"
    line = (
        f"{label:<10} call 1, {args.meters:,} meters, {len(timings)} requests: "
        f"p50 {p50:.1f} ms  p99 {p99:.1f} ms  max {max(timings):.1f} ms  "
        f"mean {statistics.mean(timings):.1f} ms, server CPU {cpu:.1f} ms/request  "
        f"(target p99 <= 200 ms: {verdict})"
    )
    print("  " + line, flush=True)
    return line


async def main(args: argparse.Namespace) -> None:
    if args.client_cpu and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(args.client_cpu)})
    print(f"machine: {machine()}")
    print(f"server pinned to cpu {args.server_cpu}, client to cpu {args.client_cpu}", flush=True)
    results = []
    with data_dir() as tmp:
        results.append(await run_one("sqlite", f"sqlite+aiosqlite:///{tmp}/bench.db", args))
    if not args.skip_postgres:
        async with throwaway_postgres(args.pg_admin_url) as url:
            results.append(await run_one("postgresql", f"{url}", args))
    print("\nresults:")
    print(f"machine: {machine()}")
    for line in results:
        print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--server-cpu", default="0", help="core for the gateway ('' to not pin)")
    parser.add_argument("--client-cpu", default="1", help="core for the load generator ('' to not pin)")
    asyncio.run(main(parser.parse_args()))
