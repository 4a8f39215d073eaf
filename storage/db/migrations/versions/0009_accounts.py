"""Portal accounts with a life cycle: staff site scopes, disabling, session versions, login delays

Revision ID: 0008_accounts
Revises: 0007_partitions
Create Date: 2026-12-05 05:00:00.000000

- `sites`: the sites a staff account sees, like an API key's. Existing staff saw every site and
  keep doing so (`["*"]`); residents see their own meter and have `[]`.
- `disabled_at`: a disabled account cannot log in and its sessions end.
- `session_version`: every session carries the version it began at; logout, a password change
  or reset, and disabling bump it, which ends all the account's sessions at once.
- `failed_logins`, `last_failed_at`: wrong passwords since the last good one (growing delays).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.db.types

revision: str = "0008_accounts"
down_revision: str | None = "0007_partitions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("portal_user", sa.Column("sites", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
    op.add_column("portal_user", sa.Column("disabled_at", storage.db.types.UtcTime(timezone=True), nullable=True))
    op.add_column(
        "portal_user", sa.Column("session_version", sa.Integer(), nullable=False, server_default=sa.text("0"))
    )
    op.add_column("portal_user", sa.Column("failed_logins", sa.Integer(), nullable=False, server_default=sa.text("0")))
    op.add_column("portal_user", sa.Column("last_failed_at", storage.db.types.UtcTime(timezone=True), nullable=True))
    portal_user = sa.table("portal_user", sa.column("is_staff", sa.Boolean()), sa.column("sites", sa.JSON()))
    op.execute(portal_user.update().where(portal_user.c.is_staff.is_(True)).values(sites=["*"]))


def downgrade() -> None:
    with op.batch_alter_table("portal_user") as batch:
        for column in ("last_failed_at", "failed_logins", "session_version", "disabled_at", "sites"):
            batch.drop_column(column)
