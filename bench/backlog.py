"""Backlog flush, full run: 2,000 meters come back at once, each posting a missed day (48 packets).

    python bench/backlog.py [--meters 2000] [--connections 2000] [--writer-queue N] [--mode both|batched|unbatched]
                            [--databases sqlite,postgresql]

Two modes, each on a fresh database: batched (each meter posts its day as one array) and
unbatched (each meter posts its 48 packets one by one, in order). All meters start together;
a 503/429 is retried after its Retry-After (tests/reliability/backlog.py). Reports the drain
time, the retries, and checks that every reading is stored exactly once with its charge. The
gateway (default settings: a writer queue of 50,000 readings; `--writer-queue` sets a smaller
one, so that 503 + Retry-After happens at this scale too) runs on CPU 0, the client on
CPU 1; SQLite in a data directory on the real disk, PostgreSQL in a throwaway database
(PG_BENCH_ADMIN_URL, default the local server).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests package holds the shared harness

from common import ROOT, fresh_database, machine, pin_client

from tests.reliability.backlog import BacklogReport, run_backlog


async def main_async(args: argparse.Namespace) -> int:
    server_cpu = pin_client()  # the client on CPU 1, the gateway on CPU 0
    print(f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {machine()}")
    queue = f"writer queue {args.writer_queue:,} readings" if args.writer_queue else "default writer queue (50,000)"
    print(f"{args.meters:,} meters × 48 packets per mode, {args.connections:,} client connections, {queue}")
    env = {"GATEWAY_WRITER_QUEUE_PACKETS": str(args.writer_queue)} if args.writer_queue else None
    reports: list[BacklogReport] = []
    for batched in {"both": (True, False), "batched": (True,), "unbatched": (False,)}[args.mode]:
        for database in args.databases.split(","):
            async with fresh_database(database) as (url, tmp):
                report = await run_backlog(
                    url,
                    tmp,
                    meters=args.meters,
                    batched=batched,
                    connections=args.connections,
                    env=env,
                    server_cpu=server_cpu,
                )
                reports.append(report)
                print(f"[{database:10}] {report.line()}", flush=True)
                if not report.ok:  # keep the gateway's log: the data directory goes away
                    kept = ROOT / "var" / f"backlog-{database}-{report.mode}-gateway.log"
                    shutil.copy(tmp / "gateway.log", kept)
                    print(f"  the gateway's log: {kept}")
    return 0 if all(report.ok for report in reports) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--mode", choices=("both", "batched", "unbatched"), default="both")
    parser.add_argument("--writer-queue", type=int, default=0, help="GATEWAY_WRITER_QUEUE_PACKETS (0: default)")
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
