"""Reconciliation and redelivery: durable next-check times for recharges and commands, and the
start of each DG event's delivery round (the callback horizon is counted from it)

Revision ID: 0007_reconcile
Revises: 0005_commands
Create Date: 2026-11-23 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.db.types

revision: str = "0007_reconcile"
down_revision: str | None = "0005_commands"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("recharge", schema=None) as batch_op:
        batch_op.add_column(sa.Column("checks", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("next_check_at", storage.db.types.UtcTime(timezone=True), nullable=True))
    with op.batch_alter_table("command", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("next_attempt_at", storage.db.types.UtcTime(timezone=True), nullable=True))
    with op.batch_alter_table("dg_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("round_started_at", storage.db.types.UtcTime(timezone=True), nullable=True))
    # Events queued before this migration: their round started when they were queued.
    op.execute("UPDATE dg_event SET round_started_at = created_at")
    with op.batch_alter_table("dg_event", schema=None) as batch_op:
        batch_op.alter_column("round_started_at", existing_type=storage.db.types.UtcTime(timezone=True), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("dg_event", schema=None) as batch_op:
        batch_op.drop_column("round_started_at")
    with op.batch_alter_table("command", schema=None) as batch_op:
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("attempts")
    with op.batch_alter_table("recharge", schema=None) as batch_op:
        batch_op.drop_column("next_check_at")
        batch_op.drop_column("checks")
