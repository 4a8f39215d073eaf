"""Ingest benchmark: the gateway's durable `POST /meter` against a bare aiohttp JSON handler.

    python bench/ingest.py [--seconds 10] [--connections 64] [--no-postgres] [--workers 1,2,4]

The gateway runs in its default configuration (access logs on, INFO): only the database URL and
port are set, and any other `GATEWAY_*` variable of the caller's environment is dropped. Besides
the plain workload (10,000 meters with money, a site without automatic cuts) it measures a mixed
state on SQLite, which must cost the same: an auto-cut site whose meters are a quarter at zero
balance, a quarter below zero, a quarter disconnected, the rest in credit, with 10,000 meters and
with 100 (`--meters` changes the plain workload's count).

Both servers run as separate processes pinned to CPU 0, the load generator (wrk for single
packets, an aiohttp client for 1,000-packet batches) to CPU 1, so the two never share a core
(unpinned runs on 2 cores swing 3× from run to run). Batches are measured a second time with a
SQLite gateway free to use every core (the client's included), as the gateway runs in
production. Every packet is unique, so each one is a
real insert, register update and balance debit, committed (fsync) before the reply. Prints the
machine, requests/s and p50/p99 for both, their ratio, and batch packets/s, on SQLite and on
PostgreSQL (a throwaway database at PG_BENCH_ADMIN_URL, default the local server).

It also prints the server's CPU time per single-packet request (user + system, all its threads
and child processes, from /proc) and the ratio of the bare handler's to the gateway's. On a quiet
machine the two ratios agree (each server saturates its core); on a shared one the req/s ratio
mostly says how much of CPU 0 each server was left, the CPU ratio still what each request costs.
On PostgreSQL the database server's own CPU is not in it.

`--workers 1,2,4` runs the PostgreSQL gateway once per count as `gateway serve --workers N`
(gunicorn, one port), each on a fresh database; `--server-cpus 0-3` gives the servers more
cores than the default one (on a 2-core machine N processes then share CPU 0: the figures show
what several processes cost or gain there, not how they scale on more cores).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from decimal import Decimal

import aiohttp
from aiohttp import web
from common import data_dir, free_port, machine, throwaway_postgres
from sqlalchemy import insert, text

from storage.db.engine import Database
from storage.db.migrate import upgrade
from storage.db.models import Meter
from storage.registry import keys, sites

FIRST_METER = 300_000_001
CLIENT_CPU = "1"

WRK_SCRIPT = """
local counter = 0
local base = %(base)d
local meters = %(meters)d
local first = %(first)d
local thread_offset = 0
function setup(thread) thread:set("thread_offset", %(per_thread)d * (thread_id or 0)) end
function request()
  counter = counter + 1
  local n = counter + thread_offset
  local meter = first + (n %% meters)
  local slot = math.floor(n / meters)
  local ts = os.date("!%%Y-%%m-%%dT%%H:%%M:00Z", base - slot * 1800)
  local body = string.format('{"id": %%d, "timestamp": "%%s", "reading_kWh": %%.3f}', meter, ts, 0.2 + (n %% 7) * 0.31)
  return wrk.format("POST", "/meter", {["Content-Type"] = "application/json",
                                        ["Authorization"] = "Bearer %(key)s"}, body)
end
"""


def _loop() -> asyncio.AbstractEventLoop:
    """The event loop the gateway itself runs on (uvloop), so both servers share a runtime."""
    import uvloop

    return uvloop.new_event_loop()


def bare_server(port: int) -> None:
    """The reference: parse the JSON body, answer JSON. No storage."""

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"status": "success", "message": "Reading stored", "data": {"id": body["id"]}})

    app = web.Application()
    app.router.add_post("/meter", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=_loop())


def wait_for(port: int, path: str | None = None) -> None:
    """Until the port accepts connections, and `path` (if given) answers 200: gunicorn's arbiter
    listens before its workers have booted, and requests meanwhile would wait in the backlog."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if path is None:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            else:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as response:
                    if response.status == 200:
                        return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not start")


@dataclass(frozen=True)
class Workload:
    """Which meters the packets go to: how many, and whether in the mixed state."""

    meters: int
    mixed: bool = False

    @property
    def label(self) -> str:
        return f"{'mixed' if self.mixed else 'plain'}, {self.meters:,} meters"

    def meter_row(self, i: int) -> dict[str, object]:
        row: dict[str, object] = {"meter_no": FIRST_METER + i, "site_id": "BENCH", "unit_no": f"U{i}"}
        if not self.mixed or i % 4 == 3:
            row["balance"] = Decimal("1e9")
        else:  # zero, below zero, disconnected at zero
            row["balance"] = Decimal("-50.00") if i % 4 == 1 else Decimal("0.00")
            row["relay_on"] = i % 4 != 2
        return row

    def batches(self, wanted: int) -> int:
        """As many 1,000-packet posts as fit in 12 days of intervals (older packets are refused)."""
        return max(1, min(wanted, self.meters * 48 * 12 // 1000))


async def prepare(url: str, workload: Workload) -> str:
    """A site with the workload's meters and an ingest key for that site only; returns the key."""
    db = Database(url)
    try:
        await upgrade(db)
        await sites.add_site(db, site_id="BENCH", name="Bench", region="Bench", auto_cut=workload.mixed)
        async with db.transaction() as session:
            await session.execute(insert(Meter), [workload.meter_row(i) for i in range(workload.meters)])
        if not db.is_sqlite:  # statistics, as autovacuum keeps them on a database in service
            async with db.transaction() as session:
                await session.execute(text("ANALYZE"))
        return (await keys.create_key(db, name="bench", role="ingest", sites=["BENCH"])).key
    finally:
        await db.dispose()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and of all its descendants (gunicorn's workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, seconds)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    family = {pid}
    grew = True
    while grew:  # children, their children, ... (a child's pid may be below its parent's)
        before = len(family)
        family |= {child for child, (parent, _) in stats.items() if parent in family}
        grew = len(family) > before
    return sum(stats[member][1] for member in family if member in stats)


def run_wrk(port: int, seconds: int, connections: int, script: str, server: int) -> dict[str, float]:
    """wrk's figures, and the CPU time per request of the `server` process (µs)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    cpu_before = cpu_seconds(server)
    out = subprocess.run(
        [
            "taskset",
            "-c",
            CLIENT_CPU,
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            f.name,
            f"http://127.0.0.1:{port}/meter",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = cpu_seconds(server) - cpu_before
    os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def pct(label: str) -> float:
        value, unit = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {
        "rps": rps,
        "p50": pct("50"),
        "p99": pct("99"),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "cpu_us": cpu * 1e6 / max(requests, 1),
    }


async def post_batches(
    port: int, key: str, batches: int, size: int, concurrency: int, meters: int
) -> tuple[float, int]:
    """Post `batches` unique 1,000-packet arrays; returns (packets/s, non-200 replies)."""
    base = dt.datetime.now(dt.UTC).replace(minute=1, second=0, microsecond=0) - dt.timedelta(days=20)
    bodies = []
    for b in range(batches):
        packets = []
        for i in range(size):
            n = b * size + i
            at = base - dt.timedelta(minutes=30 * (n // meters))
            packets.append(
                {
                    "id": FIRST_METER + n % meters,
                    "timestamp": at.strftime("%Y-%m-%dT%H:%M:00Z"),
                    "reading_kWh": round(0.2 + (n % 7) * 0.31, 3),
                }
            )
        bodies.append(json.dumps(packets).encode())
    failures = 0
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while not queue.empty():
            body = queue.get_nowait()
            async with session.post(f"http://127.0.0.1:{port}/meter", data=body, headers=headers) as response:
                await response.read()
                failures += response.status != 200

    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return batches * size / elapsed, failures


def start(cmd: list[str], env: dict[str, str], cpus: str = "0") -> subprocess.Popen[bytes]:
    quiet = subprocess.DEVNULL
    return subprocess.Popen(["taskset", "-c", cpus, *cmd], env=env, stdout=quiet, stderr=quiet)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=30)


def gateway_process(url: str, args: argparse.Namespace, workers: int, cpus: str) -> tuple[int, subprocess.Popen[bytes]]:
    """A `gateway serve` on `url`, pinned to `cpus`, answering /healthz: (port, process)."""
    port = free_port()
    # The default configuration: nothing set but the database (the port is a flag).
    env = {name: value for name, value in os.environ.items() if not name.startswith("GATEWAY_")}
    env["GATEWAY_DATABASE_URL"] = url
    command = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port), "--workers", str(workers)]
    proc = start(command, env, cpus)
    try:
        wait_for(port, "/healthz")
    except BaseException:
        stop(proc)
        raise
    return port, proc


def bench_batches_on_all_cores(label: str, url: str, args: argparse.Namespace) -> float:
    """Batch packets/s of a gateway free to use every core (a fresh database)."""
    workload = Workload(args.meters)
    batches = workload.batches(args.batches)
    print(f"[{label}, all cores] creating {workload.meters:,} meters, then {batches} × 1,000 packets ...", flush=True)
    key = asyncio.run(prepare(url, workload))
    port, proc = gateway_process(url, args, 1, f"0-{os.cpu_count() - 1}")
    try:
        packets_s, failures = asyncio.run(post_batches(port, key, batches, 1000, 4, workload.meters))
    finally:
        stop(proc)
    if failures:
        print(f"  ! {failures} failed batches")
    return packets_s


def bench_gateway(
    label: str, url: str, args: argparse.Namespace, workload: Workload, workers: int = 1
) -> dict[str, float]:
    print(f"[{label}] creating {workload.meters:,} meters ({workload.label}) ...", flush=True)
    key = asyncio.run(prepare(url, workload))
    port, proc = gateway_process(url, args, workers, args.server_cpus)
    try:
        print(f"[{label}] single packets: wrk -c{args.connections} for {args.seconds}s ...", flush=True)
        base = int(time.time()) // 1800 * 1800 + 60 - 1800
        script = WRK_SCRIPT % {
            "base": base,
            "meters": workload.meters,
            "first": FIRST_METER,
            "key": key,
            "per_thread": 0,
        }
        single = run_wrk(port, args.seconds, args.connections, script, proc.pid)
        batches = workload.batches(args.batches)
        print(f"[{label}] batches: {batches} × 1,000 packets ...", flush=True)
        packets_s, failures = asyncio.run(post_batches(port, key, batches, 1000, 4, workload.meters))
    finally:
        stop(proc)
    return {**single, "batch_pps": packets_s, "batch_failures": failures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--meters", type=int, default=10_000, help="meters of the plain workload (default 10,000)")
    parser.add_argument("--no-mixed", action="store_true", help="skip the mixed-state workloads")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--workers", default="1", help="PostgreSQL gateway processes, e.g. 1,2,4 (default 1)")
    parser.add_argument("--server-cpus", default="0", help="taskset CPU list for the servers (default 0)")
    parser.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        bare_server(args.bare_server)
        return 0
    if not shutil.which("wrk") or not shutil.which("taskset"):
        print("needs wrk and taskset (apt-get install wrk util-linux)", file=sys.stderr)
        return 1
    os.sched_setaffinity(0, {int(CLIENT_CPU)})  # the batch client; servers are pinned by taskset
    print(f"machine: {machine()}")
    print(f"servers on CPU {args.server_cpus}, load generator on CPU {CLIENT_CPU}; {args.connections} connections")

    port = free_port()
    bare = start([sys.executable, __file__, "--bare-server", str(port)], dict(os.environ), args.server_cpus)
    try:
        wait_for(port)
        print("[bare aiohttp] single packets ...", flush=True)
        base = int(time.time()) // 1800 * 1800
        bare_single = run_wrk(
            port,
            args.seconds,
            args.connections,
            WRK_SCRIPT % {"base": base, "meters": args.meters, "first": FIRST_METER, "key": "x", "per_thread": 0},
            bare.pid,
        )
    finally:
        stop(bare)

    results: dict[str, dict[str, float]] = {}
    with data_dir() as tmp:
        results["SQLite"] = bench_gateway("SQLite", f"sqlite+aiosqlite:///{tmp}/bench.db", args, Workload(args.meters))
        for meters in () if args.no_mixed else (10_000, 100):
            workload = Workload(meters, mixed=True)
            results[f"SQLite, {workload.label}"] = bench_gateway(
                "SQLite", f"sqlite+aiosqlite:///{tmp}/mixed-{meters}.db", args, workload
            )
        all_cores = bench_batches_on_all_cores("SQLite", f"sqlite+aiosqlite:///{tmp}/all-cores.db", args)
    for workers in [] if args.no_postgres else [int(n) for n in args.workers.split(",")]:
        label = "PostgreSQL" if workers == 1 else f"PostgreSQL ×{workers}"

        async def on_postgres(label: str = label, workers: int = workers) -> dict[str, float]:
            async with throwaway_postgres() as url:
                return await asyncio.to_thread(bench_gateway, label, url, args, Workload(args.meters), workers)

        results[label] = asyncio.run(on_postgres())

    print()
    print(
        f"{'':44}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'vs bare':>9}{'CPU µs/req':>12}{'CPU vs bare':>13}"
        f"{'batch pkt/s':>13}"
    )
    print(
        f"{'bare aiohttp JSON handler':44}{bare_single['rps']:>10,.0f}{bare_single['p50']:>9.2f}"
        f"{bare_single['p99']:>9.2f}{'1.00':>9}{bare_single['cpu_us']:>12.1f}{'1.00':>13}{'-':>13}"
    )
    for label, r in results.items():
        print(
            f"{'gateway, ' + label:44}{r['rps']:>10,.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}"
            f"{r['rps'] / bare_single['rps']:>9.2f}{r['cpu_us']:>12.1f}{bare_single['cpu_us'] / r['cpu_us']:>13.2f}"
            f"{r['batch_pps']:>13,.0f}"
        )
        if r["non2xx"] or r["batch_failures"]:
            print(f"  ! {label}: {r['non2xx']:.0f} non-2xx single replies, {r['batch_failures']:.0f} failed batches")
    print(
        f"gateway, SQLite, batches with every core ({os.cpu_count()}; the client shares them): "
        f"{all_cores:,.0f} packets/s"
    )
    print("targets: single-packet ratio ≥ 0.55; batch ≥ 75,000 packets/s on SQLite, gateway on CPU 0")
    print(f"load average now: {', '.join(f'{x:.2f}' for x in os.getloadavg())} (the CPU ratio holds on a busy machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
