"""SQLite keeps UTC times as integer microseconds since the epoch instead of 26-character text
(`storage.db.types.UtcTime`); PostgreSQL's `timestamptz` columns are unchanged.

A reading row and its `received_at` index entry shrink by about half, and with them the pages
each group commit writes and syncs (measured: a 1,000-reading group wrote 133 WAL pages as text,
74 as integers). Each stored text is converted exactly, microseconds included; the declared
column types stay as they were (an integer in a DATETIME column is stored as an integer).

Revision ID: 0013_integer_times
Revises: 0012_meter_role
Create Date: 2026-12-05 17:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013_integer_times"
down_revision: str | None = "0012_meter_role"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every UTC time column of the schema at this revision.
TIME_COLUMNS: dict[str, tuple[str, ...]] = {
    "api_key": ("created_at", "revoked_at"),
    "audit_event": ("at",),
    "command": ("created_at", "updated_at", "sent_at", "finished_at", "next_attempt_at"),
    "daily_total": ("rolled_at",),
    "dg": ("status_at", "fuel_at", "reading_at", "created_at"),
    "dg_delivery_attempt": ("attempted_at",),
    "dg_event": ("at", "next_attempt_at", "delivered_at", "created_at", "round_started_at"),
    "dg_sample": ("at",),
    "dg_status_change": ("at",),
    "dg_subscription": ("created_at",),
    "ledger_entry": ("created_at",),
    "meter": ("last_reading_at", "retired_at", "created_at"),
    "meter_change": ("created_at",),
    "portal_user": ("created_at", "last_login_at", "disabled_at", "last_failed_at"),
    "reading": ("interval_start", "received_at"),
    "reading_conflict": ("interval_start", "received_at"),
    "recharge": ("created_at", "updated_at", "applied_at", "next_check_at"),
    "rolled_day": ("rolled_at",),
    "rollup_mark": ("checked_until",),
    "site": ("created_at",),
    "site_event": ("at", "next_attempt_at", "delivered_at", "round_started_at"),
    "site_event_attempt": ("attempted_at",),
    "site_webhook": ("created_at",),
    "tariff": ("effective_from", "created_at"),
}

# SQLAlchemy's text is 'YYYY-MM-DD HH:MM:SS.ffffff': the whole seconds by `unixepoch` (SQLite
# 3.38, the gateway's minimum) of the text without its fraction (given one, it rounds to the
# nearest second), the microseconds from the text itself (julianday's double would round them).
TO_MICROSECONDS = "unixepoch(substr({c}, 1, 19)) * 1000000 + CAST(substr(substr({c}, 21) || '000000', 1, 6) AS INTEGER)"
TO_TEXT = "strftime('%Y-%m-%d %H:%M:%S', {c} / 1000000, 'unixepoch') || '.' || substr('00000' || ({c} % 1000000), -6)"

# audit_event is append-only on SQLite (0010_audit): its guard is lifted for the conversion.
AUDIT_GUARD = (
    "CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event "
    "BEGIN SELECT RAISE(ABORT, 'audit trail is append-only'); END"
)  # as 0010_audit created it


def _convert(expression: str, stored_as: str) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TRIGGER IF EXISTS audit_event_no_update")
    for table, columns in TIME_COLUMNS.items():
        assignments = ", ".join(
            f"{c} = CASE WHEN typeof({c}) = '{stored_as}' THEN {expression.format(c=c)} ELSE {c} END" for c in columns
        )
        touched = " OR ".join(f"typeof({c}) = '{stored_as}'" for c in columns)
        op.execute(f"UPDATE {table} SET {assignments} WHERE {touched}")
    op.execute(AUDIT_GUARD)


def upgrade() -> None:
    _convert(TO_MICROSECONDS, "text")


def downgrade() -> None:
    _convert(TO_TEXT, "integer")
