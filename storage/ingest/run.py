"""Recording a group of readings on each dialect's own connection (`storage.ingest.sql`'s
statements), and the executors that give the group-commit writer one such connection.

Each group runs on the writer's own connection, off the gateway's event loop:
- SQLite: a plain `sqlite3` connection in one worker thread runs the whole group, BEGIN
  IMMEDIATE to COMMIT, in one call. Through aiosqlite every statement would be a thread hop
  whose reply waits for the busy event loop to come round (measured: ten hops per commit made a
  12.6 ms commit cycle out of 2 ms of work).
- PostgreSQL: an asyncpg connection driven by its own event loop in its own thread. A group is
  two round trips: the load (which also empties the previous group's working rows), then the
  parameterless statements, prepared once per connection, as one script of EXECUTEs from BEGIN
  to COMMIT; a third reads the results when some reading was not simply stored (after the
  commit: if that read fails, the group is reported failed although it was stored, and a
  client's retry is answered "Duplicate reading", as after a crash).

Values cross into the statements in integer units (watt-hours) and the driver's time type
(integer microseconds on SQLite, as `storage.db.types.UtcTime` stores them; aware datetimes on
PostgreSQL).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import itertools
import sqlite3
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Dialect

from storage.calendar import HALF_HOUR
from storage.db.engine import Database
from storage.db.models import Reading
from storage.ingest.readings import DUPLICATE, RETIRED, STORED, UNKNOWN, NewReading, Outcome, ReadingResult
from storage.ingest.rules import OutcomeCode, table_of
from storage.ingest.sql import IngestStatements
from storage.ops.wal import WalCheckpointer

if TYPE_CHECKING:  # PostgreSQL only (the `postgres` extra): imported where it is used
    import asyncpg

TimeToDriver = Callable[[dt.datetime], Any]


def time_to_driver(dialect: Dialect) -> TimeToDriver:
    """How a UTC instant is bound on this dialect (the stored form of `UtcTime`)."""
    time_type = table_of(Reading).c.interval_start.type
    bind: TimeToDriver = time_type.dialect_impl(dialect).bind_processor(dialect)
    return bind


class Group:
    """A group of readings as the load statements take it: its columns (place, meter, start,
    end, Wh, source, scope) and (scope, site) pairs; scope 0 may touch any site, scope n only
    the sites paired with n. `repeats`: some (meter, interval) comes more than once;
    `one_each`: each meter comes once.

    Built column by column with built-ins (`zip`, `map`, `set`): a loop of Python statements per
    reading cost as much as a statement of SQL.
    """

    __slots__ = ("columns", "one_each", "repeats", "scopes", "size")

    def __init__(self, readings: list[NewReading], to_driver: TimeToDriver) -> None:
        self.size = len(readings)
        meter_nos, starts, whs, sources, site_sets = zip(*readings, strict=True) if readings else ((),) * 5
        ends = {start: to_driver(start + HALF_HOUR) for start in set(starts)}  # a group has few intervals
        bound = {start: to_driver(start) for start in ends}
        numbers: dict[frozenset[str] | None, int] = {None: 0}
        self.scopes: list[tuple[int, str]] = []
        for sites in set(site_sets) - {None}:
            numbers[sites] = len(numbers)
            self.scopes.extend((numbers[sites], site) for site in sorted(sites))
        self.columns: tuple[Sequence[Any], ...] = (
            range(self.size),
            meter_nos,
            list(map(bound.__getitem__, starts)),
            list(map(ends.__getitem__, starts)),
            whs,
            sources,
            list(map(numbers.__getitem__, site_sets)),
        )
        self.one_each = len(set(meter_nos)) == self.size
        self.repeats = not self.one_each and len(set(zip(meter_nos, starts, strict=True))) < self.size

    def rows(self, first: int, last: int) -> list[Any]:
        """The parameters of readings `first` to `last` (excluded), row after row."""
        return list(itertools.chain.from_iterable(zip(*(column[first:last] for column in self.columns), strict=True)))

    def steps(self, statements: IngestStatements) -> tuple[str, ...]:
        """The statements that record this group once it is loaded: classify, then record (the
        lighter variants where the group allows them)."""
        classify = statements.classify if self.repeats else statements.classify_once_each
        return (classify, *(statements.record_one_each if self.one_each else statements.record))


def results_of(size: int, rows: list[Any]) -> list[ReadingResult]:
    """Every reading's result: stored, except those `rows` (place, outcome, kept Wh) name."""
    results = [STORED] * size
    for idx, outcome, kept_wh in rows:
        if outcome == OutcomeCode.DUPLICATE:
            results[idx] = DUPLICATE
        elif outcome == OutcomeCode.CONFLICT:
            results[idx] = ReadingResult(Outcome.CONFLICT, stored_kwh=Decimal(kept_wh).scaleb(-3))
        elif outcome == OutcomeCode.UNKNOWN_METER:
            results[idx] = UNKNOWN
        else:
            results[idx] = RETIRED
    return results


# SQLite

LOAD_ROWS = 100  # readings per load statement: 700 parameters, under every SQLite's limit (999 before 3.32)
LOAD_COLUMNS = "idx, meter_no, interval_start, interval_end, wh, source, scope"


@functools.cache
def sqlite_load(rows: int) -> str:
    """The statement that loads `rows` readings (1 to LOAD_ROWS) into `ingest_incoming`.

    One statement per group size, with a row of parameters per reading (prepared once per size,
    then kept in the connection's statement cache): measured against reading one JSON parameter
    with `json_each` (SQLite parses each row's JSON once per column) and against `executemany`
    (a step per row), about half the CPU for a 30-reading group and for 1,000 readings.
    """
    return f"INSERT INTO ingest_incoming ({LOAD_COLUMNS}) VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * rows)


def load_on_sqlite(conn: sqlite3.Connection, group: Group) -> None:
    """Insert the group's readings into `ingest_incoming`, LOAD_ROWS at a time."""
    for first in range(0, group.size, LOAD_ROWS):
        last = min(first + LOAD_ROWS, group.size)
        conn.execute(sqlite_load(last - first), group.rows(first, last))


def prepare_sqlite(conn: sqlite3.Connection, statements: IngestStatements) -> None:
    """Create the working tables on this connection (once per connection)."""
    for statement in statements.create_tables:
        conn.execute(statement)


def record_on_sqlite(
    conn: sqlite3.Connection,
    statements: IngestStatements,
    to_driver: TimeToDriver,
    readings: list[NewReading],
    received_at: dt.datetime,
) -> list[ReadingResult]:
    """Record a group in one transaction on a connection through `prepare_sqlite`."""
    group = Group(readings, to_driver)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("INSERT INTO ingest_group (received_at) VALUES (?)", (to_driver(received_at),))
        conn.executemany("INSERT INTO ingest_scope (scope, site_id) VALUES (?, ?)", group.scopes)
        load_on_sqlite(conn, group)
        for statement in group.steps(statements):
            conn.execute(statement)
        results = results_of(len(readings), conn.execute(statements.results).fetchall())
        for statement in statements.clear:
            conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return results


# PostgreSQL

POSTGRES_LOAD = """
WITH w AS (DELETE FROM ingest_work), c AS (DELETE FROM ingest_charged), g AS (DELETE FROM ingest_group),
s AS (DELETE FROM ingest_scope), i AS (DELETE FROM ingest_incoming),
scoped AS (
    INSERT INTO ingest_scope (scope, site_id) SELECT * FROM unnest($8::int[], $9::varchar[])
), grouped AS (
    INSERT INTO ingest_group (received_at) VALUES ($10)
)
INSERT INTO ingest_incoming (idx, meter_no, interval_start, interval_end, wh, source, scope)
SELECT * FROM unnest($1::int[], $2::bigint[], $3::timestamptz[], $4::timestamptz[], $5::bigint[],
    $6::varchar[], $7::int[])
"""


# How the writer's own connection plans (its statements only touch a group's rows):
# - nested loops only: a group's meters and readings are looked up by key. The planner knows the
#   working tables' sizes only roughly, and it chose to hash every meter for a group of a
#   thousand (on a table bloated by updates, 110 ms before its first row).
# - no JIT: the statements' estimated costs (a subquery per reading) crossed `jit_above_cost`,
#   and compiling them took ~90 ms of a 1,000-reading group's 100.
WRITER_SETTINGS = "SET enable_hashjoin = off; SET enable_mergejoin = off; SET jit = off"


# Readings recorded between vacuums of the working tables. Each group deletes the last one's
# rows, and a temp table's dead rows stay until a vacuum (autovacuum skips temp tables): the
# planner sizes these tables by their pages, so as they grew it misjudged them (it walked all
# 10,000 meters to update a group's 63). A vacuum takes about a millisecond.
VACUUM_AFTER_READINGS = 2000


@functools.cache
def prepared_names(statements: IngestStatements) -> dict[str, str]:
    """Each statement of a group's script, and the name it is prepared under (`prepare_postgres`).

    Prepared once, each is planned once per connection (again only when a table it reads
    changes, say when autovacuum analyses `meter`), not at every group: planning was most of
    what classifying a group of single packets cost.
    """
    texts = (
        statements.lock,
        statements.classify,
        statements.classify_once_each,
        *statements.record,
        *statements.record_one_each,
        statements.results,
    )
    return {text: f"ingest_{n}" for n, text in enumerate(dict.fromkeys(text for text in texts if text))}


async def prepare_postgres(conn: asyncpg.Connection, statements: IngestStatements) -> None:
    """Create the working tables on this connection and prepare the group's statements (once
    per connection).

    The tables are analysed once, empty: never-analysed tables are planned as at least 10 pages
    (about a thousand rows), and the planner then chose to scan every meter and every reading
    for a group of a few (measured: 7.5 ms instead of 0.2). Analysed, they are planned at their size.
    """
    await conn.execute(WRITER_SETTINGS)
    for statement in statements.create_tables:
        await conn.execute(statement)
    await conn.execute(statements.analyze)
    for text, name in prepared_names(statements).items():
        await conn.execute(f"PREPARE {name} AS {text}")


async def record_on_postgres(
    conn: asyncpg.Connection,
    statements: IngestStatements,
    readings: list[NewReading],
    received_at: dt.datetime,
) -> list[ReadingResult]:
    """Record a group in one transaction on a connection through `prepare_postgres`."""
    group = Group(readings, _identity)
    # The group's rows go into the connection's own temp tables: they need no transaction.
    scopes = [[scope for scope, _ in group.scopes], [site for _, site in group.scopes]]
    await conn.execute(POSTGRES_LOAD, *(list(column) for column in group.columns), *scopes, received_at)
    names = prepared_names(statements)
    lock = (statements.lock,) if statements.lock else ()
    steps = ("BEGIN", *(f"EXECUTE {names[text]}" for text in (*lock, *group.steps(statements))), "COMMIT")
    try:
        # No parameters: one round trip for all of them. The script ends with the results query,
        # whose status ("SELECT n") says how many readings were not simply stored: usually none,
        # and then there is nothing more to ask.
        status = await conn.execute(";\n".join((*steps, f"EXECUTE {names[statements.results]}")))
    except BaseException:
        if not conn.is_closed() and conn.is_in_transaction():
            await conn.execute("ROLLBACK")
        raise
    if status == "SELECT 0":
        return [STORED] * len(readings)
    return results_of(len(readings), await conn.fetch(statements.results))


def _identity(moment: dt.datetime) -> dt.datetime:
    return moment


# Executors: the writer's connection and thread.


class IngestExecutor(Protocol):
    """Records groups on the writer's own connection."""

    async def record(self, readings: list[NewReading], received_at: dt.datetime) -> list[ReadingResult]:
        """The group's results, committed."""

    async def close(self) -> None:
        """Close the connection and threads."""


class SqliteExecutor:
    """Records groups on a dedicated `sqlite3` connection in one worker thread; a
    `WalCheckpointer` copies the WAL into the database after commits (not inside them)."""

    def __init__(self, db: Database) -> None:
        dialect = db.engine.dialect
        self._statements = IngestStatements.compile(dialect)
        self._to_driver = time_to_driver(dialect)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._conn: sqlite3.Connection = self._thread.submit(db.connect_sqlite).result()
        self._conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's job
        prepare_sqlite(self._conn, self._statements)
        self._checkpointer = WalCheckpointer(db)

    def _record(self, readings: list[NewReading], received_at: dt.datetime) -> list[ReadingResult]:
        try:
            return record_on_sqlite(self._conn, self._statements, self._to_driver, readings, received_at)
        finally:
            self._checkpointer.nudge()

    async def record(self, readings: list[NewReading], received_at: dt.datetime) -> list[ReadingResult]:
        """The group's results, committed."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._record, readings, received_at)

    async def close(self) -> None:
        """Close the connection and the threads."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self._conn.close)
        self._thread.shutdown()
        await asyncio.to_thread(self._checkpointer.close)


class PostgresExecutor:
    """Records groups on a dedicated asyncpg connection, driven by its own event loop in its own
    thread (the gateway's loop hands over a group and gets the results back once)."""

    def __init__(self, db: Database) -> None:
        self._statements = IngestStatements.compile(db.engine.dialect)
        self._dsn = db.driver_dsn()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="postgres-writer", daemon=True)
        self._thread.start()
        self._conn: asyncpg.Connection | None = None
        self._since_vacuum = 0  # readings recorded since the working tables were last vacuumed

    def _in_thread(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def _record_here(self, readings: list[NewReading], received_at: dt.datetime) -> list[ReadingResult]:
        if self._conn is None or self._conn.is_closed():  # first use, or the server went away
            import asyncpg  # the plain install (SQLite only) has no asyncpg

            self._conn = await asyncpg.connect(self._dsn)
            await prepare_postgres(self._conn, self._statements)
        results = await record_on_postgres(self._conn, self._statements, readings, received_at)
        self._since_vacuum += len(readings)
        if self._since_vacuum >= VACUUM_AFTER_READINGS:
            await self._conn.execute(self._statements.vacuum)
            self._since_vacuum = 0
        return results

    async def record(self, readings: list[NewReading], received_at: dt.datetime) -> list[ReadingResult]:
        """The group's results, committed."""
        results: list[ReadingResult] = await self._in_thread(self._record_here(readings, received_at))
        return results

    async def close(self) -> None:
        """Close the connection, stop the loop and the thread."""
        if self._conn is not None:
            await self._in_thread(self._conn.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join)
        self._loop.close()


def executor_for(db: Database) -> IngestExecutor:
    """The executor for this database's dialect."""
    return SqliteExecutor(db) if db.is_sqlite else PostgresExecutor(db)
