"""Readings by month on PostgreSQL, and retention on both databases.

On PostgreSQL `reading` is a declaratively partitioned table, RANGE on `interval_start` by UTC
month (migration 0007_partitions): one partition per month, named as in PostgreSQL's own
documentation (`reading_y2026m01`), and a DEFAULT partition so an insert never fails when a
month's partition is missing. `ensure_partitions` creates the months around "now" ahead of time
and moves anything that landed in the default partition into a partition of its own month.

Retention (`GATEWAY_RETENTION_DAYS`) removes readings whose interval started before the cutoff:
on PostgreSQL by dropping whole partitions (the month must lie entirely before the cutoff, so up
to a month more is kept; no row-by-row DELETE, no table bloat, no VACUUM afterwards); on SQLite
by deleting in small batches, each its own short transaction, so the ingest writer never waits
long behind it.

Every function here is safe when several gateway processes call it at once: DDL runs under one
transaction-scoped advisory lock, and each step checks what exists before acting.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.calendar import add_months, month_start
from storage.db.engine import Database
from storage.db.models import Reading

PARENT = "reading"
DEFAULT_PARTITION = "reading_default"
MONTHLY = re.compile(r"^reading_y(\d{4})m(\d{2})$")
# The months kept ready around "now": the packet age limit (35 days) reaches back into the month
# before last; three months ahead leave a quarter to notice a job that stopped running.
MONTHS_BEHIND = 2
MONTHS_AHEAD = 3
# One key for all partition DDL (pg_advisory_xact_lock's bigint): processes take turns.
DDL_LOCK = 0x7265_6164_696E_67  # "reading"
# Dropping a partition, or moving rows out of the default one, takes an ACCESS EXCLUSIVE lock on
# `reading`: give up rather than queue behind a long query (a queued lock holds every insert up
# behind it); the next run retries.
LOCK_TIMEOUT = "5s"
SQLITE_DELETE_BATCH = 5_000


def is_partition(table_name: str) -> bool:
    """True for a partition of `reading` (Alembic ignores them: they are data, not schema)."""
    return table_name == DEFAULT_PARTITION or MONTHLY.match(table_name) is not None


def include_name(name: str | None, type_: str, _parents: object) -> bool:
    """Alembic's `include_name` hook: compare `reading` itself, never its partitions."""
    return not (type_ == "table" and name is not None and is_partition(name))


def partition_name(month: dt.datetime) -> str:
    """`reading_y2026m01` for January 2026."""
    return f"reading_y{month.year:04d}m{month.month:02d}"


def month_of(name: str) -> dt.datetime | None:
    """The month a monthly partition holds, from its name (None for any other table)."""
    found = MONTHLY.match(name)
    return dt.datetime(int(found[1]), int(found[2]), 1, tzinfo=dt.UTC) if found else None


def _literal(instant: dt.datetime) -> str:
    # DDL takes no bind parameters; these are our own UTC instants, never user input.
    return f"'{instant.astimezone(dt.UTC).isoformat()}'"


@dataclass
class RetentionReport:
    """What one retention pass removed."""

    cutoff: dt.datetime
    dropped: list[str] = field(default_factory=list)
    deleted: int = 0


async def is_partitioned(conn: AsyncConnection) -> bool:
    """True when `reading` is a partitioned table (PostgreSQL after 0007_partitions)."""
    if conn.dialect.name != "postgresql":
        return False
    kind = await conn.scalar(sa.text("SELECT relkind::text FROM pg_class WHERE oid = to_regclass(:t)"), {"t": PARENT})
    return kind == "p"


async def list_partitions(db: Database) -> list[str]:
    """The partitions of `reading`, months in order, the default partition last."""
    if db.is_sqlite:
        return []
    async with db.engine.connect() as conn:
        return await list_partitions_in(conn)


async def create_month(conn: AsyncConnection, month: dt.datetime) -> None:
    """Create the partition of one month with the rows the default partition holds for it.

    The caller holds DDL_LOCK in an open transaction, and also an exclusive lock on `reading`
    if rows are to move (see `ensure_partitions`). Built as a plain table, then attached:
    ATTACH PARTITION locks `reading` only against other DDL (SHARE UPDATE EXCLUSIVE), so ingest
    goes on, where CREATE TABLE ... PARTITION OF would stop it. A row of that month still in the
    default partition would make the attach fail, so those rows move first.
    """
    name = partition_name(month)
    bounds = {"start": month, "end": add_months(month, 1)}
    await conn.execute(sa.text(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
    await conn.execute(
        sa.text(
            f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE interval_start >= :start "
            f"AND interval_start < :end RETURNING *) INSERT INTO {name} SELECT * FROM moved"
        ),
        bounds,
    )
    values = f"FROM ({_literal(bounds['start'])}) TO ({_literal(bounds['end'])})"
    await conn.execute(sa.text(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES {values}"))


async def ensure_partitions(
    db: Database, *, now: dt.datetime, behind: int = MONTHS_BEHIND, ahead: int = MONTHS_AHEAD
) -> list[str]:
    """Partitions for the months from `behind` before now to `ahead` after, and for every month
    found in the default partition; returns those created. Nothing to do on SQLite."""
    if db.is_sqlite:
        return []
    this_month = month_start(now)
    async with db.engine.begin() as conn:
        if not await is_partitioned(conn):
            return []
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": DDL_LOCK})
        existing = set(await list_partitions_in(conn))
        stray = {
            month_start(m)
            for m in await conn.scalars(
                sa.text(f"SELECT DISTINCT date_trunc('month', interval_start, 'UTC') FROM {DEFAULT_PARTITION}")
            )
        }
        wanted = {add_months(this_month, n) for n in range(-behind, ahead + 1)} | stray
        missing = sorted(m for m in wanted if partition_name(m) not in existing)
        if stray & set(missing):
            # Readers must never see rows gone from the default partition before their new
            # partition shows: a query that already holds its lock on `reading` keeps its old
            # list of partitions (measured: a rollup running meanwhile lost a whole day). So a
            # move happens under an exclusive lock, taken before any other lock on a partition
            # (readers lock `reading` first, then its partitions: the same order, no deadlock).
            # It is rare (only when months were not created ahead) and short.
            await conn.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            await conn.execute(sa.text(f"LOCK TABLE {PARENT} IN ACCESS EXCLUSIVE MODE"))
        for month in missing:
            await create_month(conn, month)
        return [partition_name(m) for m in missing]


async def apply_retention(
    db: Database, *, now: dt.datetime, days: int, should_stop: Callable[[], bool] = lambda: False
) -> RetentionReport:
    """Remove readings whose interval started more than `days` days before `now`."""
    report = RetentionReport(cutoff=now - dt.timedelta(days=days))
    if db.is_sqlite:
        report.deleted = await delete_readings_before(db, cutoff=report.cutoff, should_stop=should_stop)
        return report
    async with db.engine.begin() as conn:
        if not await is_partitioned(conn):
            return report
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": DDL_LOCK})
        for name in await list_partitions_in(conn):
            month = month_of(name)
            if month is not None and add_months(month, 1) <= report.cutoff:
                report.dropped.append(name)
        if report.dropped:
            # DROP TABLE of a partition locks it, then `reading`; readers lock `reading` first.
            # Locking `reading` up front keeps one order (no deadlock with a query over all
            # partitions, such as the rollup's look for late arrivals).
            await conn.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            await conn.execute(sa.text(f"LOCK TABLE {PARENT} IN ACCESS EXCLUSIVE MODE"))
        for name in report.dropped:
            await conn.execute(sa.text(f"DROP TABLE {name}"))
        # The default partition is normally empty (ensure_partitions drains it); what is there
        # and old goes row by row.
        result = await conn.execute(
            sa.text(f"DELETE FROM {DEFAULT_PARTITION} WHERE interval_start < :cutoff"), {"cutoff": report.cutoff}
        )
        report.deleted = max(result.rowcount or 0, 0)
    return report


async def list_partitions_in(conn: AsyncConnection) -> list[str]:
    """`list_partitions` on an open connection."""
    names = await conn.scalars(
        sa.text(
            "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": PARENT},
    )
    return sorted(names, key=lambda name: (name == DEFAULT_PARTITION, name))


async def delete_readings_before(
    db: Database,
    *,
    cutoff: dt.datetime,
    batch: int = SQLITE_DELETE_BATCH,
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """Delete readings whose interval started before `cutoff`, `batch` rows per transaction.

    Found through the `received_at` index: a reading always arrives after its interval started
    (packets are at most 5 minutes early; an interval ends before its packet's time), so every
    reading received before the cutoff is old, and on a clustered (WITHOUT ROWID) table that
    index is the only one that finds old rows without a full scan. A reading imported later with
    an old interval goes once its arrival is as old. Stops between batches when asked to.
    """
    old = (
        sa.select(Reading.meter_no, Reading.interval_start)
        .where(Reading.received_at < cutoff, Reading.interval_start < cutoff)
        .limit(batch)
    )
    key = sa.tuple_(Reading.meter_no, Reading.interval_start)  # type: ignore[arg-type]
    deleted = 0
    while True:
        async with db.transaction() as session:
            result = await session.execute(sa.delete(Reading).where(key.in_(old)))
        count = max(result.rowcount or 0, 0)  # type: ignore[attr-defined]
        deleted += count
        if count < batch or should_stop():
            return deleted
