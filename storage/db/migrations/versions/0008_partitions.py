"""Scale-out on PostgreSQL: `reading` partitioned by month; credential changes notified

Revision ID: 0007_partitions
Revises: 0007_reconcile
Create Date: 2026-11-23 09:00:00.000000

PostgreSQL only (SQLite is unchanged: one process, one file):
- `reading` becomes a partitioned table, RANGE on `interval_start` by UTC month, with a DEFAULT
  partition. Its rows are kept: the old table is renamed, a partition is made for every month it
  holds and for the months around now, the rows are copied over, then the primary key and the
  `received_at` index are built once on the filled partitions (faster than row by row). The copy
  takes time in proportion to the table (see README "Scaling").
- A statement trigger on `api_key` and on `meter` NOTIFYs `gateway_credentials` when a key's
  secret or revocation, or a meter's device token, changes, whoever changes it (the admin API,
  the CLI, a meter replacement): every gateway process LISTENs and empties its caches at once.
"""

import datetime as dt
from collections.abc import Sequence

from alembic import op

revision: str = "0007_partitions"
down_revision: str | None = "0007_reconcile"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of storage.ops.partitions' naming as of this revision: a migration must not change
# when live code does.
DEFAULT_PARTITION = "reading_default"


def month_start(instant: dt.datetime) -> dt.datetime:
    """The first instant (UTC) of the UTC month holding `instant`."""
    utc = instant.astimezone(dt.UTC)
    return dt.datetime(utc.year, utc.month, 1, tzinfo=dt.UTC)


def add_months(month: dt.datetime, months: int) -> dt.datetime:
    """The start of the month `months` after (or before) the month starting at `month`."""
    index = month.year * 12 + month.month - 1 + months
    return dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=dt.UTC)


def partition_name(month: dt.datetime) -> str:
    """`reading_y2026m01` for January 2026."""
    return f"reading_y{month.year:04d}m{month.month:02d}"


CHANNEL = "gateway_credentials"
TRIGGERS = {
    "api_key": "UPDATE OF key_hash, revoked_at OR DELETE",
    "meter": "UPDATE OF token_hash, active OR DELETE",
}


def _bound(instant: dt.datetime) -> str:
    return f"'{instant.isoformat()}'"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE reading RENAME TO reading_unpartitioned")
    op.execute("ALTER TABLE reading_unpartitioned RENAME CONSTRAINT reading_pkey TO reading_unpartitioned_pkey")
    op.execute("ALTER INDEX ix_reading_received_at RENAME TO ix_reading_unpartitioned_received_at")
    op.execute(
        "CREATE TABLE reading (LIKE reading_unpartitioned INCLUDING DEFAULTS) PARTITION BY RANGE (interval_start)"
    )
    op.execute(f"CREATE TABLE {DEFAULT_PARTITION} PARTITION OF reading DEFAULT")
    held = op.get_bind().exec_driver_sql(
        "SELECT DISTINCT date_trunc('month', interval_start, 'UTC') FROM reading_unpartitioned"
    )
    this_month = month_start(dt.datetime.now(dt.UTC))
    months = {month_start(row[0]) for row in held} | {add_months(this_month, n) for n in range(-2, 4)}
    for month in sorted(months):
        op.execute(
            f"CREATE TABLE {partition_name(month)} PARTITION OF reading "
            f"FOR VALUES FROM ({_bound(month)}) TO ({_bound(add_months(month, 1))})"
        )
    op.execute("INSERT INTO reading SELECT * FROM reading_unpartitioned")
    op.execute("ALTER TABLE reading ADD CONSTRAINT reading_pkey PRIMARY KEY (meter_no, interval_start)")
    op.execute("CREATE INDEX ix_reading_received_at ON reading (received_at)")
    op.execute("DROP TABLE reading_unpartitioned")

    op.execute(
        "CREATE FUNCTION gateway_credentials_changed() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME); RETURN NULL; END $$"
    )
    for table, events in TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {table}_credentials_changed AFTER {events} ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION gateway_credentials_changed()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TRIGGERS:
        op.execute(f"DROP TRIGGER {table}_credentials_changed ON {table}")
    op.execute("DROP FUNCTION gateway_credentials_changed()")

    op.execute("ALTER TABLE reading RENAME TO reading_partitioned")
    op.execute("ALTER TABLE reading_partitioned RENAME CONSTRAINT reading_pkey TO reading_partitioned_pkey")
    op.execute("ALTER INDEX ix_reading_received_at RENAME TO ix_reading_partitioned_received_at")
    op.execute("CREATE TABLE reading (LIKE reading_partitioned INCLUDING DEFAULTS)")
    op.execute("INSERT INTO reading SELECT * FROM reading_partitioned")
    op.execute("ALTER TABLE reading ADD CONSTRAINT reading_pkey PRIMARY KEY (meter_no, interval_start)")
    op.execute("CREATE INDEX ix_reading_received_at ON reading (received_at)")
    op.execute("DROP TABLE reading_partitioned")  # its partitions go with it
