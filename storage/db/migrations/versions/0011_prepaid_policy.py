"""Prepaid policy: tariff history with effective dates (the site's own tariff columns move
there), grace, alert thresholds, no-cut windows and holidays, site events with their webhook,
fixed daily charges in the ledger, and each reading's DG part (energy and charge)

Revision ID: 0010_prepaid
Revises: 0009_audit
Create Date: 2026-12-05 05:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.db.types

revision: str = "0010_prepaid"
down_revision: str | None = "0009_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Money = storage.db.types.Fixed(scale=2)
UtcTime = storage.db.types.UtcTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tariff",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("site_id", sa.String(length=64), sa.ForeignKey("site.id"), nullable=False),
        sa.Column("effective_from", UtcTime, nullable=False),
        sa.Column("grid", Money, nullable=False),
        sa.Column("dg", Money, nullable=False),
        sa.Column("fixed_daily", Money, nullable=False),
        sa.Column("created_at", UtcTime, nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.UniqueConstraint("site_id", "effective_from", name="uq_tariff_site_from"),
    )
    # Each site's tariff so far, in force since always (TARIFF_EPOCH), paise on SQLite as in `site`.
    op.execute(
        "INSERT INTO tariff (site_id, effective_from, grid, dg, fixed_daily, created_at, created_by) "
        "SELECT id, '1970-01-01 00:00:00.000000', tariff_grid, tariff_dg, 0, created_at, 'migration' FROM site"
        if op.get_bind().dialect.name == "sqlite"
        else "INSERT INTO tariff (site_id, effective_from, grid, dg, fixed_daily, created_at, created_by) "
        "SELECT id, TIMESTAMPTZ '1970-01-01 00:00:00+00', tariff_grid, tariff_dg, 0, created_at, 'migration' FROM site"
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    for column in ("tariff_grid", "tariff_dg"):
        if sqlite:  # SQLite drops a column natively (3.35+); batch mode would rebuild the table under its references
            op.execute(f"ALTER TABLE site DROP COLUMN {column}")
        else:
            op.drop_column("site", column)
    # Not in batch mode on SQLite: `reading` is a WITHOUT ROWID table, which a rebuild would not keep.
    op.add_column("reading", sa.Column("dg_kwh", storage.db.types.Fixed(scale=3), nullable=False, server_default="0"))
    op.add_column("reading", sa.Column("dg_charge", Money, nullable=False, server_default="0"))
    op.execute("UPDATE reading SET dg_kwh = kwh, dg_charge = charge WHERE source = 'dg'")
    with op.batch_alter_table("site", schema=None) as batch_op:
        batch_op.add_column(sa.Column("grace_amount", Money, nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("alert_thresholds", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("no_cut_hours", sa.String(length=11), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("no_cut_weekdays", sa.String(length=27), nullable=False, server_default=""))
    with op.batch_alter_table("meter", schema=None) as batch_op:
        batch_op.add_column(sa.Column("alert_level", Money, nullable=True))
    with op.batch_alter_table("ledger_entry", schema=None) as batch_op:
        batch_op.add_column(sa.Column("day", sa.Date(), nullable=True))
        batch_op.create_index("uq_ledger_entry_meter_kind_day", ["meter_no", "kind", "day"], unique=True)
    op.create_table(
        "holiday",
        sa.Column("site_id", sa.String(length=64), sa.ForeignKey("site.id"), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("name", sa.String(length=100), nullable=False),
    )
    op.create_table(
        "site_event",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("event_id", sa.String(length=40), nullable=False, unique=True),
        sa.Column("site_id", sa.String(length=64), sa.ForeignKey("site.id"), nullable=False),
        sa.Column("meter_no", sa.BigInteger(), nullable=True),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("at", UtcTime, nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UtcTime, nullable=True),
        sa.Column("delivered_at", UtcTime, nullable=True),
        sa.Column("round_started_at", UtcTime, nullable=True),
    )
    op.create_index("ix_site_event_site_id", "site_event", ["site_id", "id"])
    op.create_index("ix_site_event_due", "site_event", ["state", "next_attempt_at"])
    op.create_table(
        "site_webhook",
        sa.Column("site_id", sa.String(length=64), sa.ForeignKey("site.id"), primary_key=True),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("created_at", UtcTime, nullable=False),
    )
    op.create_table(
        "site_event_attempt",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("event_id", sa.String(length=40), sa.ForeignKey("site_event.event_id"), nullable=False),
        sa.Column("attempted_at", UtcTime, nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
    )
    op.create_index("ix_site_event_attempt_event_id", "site_event_attempt", ["event_id"])


def downgrade() -> None:
    op.drop_column("reading", "dg_charge")
    op.drop_column("reading", "dg_kwh")
    op.add_column("site", sa.Column("tariff_grid", Money, nullable=False, server_default="800"))
    op.add_column("site", sa.Column("tariff_dg", Money, nullable=False, server_default="2000"))
    op.drop_table("site_event_attempt")
    op.drop_table("site_webhook")
    op.drop_table("site_event")
    op.drop_table("holiday")
    with op.batch_alter_table("ledger_entry", schema=None) as batch_op:
        batch_op.drop_index("uq_ledger_entry_meter_kind_day")
        batch_op.drop_column("day")
    with op.batch_alter_table("meter", schema=None) as batch_op:
        batch_op.drop_column("alert_level")
    with op.batch_alter_table("site", schema=None) as batch_op:
        batch_op.drop_column("no_cut_weekdays")
        batch_op.drop_column("no_cut_hours")
        batch_op.drop_column("alert_thresholds")
        batch_op.drop_column("grace_amount")
    op.drop_table("tariff")
