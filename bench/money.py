"""Money safety under faults, full run: kill a real `gateway serve` mid-recharge, again and again.

    python bench/money.py [--kills 20] [--meters 50] [--recharge-clients 8] [--max-hits 25] [--seed 1] [--no-postgres]

Each kill is, in turn, one of the gateway's fault points (tests/reliability/faults.py, tests only:
the gateway started by tests/reliability/faulty_gateway.py SIGKILLs itself before the head-end
is asked for the credit, after the head-end applied it, or after the local commit before the
reply, at the N-th recharge to get there, N drawn from 1 to --max-hits) or a SIGKILL from
outside at a random moment under recharge load. A real
`mock-meter-server` is the head-end; readings are posted throughout, so balances are debited
too. After each kill the gateway restarts without fault points, the clients resend what is
safe to resend (with an Idempotency-Key) and follow 202s through call 4, and reconciliation
settles the rest. At the end the clients' answers, the database and the head-end's books are
compared (tests/reliability/money_check.py says how). SQLite (a data directory on the real
disk) and a throwaway PostgreSQL database (PG_BENCH_ADMIN_URL, default the local server). The
gateway and the head-end run on CPU 0, the clients on CPU 1 when the machine has two.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests package holds the shared harness

from common import machine, on_each_database, pin_client

from tests.reliability.money import KINDS, MoneyConfig, run_money


def config(args: argparse.Namespace, url: str, workdir: Path, server_cpu: str) -> MoneyConfig:
    return MoneyConfig(
        database_url=url,
        workdir=workdir,
        kills=args.kills,
        kinds=KINDS,
        meters=args.meters,
        recharge_clients=args.recharge_clients,
        hits=(1, args.max_hits),
        seed=args.seed,
        server_cpu=server_cpu,
    )


def progress(line: str) -> None:
    print(f"  {line}", flush=True)


async def main_async(args: argparse.Namespace) -> int:
    server_cpu = pin_client()  # the clients on CPU 1, the gateway and the head-end on CPU 0
    print(f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {machine()}")
    print(
        f"kills: {args.kills} per database ({', '.join(KINDS)} in turn), meters: {args.meters}, "
        f"recharge clients: {args.recharge_clients}, fault at hit 1-{args.max_hits}",
        flush=True,
    )
    return await on_each_database(
        lambda url, tmp: run_money(config(args, url, tmp, server_cpu), progress), postgres=not args.no_postgres
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--meters", type=int, default=50)
    parser.add_argument("--recharge-clients", type=int, default=8)
    parser.add_argument("--max-hits", type=int, default=25)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-postgres", action="store_true")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
