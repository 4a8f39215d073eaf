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
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import select, update

from storage import registry
from storage.batch_sql import PostgresBatchSql, SqliteBatchSql
from storage.engine import Database
from storage.ingest import HALF_HOUR, NewReading, plan_readings
from storage.inventory import retire_meter
from storage.models import Command, DgStatusChange, Meter, Reading, ReadingConflict
from tests.conftest import _truncate_all

DAY = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
STARTS = [DAY + i * HALF_HOUR for i in range(48)]
METERS = {"DGS": range(1, 13), "CUT": range(21, 33), "PLAIN": range(41, 47)}
RETIRED, UNKNOWN = 46, 999
FREE_AT_ZERO = 21  # an auto-cut meter at zero balance whose first reading costs nothing: no cut
SUPPLY_OFF = 22  # an auto-cut meter at zero balance already disconnected: no cut either
TABLES = {
    "reading": "SELECT meter_no, interval_start, kwh, source, charge, received_at FROM reading ORDER BY 1, 2",
    "meter": "SELECT meter_no, balance, grid_kwh, dg_kwh, last_reading_at FROM meter ORDER BY 1",
    "command": "SELECT meter_no, action, reason, state FROM command ORDER BY meter_no, id",
    "conflict": "SELECT meter_no, interval_start, stored_kwh, offered_kwh FROM reading_conflict ORDER BY 1, 2",
}


# The same tables read through the ORM: values in Python's terms (Decimal, aware datetimes), so
# that a SQLite database and a PostgreSQL one compare.
ORM_TABLES = {
    "reading": select(
        Reading.meter_no, Reading.interval_start, Reading.kwh, Reading.source, Reading.charge, Reading.received_at
    ).order_by(Reading.meter_no, Reading.interval_start),
    "meter": select(Meter.meter_no, Meter.balance, Meter.grid_kwh, Meter.dg_kwh, Meter.last_reading_at).order_by(
        Meter.meter_no
    ),
    "command": select(Command.meter_no, Command.action, Command.reason, Command.state).order_by(
        Command.meter_no, Command.id
    ),
    "conflict": select(
        ReadingConflict.meter_no,
        ReadingConflict.interval_start,
        ReadingConflict.stored_kwh,
        ReadingConflict.offered_kwh,
    ).order_by(ReadingConflict.meter_no, ReadingConflict.interval_start, ReadingConflict.id),
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
                    "0.00" if meter_no in (FREE_AT_ZERO, SUPPLY_OFF) else rng.choice(["0.00", "0.40", "3.00", "250.00"])
                )
                await registry.add_meter(db, meter_no=meter_no, site_id=site, unit_no=f"U{meter_no}", balance=balance)
        await retire_meter(db, meter_no=RETIRED)
        async with db.transaction() as session:
            await session.execute(update(Meter).where(Meter.meter_no == SUPPLY_OFF).values(relay_on=False))
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


def groups(rng: random.Random, count: int) -> Iterator[list[NewReading]]:
    """`count` groups: first a free reading of an auto-cut meter at zero balance, then random ones."""
    stored: dict[tuple[int, dt.datetime], int] = {(FREE_AT_ZERO, STARTS[0]): 0}
    yield [NewReading(FREE_AT_ZERO, STARTS[0], 0)]
    for _ in range(count - 1):
        yield random_group(rng, stored)


def count_all_new(sql: SqliteBatchSql | PostgresBatchSql) -> list[bool]:
    """Record what each call of `sql.store_if_all_new` answered (True: the group took that path)."""
    answers: list[bool] = []
    original = sql.store_if_all_new
    if isinstance(sql, PostgresBatchSql):

        async def recording(*args: Any) -> bool:
            answers.append(await original(*args))
            return answers[-1]
    else:

        def recording(*args: Any) -> bool:  # type: ignore[misc]
            answers.append(original(*args))  # type: ignore[arg-type]
            return answers[-1]

    sql.store_if_all_new = recording  # type: ignore[method-assign, assignment]
    return answers


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
    taken = count_all_new(fast)
    try:
        for n, group in enumerate(groups(rng, 300)):
            received = DAY + dt.timedelta(days=1, seconds=n)
            results = fast.run(fast_conn, plan_readings(fast, group, received))
            expected = careful.run(careful_conn, plan_readings(careful, group, received))
            assert results == expected, n
            assert dump(fast_conn) == dump(careful_conn), n
        assert 30 < sum(taken) < 250, taken  # both paths were exercised
        tables = dump(fast_conn)
        assert {source for *_, source, _charge, _at in tables["reading"]} == {"grid", "dg"}
        assert tables["command"] and tables["conflict"]
    finally:
        fast_conn.close()
        careful_conn.close()
        await fast_db.dispose()
        await careful_db.dispose()


async def orm_dump(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    async with db.transaction() as session:
        return {name: [tuple(row) for row in await session.execute(query)] for name, query in ORM_TABLES.items()}


async def test_postgres_all_new_path_leaves_what_the_careful_path_leaves_on_sqlite(
    sqlite_url: str, postgres_url: str
) -> None:
    await _truncate_all(postgres_url)
    rng = random.Random(20261122)
    await build_world(sqlite_url, rng)
    await build_world(postgres_url, random.Random(20261122))  # the same draws: the same world
    careful_db, pg_db = Database(sqlite_url), Database(postgres_url)
    careful_conn, pg_conn = careful_db.connect_sqlite(), await asyncpg.connect(pg_db.driver_dsn())
    careful, pg = CarefulOnly(careful_db.engine.dialect), PostgresBatchSql(pg_db.engine.dialect)
    taken = count_all_new(pg)
    try:
        for n, group in enumerate(groups(rng, 250)):
            received = DAY + dt.timedelta(days=1, seconds=n)
            expected = careful.run(careful_conn, plan_readings(careful, group, received))
            results = await pg.run(pg_conn, plan_readings(pg, group, received))
            assert results == expected, n
            assert await orm_dump(pg_db) == await orm_dump(careful_db), n
        assert 25 < sum(taken) < 200, taken  # both paths were exercised
        tables = await orm_dump(pg_db)
        assert {row[3] for row in tables["reading"]} == {"grid", "dg"}
        assert tables["command"] and tables["conflict"]
    finally:
        careful_conn.close()
        await pg_conn.close()
        await careful_db.dispose()
        await pg_db.dispose()
