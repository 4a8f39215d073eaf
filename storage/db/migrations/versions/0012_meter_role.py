"""Meter roles: a meter is a flat (billed, as every meter so far) or a bulk meter of its site,
the grid incomer or a DG's energy meter (with the DG's number), measured for the energy audit
and never billed; `dg_sample`, the history of DGs' fuel levels and energy registers

Revision ID: 0012_meter_role
Revises: 0010_prepaid
Create Date: 2026-12-05 07:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.db.types

Money = storage.db.types.Fixed(scale=2)
Energy = storage.db.types.Fixed(scale=3)
UtcTime = storage.db.types.UtcTime(timezone=True)

revision: str = "0012_meter_role"
down_revision: str | None = "0010_prepaid"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every existing meter is a flat; batch mode rebuilds the table on SQLite.
    with op.batch_alter_table("meter") as batch:
        batch.add_column(sa.Column("role", sa.String(length=8), nullable=False, server_default="flat"))
        batch.add_column(sa.Column("dg_no", sa.String(length=64), nullable=True))
    op.create_table(
        "dg_sample",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("dg_no", sa.String(length=64), nullable=False),
        sa.Column("at", UtcTime, nullable=False),
        sa.Column("fuel_litres", Money, nullable=True),
        sa.Column("reading_kwh", Energy, nullable=True),
    )
    op.create_index("ix_dg_sample_dg_at", "dg_sample", ["site_id", "dg_no", "at"])


def downgrade() -> None:
    op.drop_table("dg_sample")
    with op.batch_alter_table("meter") as batch:
        batch.drop_column("dg_no")
        batch.drop_column("role")
