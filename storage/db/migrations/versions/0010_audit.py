"""Audit trail (append-only) and per-meter legacy ingest

Revision ID: 0009_audit
Revises: 0008_accounts
Create Date: 2026-12-05 05:00:00.000000

- `audit_event`: every state change made by a person or a key. Triggers on both dialects refuse
  UPDATE and DELETE, so the trail is append-only whoever holds the database connection.
- `meter.legacy_ingest`: staff let one meter post without a token (replaces the global
  `GATEWAY_INGEST_AUTH=off`). On PostgreSQL the credential-change trigger of 0007 also fires
  on this column, so every process forgets its cached set of legacy meters at once.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.db.types

revision: str = "0009_audit"
down_revision: str | None = "0008_accounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFUSE = "audit trail is append-only"


def upgrade() -> None:
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", storage.db.types.UtcTime(timezone=True), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("address", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("site_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("target", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_event_at"), ["at"], unique=False)
        batch_op.create_index("ix_audit_event_site", ["site_id", "id"], unique=False)
    with op.batch_alter_table("meter", schema=None) as batch_op:
        batch_op.add_column(sa.Column("legacy_ingest", sa.Boolean(), server_default=sa.false(), nullable=False))

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{REFUSE}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()"
        )
        op.execute("DROP TRIGGER meter_credentials_changed ON meter")
        op.execute(
            "CREATE TRIGGER meter_credentials_changed AFTER UPDATE OF token_hash, active, legacy_ingest OR DELETE "
            "ON meter FOR EACH STATEMENT EXECUTE FUNCTION gateway_credentials_changed()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_event_no_{event.lower()} BEFORE {event} ON audit_event "
                f"BEGIN SELECT RAISE(ABORT, '{REFUSE}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER meter_credentials_changed ON meter")
        op.execute(
            "CREATE TRIGGER meter_credentials_changed AFTER UPDATE OF token_hash, active OR DELETE "
            "ON meter FOR EACH STATEMENT EXECUTE FUNCTION gateway_credentials_changed()"
        )
        op.execute("DROP TRIGGER audit_event_append_only ON audit_event")
        op.execute("DROP FUNCTION audit_event_append_only()")
    with op.batch_alter_table("meter", schema=None) as batch_op:
        batch_op.drop_column("legacy_ingest")
    op.drop_table("audit_event")  # its SQLite triggers go with it
