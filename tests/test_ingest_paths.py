"""Every group is recorded by one set-based path built from `storage.ingest.rules`; the old careful
path, reading by reading in Python, is the reference model (`tests/ingest_reference.py`). This
test feeds the same random groups (DG sites with ON/OFF history, two changes at one instant,
explicit sources, auto-cut sites, low balances, a disconnected meter, retired and unknown meters,
bulk meters that are never billed (an incomer on the DG site and on the auto-cut site, a DG's meter),
scoped keys, repeats and conflicts within a group and against stored readings) to two copies of
one world, one recorded by each dialect's statements and one by the model, and compares results
and tables after every group.

Deliberate mistakes: `MUTANTS` seeds one mistake at a time into the compiled SQLite statements
(a rounding, a tie-break, a cut condition, a classification order ...) and checks that the same
comparison catches each one, so that the comparison is known to be able to fail.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import shutil
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select, update
from sqlalchemy.dialects import sqlite

from storage.calendar import HALF_HOUR
from storage.db.engine import Database
from storage.db.models import Command, DgStatusChange, Meter, Reading, ReadingConflict, Site, Tariff
from storage.ingest.readings import NewReading, Outcome, ReadingResult
from storage.ingest.run import (
    LOAD_ROWS,
    Group,
    prepare_postgres,
    prepare_sqlite,
    record_on_postgres,
    record_on_sqlite,
    time_to_driver,
)
from storage.ingest.sql import IngestStatements
from storage.registry import dgs
from storage.registry import meters as meter_registry
from storage.registry import sites as site_registry
from storage.registry.meters import retire_meter
from tests.conftest import _truncate_all
from tests.ingest_reference import record_reference

DAY = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
STARTS = [DAY + i * HALF_HOUR for i in range(48)]
METERS = {"DGS": range(1, 15), "CUT": range(21, 34), "PLAIN": range(41, 47)}
# Bulk meters (storage/registry/meter_roles.py): read like any other, never charged nor cut.
BULK = {13: ("incomer", None), 14: ("dg", "DG1"), 33: ("incomer", None)}
RETIRED, UNKNOWN = 46, 999
FREE_AT_ZERO = 21  # an auto-cut meter at the cut threshold whose first reading costs nothing: no cut
SUPPLY_OFF = 22  # an auto-cut meter at the threshold already disconnected: no cut either
EXACT = 23  # an auto-cut meter whose first reading takes it to exactly -grace: cut
CUT_SENT = 24  # an auto-cut meter at zero balance whose cut is already sent: no second cut
OPENING = {FREE_AT_ZERO: "-2.00", SUPPLY_OFF: "-2.00", EXACT: "7.99", CUT_SENT: "0.00"}
GRACE = Decimal("2.00")  # the auto-cut site's grace: cut at or below -2.00
# Tariff changes within the day, at an interval's start and within one (each reading is charged
# at the row in force at its interval's start, whenever it arrives).
TARIFF_CHANGES = [
    ("DGS", DAY + 26 * HALF_HOUR, "9.00", "25.50"),
    ("PLAIN", DAY + 10 * HALF_HOUR + dt.timedelta(minutes=7), "7.77", "20.00"),
]
TABLES = {
    "reading": "SELECT meter_no, interval_start, kwh, source, charge, dg_kwh, dg_charge, received_at FROM reading "
    "ORDER BY 1, 2",
    "meter": "SELECT meter_no, balance, grid_kwh, dg_kwh, last_reading_at FROM meter ORDER BY 1",
    "command": "SELECT meter_no, action, reason, state FROM command ORDER BY meter_no, id",
    "conflict": "SELECT meter_no, interval_start, stored_kwh, offered_kwh FROM reading_conflict ORDER BY 1, 2",
}


# The same tables read through the ORM: values in Python's terms (Decimal, aware datetimes), so
# that a SQLite database and a PostgreSQL one compare.
ORM_TABLES = {
    "reading": select(
        Reading.meter_no,
        Reading.interval_start,
        Reading.kwh,
        Reading.source,
        Reading.charge,
        Reading.dg_kwh,
        Reading.dg_charge,
        Reading.received_at,
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


async def build_world(url: str, rng: random.Random) -> None:
    db = Database(url)
    try:
        await site_registry.add_site(
            db, site_id="DGS", name="With DG", region="R", tariff_grid=Decimal("8.00"), tariff_dg=Decimal("21.35")
        )
        await site_registry.add_site(
            db, site_id="CUT", name="Cuts", region="R", tariff_grid=Decimal("9.99"), auto_cut=True
        )
        await site_registry.add_site(db, site_id="PLAIN", name="Plain", region="R", tariff_grid=Decimal("7.13"))
        for dg_no in ("DG1", "DG2"):
            await dgs.add_dg(db, site_id="DGS", dg_no=dg_no)
        for site, meters in METERS.items():
            for meter_no in meters:
                balance = Decimal(OPENING.get(meter_no) or rng.choice(["0.00", "0.40", "3.00", "250.00"]))
                role, dg_no = BULK.get(meter_no, ("flat", None))
                await meter_registry.add_meter(
                    db,
                    meter_no=meter_no,
                    site_id=site,
                    unit_no=f"U{meter_no}",
                    balance=balance if role == "flat" else Decimal(0),
                    role=role,
                    dg_no=dg_no,
                )
        await retire_meter(db, meter_no=RETIRED)
        async with db.transaction() as session:
            await session.execute(update(Meter).where(Meter.meter_no == SUPPLY_OFF).values(relay_on=False))
            await session.execute(update(Site).where(Site.id == "CUT").values(grace_amount=GRACE))
            for site_id, start, grid, dg in TARIFF_CHANGES:
                session.add(
                    Tariff(site_id=site_id, effective_from=start, grid=Decimal(grid), dg=Decimal(dg), created_at=DAY)
                )
            session.add(Command(meter_no=CUT_SENT, action="cut", reason="zero balance", state="sent"))
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
        elif roll < 0.10 and group:
            # A repeat within the group, of the same value or another (judged against the first).
            meter_no, start, first_wh, *_ = rng.choice(group)
            wh = rng.choice([first_wh, first_wh + 7])
        source = rng.choice([None, None, None, "grid", "dg"])
        sites = rng.choice([None, None, frozenset({"DGS", "CUT", "PLAIN"}), frozenset({"CUT"})])
        group.append(NewReading(meter_no, start, wh, source, sites))
        stored.setdefault((meter_no, start), wh)
    return group


def groups(rng: random.Random, count: int) -> Iterator[list[NewReading]]:
    """`count` groups: first the cut cases (a free reading at zero balance, a reading to exactly
    zero, one while a cut is already sent), then random ones."""
    first = [
        NewReading(FREE_AT_ZERO, STARTS[0], 0),
        NewReading(EXACT, STARTS[0], 1000),
        NewReading(CUT_SENT, STARTS[0], 500),
    ]
    stored: dict[tuple[int, dt.datetime], int] = {(r.meter_no, r.interval_start): r.wh for r in first}
    yield first
    for _ in range(count - 1):
        yield random_group(rng, stored)


def dump(conn: sqlite3.Connection) -> dict[str, list[tuple[object, ...]]]:
    return {name: conn.execute(query).fetchall() for name, query in TABLES.items()}


class SqliteWorlds:
    """Two copies of one world: one recorded by the statements, one by the reference model."""

    def __init__(self, url: str, tmp_path: Path, statements: IngestStatements) -> None:
        path = Path(url.removeprefix("sqlite+aiosqlite:///"))
        shutil.copy(path, tmp_path / "reference.db")
        self.db = Database(url)
        self.conn, self.reference = (
            self.db.connect_sqlite(),
            sqlite3.connect(tmp_path / "reference.db", isolation_level=None),
        )
        self.statements = statements
        self.outcomes: set[Outcome] = set()
        self.last_results: list[ReadingResult] = []  # of the last group recorded
        self.to_driver = time_to_driver(self.db.engine.dialect)
        prepare_sqlite(self.conn, statements)

    def first_difference(self, groups: Iterator[list[NewReading]]) -> str | None:
        """Record each group in both worlds; where they first differ (or an error), else None."""
        for n, group in enumerate(groups):
            received = DAY + dt.timedelta(days=1, seconds=n)
            expected = record_reference(self.reference, group, received)
            try:
                results = record_on_sqlite(self.conn, self.statements, self.to_driver, group, received)
            except sqlite3.Error as exc:
                return f"group {n}: {exc}"
            if results != expected:
                return f"group {n}: results {results} != {expected}"
            self.last_results = results
            self.outcomes.update(result.outcome for result in results)
            tables, reference = dump(self.conn), dump(self.reference)
            if tables != reference:
                return f"group {n}: " + ", ".join(name for name in tables if tables[name] != reference[name])
        return None

    async def close(self) -> None:
        self.conn.close()
        self.reference.close()
        await self.db.dispose()


async def test_sqlite_statements_leave_what_the_reference_model_leaves(tmp_path: Path, sqlite_url: str) -> None:
    rng = random.Random(20261122)
    await build_world(sqlite_url, rng)
    worlds = SqliteWorlds(sqlite_url, tmp_path, IngestStatements.compile(sqlite.dialect()))
    try:
        drawn = list(groups(rng, 300))
        assert worlds.first_difference(iter(drawn)) is None
        assert worlds.outcomes == set(Outcome)  # every outcome was met
        # Every variant of the statements was run: with and without repeats, each meter once.
        shapes = {(g.repeats, g.one_each) for g in (Group(r, worlds.to_driver) for r in drawn)}
        assert shapes == {(True, False), (False, False), (False, True)}
        tables = dump(worlds.conn)
        assert {row[3] for row in tables["reading"]} == {"grid", "dg", "mix"}
        assert tables["command"] and tables["conflict"]
        bulk = [row for row in tables["reading"] if row[0] in BULK]
        assert {row[0] for row in bulk if row[2] > 0} == set(BULK)  # read, with energy ...
        assert {row[4] for row in bulk} == {0}  # ... never charged
        assert not [row for row in tables["command"] if row[0] in BULK]
    finally:
        await worlds.close()


async def test_a_group_of_several_load_statements_leaves_what_the_reference_model_leaves(
    tmp_path: Path, sqlite_url: str
) -> None:
    """SQLite loads a group LOAD_ROWS readings per statement: a group of more than two statements'
    worth, with repeats, conflicts and unknown meters past the first statement, is judged and
    recorded reading by reading as the reference model does (each result at its own place)."""
    rng = random.Random(20261205)
    await build_world(sqlite_url, rng)
    worlds = SqliteWorlds(sqlite_url, tmp_path, IngestStatements.compile(sqlite.dialect()))
    try:
        stored: dict[tuple[int, dt.datetime], int] = {}
        earlier = [random_group(rng, stored) for _ in range(10)]
        big: list[NewReading] = []
        while len(big) <= 2 * LOAD_ROWS:
            big += random_group(rng, stored)
        assert worlds.first_difference(iter([*earlier, big])) is None
        assert len(worlds.last_results) == len(big)
        assert {r.outcome for r in worlds.last_results[LOAD_ROWS:]} - {Outcome.STORED}
    finally:
        await worlds.close()


# One seeded mistake each: (what it gets wrong, SQL as compiled, the mistake). Each must be caught.
MUTANTS = [
    ("charge rounds half down", "+ 500) / 1000", "+ 499) / 1000"),
    ("tariffs swapped", "judged.grid_paise + 500", "judged.dg_paise + 500"),
    ("tariff in force strictly before the interval", "tariff_grid.effective_from <=", "tariff_grid.effective_from <"),
    (
        "tariff at its first row, not its latest",
        "ORDER BY tariff_grid.effective_from DESC",
        "ORDER BY tariff_grid.effective_from",
    ),
    ("DG tie-break: OFF wins", "state.status DESC", "state.status ASC"),
    ("DG state in force: strictly before the start", "state.at <= distinct_slots", "state.at < distinct_slots"),
    (
        "DG pieces after a change ignored",
        "THEN CAST(ROUND((coalesce((SELECT min(next_cut.at)",
        "THEN 0 * CAST(ROUND((coalesce((SELECT min(next_cut.at)",
    ),
    ("DG pieces counted per change, not per instant", "AND same_instant.id < cut.id", "AND same_instant.id < 0"),
    ("DG share rounds down", "+ 900) / 1800", "+ 0) / 1800"),
    (
        "explicit source ignored",
        "WHEN (ingest_incoming.source = 'dg') THEN",
        "WHEN (ingest_incoming.source = 'none') THEN",
    ),
    ("cut only below -grace", "meter.balance <= -site.grace_amount", "meter.balance < -site.grace_amount"),
    ("grace ignored", "meter.balance <= -site.grace_amount", "meter.balance <= 0"),
    (
        "cut after a free reading",
        "WHERE ingest_charged.meter_no = meter.meter_no) > 0",
        "WHERE ingest_charged.meter_no = meter.meter_no) >= 0",
    ),
    ("cut while disconnected", "meter.relay_on = 1 AND ", ""),
    (
        "bulk meters billed",
        "CASE WHEN (meter.role = 'flat') THEN slots.grid_paise",
        "CASE WHEN (meter.role IS NOT NULL) THEN slots.grid_paise",
    ),
    ("a sent cut not counted as pending", "pending.state IN ('requested', 'sent')", "pending.state IN ('requested')"),
    (
        "retired judged before unknown",
        "CASE WHEN (NOT (meter.meter_no IS NOT NULL AND",
        "CASE WHEN meter.active = 0 THEN 1 WHEN (NOT (meter.meter_no IS NOT NULL AND",
    ),
    ("retired answered as unknown", "WHEN meter.active = 0 THEN 1 ELSE 2", "WHEN meter.active = 0 THEN 0 ELSE 2"),
    ("caller's sites ignored", "ingest_incoming.scope = 0 OR", "ingest_incoming.scope >= 0 OR"),
    ("a repeat judged against the group's last", "ORDER BY judged.idx)", "ORDER BY judged.idx DESC)"),
    (
        "duplicate and conflict swapped",
        "THEN CASE WHEN (judged.wh = judged.stored_wh) THEN 1 ELSE 2",
        "THEN CASE WHEN (judged.wh = judged.stored_wh) THEN 2 ELSE 1",
    ),
    ("DG energy on the grid register", "ingest_work.wh - ingest_work.dg_wh", "ingest_work.wh"),
    ("DG part of the charge not recorded", "ingest_work.dg_charge AS", "0 AS"),
    ("balance credited", "meter.balance - ingest_charged.charge", "meter.balance + ingest_charged.charge"),
    (
        "last reading time moves back",
        "meter.last_reading_at < ingest_charged.last_end",
        "meter.last_reading_at > ingest_charged.last_end",
    ),
    ("a meter's readings not summed", "sum(ingest_work.charge)", "max(ingest_work.charge)"),
    ("conflict keeps the offered value", "coalesce(judged.stored_wh, first_value", "coalesce(judged.wh, first_value"),
]


def mutated(statements: IngestStatements, wrong: str, mistake: str) -> IngestStatements:
    """The statements with one mistake seeded (the text must be there: a stale mutant fails)."""
    assert any(wrong in sql for sql in (statements.classify, *statements.record)), f"mutant does not apply: {wrong!r}"
    return dataclasses.replace(
        statements,
        classify=statements.classify.replace(wrong, mistake),
        classify_once_each=statements.classify_once_each.replace(wrong, mistake),
        record=tuple(sql.replace(wrong, mistake) for sql in statements.record),
        record_one_each=tuple(sql.replace(wrong, mistake) for sql in statements.record_one_each),
    )


@pytest.mark.parametrize(("mistake", "wrong", "seeded"), MUTANTS, ids=[m[0] for m in MUTANTS])
async def test_the_comparison_catches_a_seeded_mistake(
    tmp_path: Path, sqlite_url: str, mistake: str, wrong: str, seeded: str
) -> None:
    rng = random.Random(20261122)
    await build_world(sqlite_url, rng)
    worlds = SqliteWorlds(sqlite_url, tmp_path, mutated(IngestStatements.compile(sqlite.dialect()), wrong, seeded))
    try:
        assert worlds.first_difference(groups(rng, 300)) is not None, f"not caught: {mistake}"
    finally:
        await worlds.close()


async def orm_dump(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    async with db.transaction() as session:
        return {name: [tuple(row) for row in await session.execute(query)] for name, query in ORM_TABLES.items()}


async def test_postgres_statements_leave_what_the_reference_model_leaves_on_sqlite(
    sqlite_url: str, postgres_url: str
) -> None:
    await _truncate_all(postgres_url)
    rng = random.Random(20261122)
    await build_world(sqlite_url, rng)
    await build_world(postgres_url, random.Random(20261122))  # the same draws: the same world
    reference_db, pg_db = Database(sqlite_url), Database(postgres_url)
    reference, pg_conn = reference_db.connect_sqlite(), await asyncpg.connect(pg_db.driver_dsn())
    statements = IngestStatements.compile(pg_db.engine.dialect)
    await prepare_postgres(pg_conn, statements)
    try:
        for n, group in enumerate(groups(rng, 300)):
            received = DAY + dt.timedelta(days=1, seconds=n)
            expected = record_reference(reference, group, received)
            results = await record_on_postgres(pg_conn, statements, group, received)
            assert results == expected, n
            assert await orm_dump(pg_db) == await orm_dump(reference_db), n
        tables = await orm_dump(pg_db)
        assert {row[3] for row in tables["reading"]} == {"grid", "dg", "mix"}
        assert tables["command"] and tables["conflict"]
    finally:
        reference.close()
        await pg_conn.close()
        await reference_db.dispose()
        await pg_db.dispose()
