"""The statements of a readings plan (`storage.ingest.plan_readings`), one class per dialect.

Set-based: a group commit of thousands of readings costs a handful of statements. Lookups take
the whole batch as one parameter (a JSON array read with `json_each` on SQLite, typed arrays
read with `unnest` on PostgreSQL); writes on SQLite are `executemany`, bound row by row in C.

How they run is what makes group commit fast (measured in bench/ingest.py):
- SQLite: the writer's own `sqlite3` connection runs the whole plan, BEGIN IMMEDIATE to
  COMMIT, in one call on its worker thread. Through aiosqlite every statement is a thread hop
  whose reply waits for the busy event loop to come round; ten hops per commit made a
  12.6 ms commit cycle out of 2 ms of work.
- SQLite, the common case: a group whose readings are all new, for known active meters in the
  caller's sites, is stored by `store_if_all_new` in a handful of set-based statements with no
  Python per reading (source, charge, registers, balances and cuts are computed in SQL). If any
  reading is not new (a retry, a conflict, an unknown meter) it rolls back to a savepoint and
  the plan takes the careful path, reading by reading.
- PostgreSQL: the writer's own asyncpg connection. The all-new step is one statement that
  commits alone (`storage.all_new_sql`); otherwise the plan's statements are awaited in one
  transaction. Either way meters are locked FOR UPDATE in meter order, so several gateway
  processes never deadlock and each sees the other's committed readings.

The plan computes in integer units (watt-hours, paise): exact, and several times faster than
Decimal. Values cross this boundary in the driver's own representation ("raw": those integer
units and naive UTC text on SQLite, Decimal and aware datetimes on PostgreSQL), the stored form
of `storage.models`' column types, which the ORM reads and writes everywhere else.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable, Generator
from decimal import Decimal
from typing import Any, NamedTuple, TypeVar

import orjson
from sqlalchemy import Dialect

from storage.all_new_sql import (
    CUT_CHARGED,
    INCOMING_TABLES,
    INSERT_INCOMING,
    PG_STORE_ALL_NEW,
    PRICE_INCOMING,
    SUM_CHARGED,
    UPDATE_CHARGED,
    NotAllNew,
)
from storage.models import Energy, Money, Reading

Raw = Any
R = TypeVar("R")
PlanOf = Generator[tuple[str, tuple[Any, ...]], Any, R]


class MeterRow(NamedTuple):
    """What recording a reading needs to know of its meter, locked for the transaction.

    A NamedTuple, not a dataclass: thousands are made per group commit. `raw_balance` stays in
    the driver's representation (it is only compared with raw charges).
    """

    site_id: str
    active: bool
    raw_balance: Raw
    relay_on: bool
    tariff_grid: int  # paise per kWh
    tariff_dg: int
    auto_cut: bool
    site_has_dg: bool


METER_COLUMNS = """m.meter_no, m.site_id, m.active, m.balance, m.relay_on, s.tariff_grid, s.tariff_dg,
    s.auto_cut, EXISTS (SELECT 1 FROM dg WHERE dg.site_id = m.site_id)"""


class BatchSql:
    """Conversions shared by both dialects; the statements are in the subclasses."""

    has_all_new_path = False  # whether `store_if_all_new` exists

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.is_sqlite = dialect.name == "sqlite"
        time_type = Reading.__table__.c.interval_start.type  # type: ignore[attr-defined]
        self.time: Callable[[dt.datetime], Raw] = time_type.dialect_impl(dialect).bind_processor(dialect)

    def energy(self, wh: int) -> Raw:
        """Watt-hours in the driver's representation of an Energy column."""
        return wh if self.is_sqlite else Decimal(wh).scaleb(-Energy.scale)

    def money(self, paise: int) -> Raw:
        """Paise in the driver's representation of a Money column."""
        return paise if self.is_sqlite else Decimal(paise).scaleb(-Money.scale)

    def kwh(self, raw: Raw) -> Decimal:
        """kWh (Decimal) from an Energy column's raw value."""
        return Energy.process_result_value(raw, self.dialect)  # type: ignore[return-value]

    def paise(self, raw: Raw) -> int:
        """Paise from a Money column's raw value."""
        return raw if self.is_sqlite else int(raw.scaleb(Money.scale))

    def meter_rows(self, rows: list[Any]) -> dict[int, MeterRow]:
        """meter_no → MeterRow from METER_COLUMNS rows."""
        # A site's tariffs repeat on every meter: convert each distinct value once.
        paise = {raw: self.paise(raw) for raw in {r[5] for r in rows} | {r[6] for r in rows}}
        return {r[0]: MeterRow(r[1], r[2], r[3], r[4], paise[r[5]], paise[r[6]], r[7], r[8]) for r in rows}


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


class SqliteBatchSql(BatchSql):
    """SQLite statements on a plain `sqlite3` connection."""

    has_all_new_path = True

    def prepare(self, conn: sqlite3.Connection) -> None:
        """Create the all-new path's working tables on this connection."""
        for statement in INCOMING_TABLES:
            conn.execute(statement)

    def store_if_all_new(
        self,
        conn: sqlite3.Connection,
        rows: list[tuple[Raw, ...]],
        scopes: list[tuple[int, str]],
        received_at: Raw,
        cut_reason: str,
    ) -> bool:
        """Store (meter, start, end, Wh, source, scope) readings with all their effects if
        every one is new and allowed; otherwise change nothing and return False. The connection
        must have been through `prepare`."""
        conn.execute("SAVEPOINT all_new")
        try:
            conn.executemany("INSERT INTO temp.scope VALUES (?, ?)", scopes)
            # One JSON parameter rather than executemany: SQLite then reads the rows without
            # the GIL, which binding row by row holds while the event loop needs it.
            priced = conn.execute(PRICE_INCOMING, (_json(rows),)).rowcount
            if priced != len(rows) or conn.execute(INSERT_INCOMING, (received_at,)).rowcount != len(rows):
                conn.execute("ROLLBACK TO all_new")  # also empties the temp tables
                return False
            conn.execute(SUM_CHARGED)
            conn.execute(UPDATE_CHARGED)
            conn.execute(CUT_CHARGED, (cut_reason, received_at))
            conn.execute("DELETE FROM temp.incoming")
            conn.execute("DELETE FROM temp.charged")
            conn.execute("DELETE FROM temp.scope")
        finally:
            conn.execute("RELEASE all_new")
        return True

    def lock_meters(self, conn: sqlite3.Connection, meter_nos: list[int]) -> dict[int, MeterRow]:
        """The batch's meters (the writer's BEGIN IMMEDIATE already excludes other writers)."""
        rows = conn.execute(
            f"SELECT {METER_COLUMNS} FROM json_each(?) AS j "
            "JOIN meter AS m ON m.meter_no = j.value JOIN site AS s ON s.id = m.site_id",
            (_json(meter_nos),),
        ).fetchall()
        return self.meter_rows(rows)

    def existing(self, conn: sqlite3.Connection, keys: list[tuple[int, Raw]]) -> dict[tuple[int, Raw], Raw]:
        """Stored raw kWh of the (meter, raw interval start) keys that already have a reading."""
        rows = conn.execute(
            "SELECT r.meter_no, r.interval_start, r.kwh FROM json_each(?) AS j "
            "JOIN reading AS r ON r.meter_no = j.value ->> 0 AND r.interval_start = j.value ->> 1",
            (_json(keys),),
        )
        return {(m, t): k for m, t, k in rows}

    def dg_history(self, conn: sqlite3.Connection, sites: list[str], first: Raw, end: Raw) -> list[Any]:
        """Per DG of these sites: its state before `first` (time NULL; two changes at one instant: ON),
        then its transitions until `end`."""
        return conn.execute(
            "SELECT d.site_id, d.dg_no, NULL, (SELECT c.status FROM dg_status_change AS c "
            "  WHERE c.site_id = d.site_id AND c.dg_no = d.dg_no AND c.at < ? "
            "  ORDER BY c.at DESC, c.status DESC LIMIT 1) "
            "FROM dg AS d WHERE d.site_id IN (SELECT value FROM json_each(?)) "
            "UNION ALL SELECT c.site_id, c.dg_no, c.at, c.status FROM dg_status_change AS c "
            "WHERE c.site_id IN (SELECT value FROM json_each(?)) AND c.at >= ? AND c.at < ?",
            (first, _json(sites), _json(sites), first, end),
        ).fetchall()

    def insert_readings(self, conn: sqlite3.Connection, rows: list[tuple[Raw, ...]], received_at: Raw) -> None:
        """Insert (meter, start, kwh, source, charge) rows (executemany: bound in C, measured
        1.5× faster than json_each for writes)."""
        conn.executemany(
            "INSERT INTO reading (meter_no, interval_start, kwh, source, charge, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(*row, received_at) for row in rows],
        )

    def update_meters(self, conn: sqlite3.Connection, deltas: list[tuple[Raw, ...]]) -> None:
        """Apply (meter, +grid, +dg, -charge, last reading end) to each meter."""
        conn.executemany(
            "UPDATE meter SET grid_kwh = grid_kwh + ?2, dg_kwh = dg_kwh + ?3, balance = balance - ?4, "
            "last_reading_at = CASE WHEN last_reading_at IS NULL OR last_reading_at < ?5 THEN ?5 "
            "ELSE last_reading_at END WHERE meter_no = ?1",
            deltas,
        )

    def queue_cuts(self, conn: sqlite3.Connection, meter_nos: list[int], reason: str, at: Raw) -> None:
        """A requested cut for each meter that has no cut pending yet."""
        conn.execute(
            "INSERT INTO command (meter_no, action, reason, params, state, result, created_at, updated_at) "
            "SELECT j.value, 'cut', ?, '{}', 'requested', '', ?, ? FROM json_each(?) AS j "
            "WHERE NOT EXISTS (SELECT 1 FROM command AS c WHERE c.meter_no = j.value AND c.action = 'cut' "
            "AND c.state IN ('requested', 'sent'))",
            (reason, at, at, _json(meter_nos)),
        )

    def insert_conflicts(self, conn: sqlite3.Connection, rows: list[tuple[Raw, ...]], received_at: Raw) -> None:
        """Record (meter, start, stored kwh, offered kwh) conflicts."""
        conn.executemany(
            "INSERT INTO reading_conflict (meter_no, interval_start, stored_kwh, offered_kwh, received_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [(*row, received_at) for row in rows],
        )

    def run(self, conn: sqlite3.Connection, plan: PlanOf[R]) -> R:
        """Run a plan in one transaction on this thread (BEGIN IMMEDIATE … COMMIT)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = _drive(plan, lambda name, args: getattr(self, name)(conn, *args))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return result


def _columns(rows: list[tuple[Raw, ...]]) -> list[list[Raw]]:
    return [list(column) for column in zip(*rows, strict=True)]


class PostgresBatchSql(BatchSql):
    """PostgreSQL statements on an asyncpg connection (the batch as arrays for `unnest`)."""

    has_all_new_path = True

    async def store_if_all_new(
        self, conn: Any, rows: list[tuple[Raw, ...]], scopes: list[tuple[int, str]], received_at: Raw, cut_reason: str
    ) -> bool:
        """Store (meter, start, end, Wh, source, scope) readings with all their effects if
        every one is new and allowed; otherwise change nothing and return False. One statement,
        its own transaction: call it outside one."""
        meters, starts, _ends, whs, sources, scope_of = _columns(rows)
        scope_ids, scope_sites = _columns(scopes) if scopes else ([], [])
        try:
            await conn.fetchval(
                PG_STORE_ALL_NEW,
                meters,
                starts,
                whs,
                sources,
                scope_of,
                scope_ids,
                scope_sites,
                received_at,
                cut_reason,
                len(rows),
            )
        except NotAllNew.postgres_error:
            return False
        return True

    async def lock_meters(self, conn: Any, meter_nos: list[int]) -> dict[int, MeterRow]:
        """The batch's meters, locked FOR UPDATE in meter order until commit."""
        rows = await conn.fetch(
            f"SELECT {METER_COLUMNS} FROM meter AS m JOIN site AS s ON s.id = m.site_id "
            "WHERE m.meter_no = ANY($1::bigint[]) ORDER BY m.meter_no FOR UPDATE OF m",
            meter_nos,
        )
        return self.meter_rows(rows)

    async def existing(self, conn: Any, keys: list[tuple[int, Raw]]) -> dict[tuple[int, Raw], Raw]:
        """Stored kWh of the (meter, interval start) keys that already have a reading."""
        rows = await conn.fetch(
            "SELECT r.meter_no, r.interval_start, r.kwh FROM unnest($1::bigint[], $2::timestamptz[]) AS k(m, t) "
            "JOIN reading AS r ON r.meter_no = k.m AND r.interval_start = k.t",
            *_columns(keys),
        )
        return {(m, t): k for m, t, k in rows}

    async def dg_history(self, conn: Any, sites: list[str], first: Raw, end: Raw) -> list[Any]:
        """Per DG of these sites: its state before `first` (time NULL; two changes at one instant: ON),
        then its transitions until `end`."""
        return await conn.fetch(
            "SELECT d.site_id, d.dg_no, NULL::timestamptz, (SELECT c.status FROM dg_status_change AS c "
            "  WHERE c.site_id = d.site_id AND c.dg_no = d.dg_no AND c.at < $2 "
            "  ORDER BY c.at DESC, c.status DESC LIMIT 1) "
            "FROM dg AS d WHERE d.site_id = ANY($1::varchar[]) "
            "UNION ALL SELECT c.site_id, c.dg_no, c.at, c.status FROM dg_status_change AS c "
            "WHERE c.site_id = ANY($1::varchar[]) AND c.at >= $2 AND c.at < $3",
            sites,
            first,
            end,
        )

    async def insert_readings(self, conn: Any, rows: list[tuple[Raw, ...]], received_at: Raw) -> None:
        """Insert (meter, start, kwh, source, charge) rows."""
        await conn.execute(
            "INSERT INTO reading (meter_no, interval_start, kwh, source, charge, received_at) "
            "SELECT m, t, k, s, c, $6 FROM unnest($1::bigint[], $2::timestamptz[], $3::numeric[], "
            "$4::varchar[], $5::numeric[]) AS u(m, t, k, s, c)",
            *_columns(rows),
            received_at,
        )

    async def update_meters(self, conn: Any, deltas: list[tuple[Raw, ...]]) -> None:
        """Apply (meter, +grid, +dg, -charge, last reading end) to each meter."""
        await conn.execute(
            "UPDATE meter SET grid_kwh = meter.grid_kwh + d.g, dg_kwh = meter.dg_kwh + d.dg, "
            "balance = meter.balance - d.c, last_reading_at = GREATEST(meter.last_reading_at, d.l) "
            "FROM unnest($1::bigint[], $2::numeric[], $3::numeric[], $4::numeric[], $5::timestamptz[]) "
            "AS d(m, g, dg, c, l) WHERE meter.meter_no = d.m",
            *_columns(deltas),
        )

    async def queue_cuts(self, conn: Any, meter_nos: list[int], reason: str, at: Raw) -> None:
        """A requested cut for each meter that has no cut pending yet."""
        await conn.execute(
            "INSERT INTO command (meter_no, action, reason, params, state, result, created_at, updated_at) "
            "SELECT m, 'cut', $2, '{}', 'requested', '', $3, $3 FROM unnest($1::bigint[]) AS m "
            "WHERE NOT EXISTS (SELECT 1 FROM command AS c WHERE c.meter_no = m AND c.action = 'cut' "
            "AND c.state IN ('requested', 'sent'))",
            meter_nos,
            reason,
            at,
        )

    async def insert_conflicts(self, conn: Any, rows: list[tuple[Raw, ...]], received_at: Raw) -> None:
        """Record (meter, start, stored kwh, offered kwh) conflicts."""
        await conn.execute(
            "INSERT INTO reading_conflict (meter_no, interval_start, stored_kwh, offered_kwh, received_at) "
            "SELECT m, t, s, o, $5 FROM unnest($1::bigint[], $2::timestamptz[], $3::numeric[], $4::numeric[]) "
            "AS u(m, t, s, o)",
            *_columns(rows),
            received_at,
        )

    async def run(self, conn: Any, plan: PlanOf[R]) -> R:
        """Run a plan on this connection, outside any transaction: the all-new step is a
        statement that commits alone (one round trip); the rest of a plan runs in one transaction."""
        try:
            name, args = plan.send(None)
            if name == "store_if_all_new":
                name, args = plan.send(await self.store_if_all_new(conn, *args))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        async with conn.transaction():
            while True:
                result = await getattr(self, name)(conn, *args)
                try:
                    name, args = plan.send(result)
                except StopIteration as done:  # caught here: the plan's end must not roll it back
                    return done.value  # type: ignore[no-any-return]


def _drive(plan: PlanOf[R], execute: Callable[[str, tuple[Any, ...]], Any]) -> R:
    result: Any = None
    while True:
        try:
            name, args = plan.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        result = execute(name, args)


_BY_DIALECT: dict[str, BatchSql] = {}


def batch_sql(dialect: Dialect) -> BatchSql:
    """The statements for this dialect."""
    found = _BY_DIALECT.get(dialect.name)
    if found is None:
        cls = SqliteBatchSql if dialect.name == "sqlite" else PostgresBatchSql
        found = _BY_DIALECT[dialect.name] = cls(dialect)
    return found
