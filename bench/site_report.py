"""Benchmark: the site month report (`gateway report SITE --month`) for 10,000 meters × a month.

One command: `python bench/site_report.py [--meters 10000] [--skip-postgres]`. For SQLite and
for PostgreSQL it builds a throwaway database (under var/, the real disk) with one site of
`--meters` meters and, for February 2025 (Asia/Kolkata), every meter's 1,344 half-hour readings
(a fiftieth of them on DG), a fixed charge per meter-day and a recharge per meter, all in
bulk SQL; then runs `gateway report` (with the month's energy audit totals: the report adds
only the bulk meters' side, the flats' kWh being its own totals) in a child process writing
the CSV to a file, and reports its wall time and peak memory (max RSS of the child). Targets: ≤ 10 s and ≤ 200 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from common import fresh_database, machine
from sqlalchemy import insert

from storage.db.engine import Database
from storage.db.migrate import upgrade
from storage.db.models import Meter
from storage.reads.energy_audit import site_energy_audit
from storage.registry import sites

SITE = "BENCH"
FIRST_METER = 100_000_000
MONTH_START = "2025-01-31 18:30:00"  # 1 Feb 2025 00:00 IST, in UTC
HALF_HOURS = 28 * 48
TARGET_SECONDS, TARGET_MB = 10.0, 200.0

# Readings in bulk, in key order. SQLite stores UtcTime as integer microseconds since the epoch,
# Energy and Money as integer thousandths and hundredths (storage/db/types.py); PostgreSQL as
# timestamptz and numeric.
SQLITE_READINGS = f"""
WITH RECURSIVE slot(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM slot WHERE n < {HALF_HOURS - 1})
INSERT INTO reading (meter_no, interval_start, kwh, source, charge, received_at)
SELECT m.meter_no,
       (unixepoch('{MONTH_START}') + slot.n * 1800) * 1000000,
       250, CASE WHEN slot.n % 50 = 7 THEN 'dg' ELSE 'grid' END,
       CASE WHEN slot.n % 50 = 7 THEN 500 ELSE 200 END,
       (unixepoch('{MONTH_START}') + (slot.n * 30 + 31) * 60) * 1000000
FROM meter m CROSS JOIN slot WHERE m.site_id = '{SITE}' ORDER BY m.meter_no, slot.n
"""
POSTGRES_READINGS = f"""
INSERT INTO reading (meter_no, interval_start, kwh, source, charge, received_at)
SELECT m.meter_no, TIMESTAMPTZ '{MONTH_START}+00' + slot.n * INTERVAL '30 minutes', 0.250,
       CASE WHEN slot.n % 50 = 7 THEN 'dg' ELSE 'grid' END, CASE WHEN slot.n % 50 = 7 THEN 5.00 ELSE 2.00 END,
       TIMESTAMPTZ '{MONTH_START}+00' + (slot.n * 30 + 31) * INTERVAL '1 minute'
FROM meter m CROSS JOIN generate_series(0, {HALF_HOURS - 1}) AS slot(n) WHERE m.site_id = '{SITE}'
"""
SQLITE_LEDGER = f"""
WITH RECURSIVE d(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM d WHERE n < 27)
INSERT INTO ledger_entry (meter_no, kind, amount, balance_after, reason, created_by, created_at, day)
SELECT m.meter_no, 'fixed', -500, 0, 'fixed charge', 'rollup',
       (unixepoch('{MONTH_START}') + (d.n + 1) * 86400 + 1200) * 1000000,
       date('2025-02-01', '+' || d.n || ' days')
FROM meter m CROSS JOIN d WHERE m.site_id = '{SITE}'
UNION ALL
SELECT m.meter_no, 'credit', 50000, 0, 'recharge', 'bench', unixepoch('2025-02-10 05:00:00') * 1000000, NULL
FROM meter m WHERE m.site_id = '{SITE}'
"""
POSTGRES_LEDGER = f"""
INSERT INTO ledger_entry (meter_no, kind, amount, balance_after, reason, created_by, created_at, day)
SELECT m.meter_no, 'fixed', -5.00, 0, 'fixed charge', 'rollup',
       TIMESTAMPTZ '{MONTH_START}+00' + (d.n + 1) * INTERVAL '1 day' + INTERVAL '20 minutes',
       DATE '2025-02-01' + d.n
FROM meter m CROSS JOIN generate_series(0, 27) AS d(n) WHERE m.site_id = '{SITE}'
UNION ALL
SELECT m.meter_no, 'credit', 500.00, 0, 'recharge', 'bench', TIMESTAMPTZ '2025-02-10 05:00:00+00', NULL
FROM meter m WHERE m.site_id = '{SITE}'
"""


async def build(url: str, meters: int) -> None:
    """The site, its meters, a month of their readings and their ledger, in bulk."""
    db = Database(url)
    try:
        await upgrade(db)
        await sites.add_site(db, site_id=SITE, name="Benchmark Towers", region="North")
        created = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
        rows = [
            {"meter_no": FIRST_METER + n, "site_id": SITE, "unit_no": f"T{n // 400:02d}-{n % 400:03d}",
             "consumer_name": f"Resident {n}", "balance": Decimal("100.00"), "created_at": created}
            for n in range(meters)
        ]  # fmt: skip
        async with db.transaction() as session:
            await session.execute(insert(Meter), rows)
        started = time.perf_counter()
        async with db.transaction() as session:
            await session.execute(sa.text(SQLITE_READINGS if db.is_sqlite else POSTGRES_READINGS))
            await session.execute(sa.text(SQLITE_LEDGER if db.is_sqlite else POSTGRES_LEDGER))
        if not db.is_sqlite:
            async with db.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(sa.text("VACUUM ANALYZE"))
        print(
            f"  built {meters:,} meters × {HALF_HOURS:,} readings in {time.perf_counter() - started:.0f} s", flush=True
        )
    finally:
        await db.dispose()


def run_report(url: str, output: Path) -> tuple[float, float]:
    """`gateway report` in a child process: its wall time (s) and peak RSS (MB).

    The peak is measured by GNU time around the child: a child forked straight from this process
    would report this process's own peak (Linux carries the parent's high-water mark over fork
    and exec), and this process holds the whole bench.
    """
    env = {**os.environ, "GATEWAY_DATABASE_URL": url, "GATEWAY_LOG_LEVEL": "WARNING"}
    peak_file = output.with_suffix(".rss")
    command = [
        "/usr/bin/time", "-f", "%M", "-o", str(peak_file),
        sys.executable, "-m", "gateway.cli", "report", SITE, "--month", "2025-02", "--output", str(output),
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True)
    elapsed = time.perf_counter() - started
    return elapsed, int(peak_file.read_text().split()[-1]) / 1024  # kB


async def bench(database: str, meters: int) -> bool:
    async with fresh_database(database) as (url, workdir):
        print(f"\n[{database}] building ...", flush=True)
        await build(url, meters)
        output = workdir / "report.csv"
        elapsed, peak_mb = await asyncio.to_thread(run_report, url, output)
        table, audit = output.read_text(encoding="utf-8").split("\n\n")  # the meters, the energy audit's totals
        lines = table.splitlines()
        assert len(lines) == meters + 2, f"{len(lines)} lines for {meters} meters"
        ok = elapsed <= TARGET_SECONDS and peak_mb <= TARGET_MB
        print(f"  report: {elapsed:.2f} s, peak RSS {peak_mb:.0f} MB, {len(lines) - 2:,} meter lines "
              f"({'within' if ok else 'OVER'} the targets {TARGET_SECONDS:.0f} s, {TARGET_MB:.0f} MB)")  # fmt: skip
        print(f"  totals: {lines[-1]}")
        print(f"  energy audit: {', '.join(audit.splitlines()[1:4])}", flush=True)
        await time_energy_audit(url)
        return ok


async def time_energy_audit(url: str) -> None:
    """The energy audit in this process: its bulk-meter side (what the report adds) and the whole
    audit of `GET .../audit` (one aggregate of the flats' readings per day), wall time each."""
    db = Database(url)
    try:
        now = dt.datetime(2025, 3, 1, 12, tzinfo=dt.UTC)
        for flats in (False, True):
            started = time.perf_counter()
            audit = await site_energy_audit(db, site_id=SITE, year=2025, month=2, now=now, flats=flats)
            label = "the whole audit (GET .../audit)" if flats else "its bulk-meter side (in the report)"
            print(f"  energy audit, {label}: {time.perf_counter() - started:.2f} s, "
                  f"{len(audit.days)} days, flats' grid {audit.totals.flats_grid_kwh} kWh", flush=True)  # fmt: skip
    finally:
        await db.dispose()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    print(machine())
    results = [] if args.skip_sqlite else [await bench("sqlite", args.meters)]
    if not args.skip_postgres:
        results.append(await bench("postgresql", args.meters))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
