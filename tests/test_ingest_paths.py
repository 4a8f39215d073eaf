"""SQLite records a group of all-new readings in one set-based pass (`store_if_all_new`) and
everything else reading by reading. Both paths must leave exactly the same database: this test
feeds the same random groups (DG sites with ON/OFF history, explicit sources, auto-cut sites,
low balances, retired and unknown meters, scoped keys, repeats and conflicts) to two copies of
one world, one with the all-new path and one without, and compares results and tables.
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
import sqlite3
from decimal import Decimal
from pathlib import Path

from storage import registry
from storage.batch_sql import SqliteBatchSql
from storage.engine import Database
from storage.ingest import HALF_HOUR, NewReading, plan_readings
from storage.inventory import retire_meter
from storage.models import DgStatusChange

DAY = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
STARTS = [DAY + i * HALF_HOUR for i in range(48)]
METERS = {"DGS": range(1, 13), "CUT": range(21, 33), "PLAIN": range(41, 47)}
RETIRED, UNKNOWN = 46, 999
FREE_AT_ZERO = 21  # an auto-cut meter at zero balance whose first reading costs nothing: no cut
TABLES = {
    "reading": "SELECT meter_no, interval_start, kwh, source, charge, received_at FROM reading ORDER BY 1, 2",
    "meter": "SELECT meter_no, balance, grid_kwh, dg_kwh, last_reading_at FROM meter ORDER BY 1",
    "command": "SELECT meter_no, action, reason, state FROM command ORDER BY meter_no, id",
    "conflict": "SELECT meter_no, interval_start, stored_kwh, offered_kwh FROM reading_conflict ORDER BY 1, 2",
}


class CarefulOnly(SqliteBatchSql):
    """The same statements without the all-new path."""

    has_all_new_path = False


async def build_world(url: str, rng: random.Random) -> None:
    db = Database(url)
    try:
        await registry.add_site(
            db, site_id="DGS", name="With DG", region="R", tariff_grid=Decimal("8.00"), tariff_dg=Decimal("21.35")
        )
        await registry.add_site(db, site_id="CUT", name="Cuts", region="R", tariff_grid=Decimal("9.99"), auto_cut=True)
        await registry.add_site(db, site_id="PLAIN", name="Plain", region="R", tariff_grid=Decimal("7.13"))
        for site, meters in METERS.items():
            for meter_no in meters:
                balance = Decimal(
                    "0.00" if meter_no == FREE_AT_ZERO else rng.choice(["0.00", "0.40", "3.00", "250.00"])
                )
                await registry.add_meter(db, meter_no=meter_no, site_id=site, unit_no=f"U{meter_no}", balance=balance)
        await retire_meter(db, meter_no=RETIRED)
        for dg_no in ("DG1", "DG2"):
            await registry.add_dg(db, site_id="DGS", dg_no=dg_no)
        changes = []
        for dg_no in ("DG1", "DG2"):
            # Changes on interval starts (and before the day), within intervals, and two at one instant.
            times = [
                rng.choice([DAY - HALF_HOUR, *STARTS]) + dt.timedelta(minutes=rng.choice([0, 0, 7, 22]))
                for _ in range(30)
            ]
            status = rng.choice(["ON", "OFF"])
            for at in sorted(times):
                status = "ON" if status == "OFF" else "OFF"
                changes.append(DgStatusChange(site_id="DGS", dg_no=dg_no, at=at, status=status))
        async with db.transaction() as session:
            session.add_all(changes)
    finally:
        await db.dispose()


def random_group(rng: random.Random, stored: dict[tuple[int, dt.datetime], int]) -> list[NewReading]:
    """Mostly readings never seen; sometimes a repeat, a conflict, an unknown or retired meter."""
    all_meters = [m for meters in METERS.values() for m in meters]
    group = []
    for _ in range(rng.randint(1, 40)):
        meter_no, start = rng.choice(all_meters), rng.choice(STARTS)
        wh = rng.choice([0, 500, 1500, rng.randint(0, 3000)])  # free, exact halves of a paisa, any
        roll = rng.random()
        if roll < 0.02:
            meter_no = UNKNOWN
        elif roll < 0.04 and stored:
            (meter_no, start), wh = rng.choice(sorted(stored.items()))  # a repeat
        elif roll < 0.06 and stored:
            (meter_no, start), wh = rng.choice(sorted(stored)), wh + 1  # a conflict (or a repeat)
        elif (meter_no, start) in stored:
            continue
        source = rng.choice([None, None, None, "grid", "dg"])
        sites = rng.choice([None, None, frozenset({"DGS", "CUT", "PLAIN"}), frozenset({"CUT"})])
        group.append(NewReading(meter_no, start, wh, source, sites))
        stored.setdefault((meter_no, start), wh)
    return group


def dump(conn: sqlite3.Connection) -> dict[str, list[tuple[object, ...]]]:
    return {name: conn.execute(query).fetchall() for name, query in TABLES.items()}


async def test_the_all_new_path_leaves_the_same_database_as_the_careful_path(tmp_path: Path, sqlite_url: str) -> None:
    rng = random.Random(20261122)
    await build_world(sqlite_url, rng)
    fast_path = Path(sqlite_url.removeprefix("sqlite+aiosqlite:///"))
    careful_path = tmp_path / "careful.db"
    shutil.copy(fast_path, careful_path)
    fast_db, careful_db = Database(sqlite_url), Database(f"sqlite+aiosqlite:///{careful_path}")
    fast_conn, careful_conn = fast_db.connect_sqlite(), careful_db.connect_sqlite()
    fast, careful = SqliteBatchSql(fast_db.engine.dialect), CarefulOnly(careful_db.engine.dialect)
    fast.prepare(fast_conn)
    taken = 0
    store_if_all_new = fast.store_if_all_new

    def counting(*args: object) -> bool:
        nonlocal taken
        done = store_if_all_new(*args)  # type: ignore[arg-type]
        taken += done
        return done

    fast.store_if_all_new = counting  # type: ignore[method-assign]
    stored: dict[tuple[int, dt.datetime], int] = {}
    try:
        for n in range(300):
            if n == 0:
                group, stored[(FREE_AT_ZERO, STARTS[0])] = [NewReading(FREE_AT_ZERO, STARTS[0], 0)], 0
            else:
                group = random_group(rng, stored)
            received = DAY + dt.timedelta(days=1, seconds=n)
            results = fast.run(fast_conn, plan_readings(fast, group, received))
            expected = careful.run(careful_conn, plan_readings(careful, group, received))
            assert results == expected, n
            assert dump(fast_conn) == dump(careful_conn), n
        assert 50 < taken < 300, taken  # both paths were exercised
        tables = dump(fast_conn)
        assert {source for *_, source, _charge, _at in tables["reading"]} == {"grid", "dg"}
        assert tables["command"] and tables["conflict"]
    finally:
        fast_conn.close()
        careful_conn.close()
        await fast_db.dispose()
        await careful_db.dispose()
