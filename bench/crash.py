"""Crash consistency, full run: SIGKILL a real `gateway serve` at random moments under load.

    python bench/crash.py [--kills 20] [--meters 2000] [--concurrency 32] [--seed 1] [--no-postgres]

A client posts unique readings (single packets and arrays of 2-100) as fast as the gateway takes
them and logs every 2xx; the gateway is killed with SIGKILL after a random 0.3-2 s of load,
restarted, and the client resends whatever got no reply, as a meter would. At the end the
database is compared with the log (tests/reliability/crash.py says what is checked). Runs on
SQLite (a data directory on the real disk) and on a throwaway PostgreSQL database
(PG_BENCH_ADMIN_URL, default the local server). The gateway is pinned to CPU 0, the client to
CPU 1 when the machine has two.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests package holds the shared harness

from common import machine, on_each_database, pin_client

from tests.reliability.crash import CrashConfig, run_crash


def config(args: argparse.Namespace, url: str, workdir: Path, server_cpu: str) -> CrashConfig:
    return CrashConfig(
        database_url=url,
        workdir=workdir,
        kills=args.kills,
        meters=args.meters,
        concurrency=args.concurrency,
        run_seconds=(0.3, 2.0),
        seed=args.seed,
        server_cpu=server_cpu,
    )


async def main_async(args: argparse.Namespace) -> int:
    server_cpu = pin_client()  # the client on CPU 1, the gateway on CPU 0
    print(f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {machine()}")
    print(f"kills: {args.kills} per database, meters: {args.meters}, client concurrency: {args.concurrency}")
    return await on_each_database(
        lambda url, tmp: run_crash(config(args, url, tmp, server_cpu)), postgres=not args.no_postgres
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--meters", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-postgres", action="store_true")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
