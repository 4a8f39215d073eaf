"""SQLModel tables. Tables are created only by the Alembic migrations in `storage/db/migrations`.

Column types (exact money and energy, UTC times) are in `storage.db.types`.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from storage.db.types import Energy, Money, RowidBigInteger, UtcTime

# A site's first tariff is in force since this instant: every reading, however late, has a price.
TARIFF_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def utcnow() -> dt.datetime:
    """The current time, timezone-aware, in UTC."""
    return dt.datetime.now(dt.UTC)


class Site(SQLModel, table=True):
    """A housing society: its timezone decides day boundaries, its tariff history (`Tariff`) the
    debits, its prepaid policy when a meter is cut."""

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    region: str = Field(max_length=100, index=True)
    timezone: str = Field(max_length=64, default="Asia/Kolkata")
    auto_cut: bool = Field(default=True)
    created_at: dt.datetime = Field(sa_type=UtcTime, default_factory=utcnow)
    # The prepaid policy (storage/money/policy.py): cut at or below -grace_amount, warn at each of the
    # alert thresholds (₹ amounts as strings, highest first), never cut inside a no-cut window.
    grace_amount: Decimal = Field(sa_type=Money, default=Decimal("0.00"))
    alert_thresholds: list[str] = Field(sa_type=sa.JSON, default_factory=list)
    no_cut_hours: str = Field(default="", max_length=11)  # local "HH:MM-HH:MM", may wrap midnight
    no_cut_weekdays: str = Field(default="", max_length=27)  # e.g. "sat,sun"


class Tariff(SQLModel, table=True):
    """One row of a site's tariff history, in force from `effective_from` until the next row.

    A site's first row is in force since `TARIFF_EPOCH`, so every reading finds one.
    """

    __table_args__ = (sa.UniqueConstraint("site_id", "effective_from", name="uq_tariff_site_from"),)

    id: int | None = Field(default=None, primary_key=True)
    site_id: str = Field(foreign_key="site.id", max_length=64)
    effective_from: dt.datetime = Field(sa_type=UtcTime)
    grid: Decimal = Field(sa_type=Money)  # ₹ per kWh
    dg: Decimal = Field(sa_type=Money)  # ₹ per kWh
    fixed_daily: Decimal = Field(sa_type=Money, default=Decimal("0.00"))  # ₹ per meter per local day
    created_at: dt.datetime = Field(sa_type=UtcTime, default_factory=utcnow)
    created_by: str = Field(default="", max_length=100)


class Holiday(SQLModel, table=True):
    """A local date of a site on which zero-balance cuts are not carried out."""

    site_id: str = Field(foreign_key="site.id", primary_key=True, max_length=64)
    day: dt.date = Field(primary_key=True)
    name: str = Field(default="", max_length=100)


class Meter(SQLModel, table=True):
    """A prepaid meter of one unit. Meter numbers are unique for ever and never reused."""

    meter_no: int = Field(sa_type=RowidBigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False})
    site_id: str = Field(foreign_key="site.id", index=True, max_length=64)
    unit_no: str = Field(max_length=64)
    consumer_name: str = Field(default="", max_length=200)
    fin_no: str = Field(default="", max_length=64)
    relay_on: bool = Field(default=True)
    balance: Decimal = Field(sa_type=Money, default=Decimal("0.00"))
    load_dg: Decimal | None = Field(sa_type=Money, default=None)
    load_grid: Decimal | None = Field(sa_type=Money, default=None)
    grid_kwh: Decimal = Field(sa_type=Energy, default=Decimal("0.000"))
    dg_kwh: Decimal = Field(sa_type=Energy, default=Decimal("0.000"))
    start_grid: Decimal = Field(sa_type=Energy, default=Decimal("0.000"))
    start_dg: Decimal = Field(sa_type=Energy, default=Decimal("0.000"))
    last_reading_at: dt.datetime | None = Field(sa_type=UtcTime, default=None)
    active: bool = Field(default=True)
    retired_at: dt.datetime | None = Field(sa_type=UtcTime, default=None)
    token_hash: str | None = Field(default=None, max_length=64, unique=True)
    # Staff let this meter post without a token (an old meter that cannot send one); any token
    # that is sent is still checked. Off for every new meter.
    legacy_ingest: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    created_at: dt.datetime = Field(sa_type=UtcTime, default_factory=utcnow)
    # The lowest alert threshold this meter's balance has been warned about (None: none yet);
    # thresholds below the balance are armed again when money comes in.
    alert_level: Decimal | None = Field(sa_type=Money, default=None)
    # What it measures (storage/registry/meter_roles.py): "flat" (billed), or a bulk meter never billed,
    # "incomer" or "dg" (then `dg_no` is the site's DG whose energy it measures).
    role: str = Field(default="flat", max_length=8, sa_column_kwargs={"server_default": "flat"})
    dg_no: str | None = Field(default=None, max_length=64)


class Reading(SQLModel, table=True):
    """One half-hour interval's energy of one meter, with what it cost."""

    # Clustered on its key on SQLite: an insert writes one b-tree, not a table and an index.
    __table_args__ = {"sqlite_with_rowid": False}

    meter_no: int = Field(sa_type=sa.BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False})
    interval_start: dt.datetime = Field(sa_type=UtcTime, primary_key=True)
    kwh: Decimal = Field(sa_type=Energy)
    # "grid" | "dg" | "mix": the packet's own source, else by the minutes a DG of the site ran.
    source: str = Field(max_length=4)
    charge: Decimal = Field(sa_type=Money)  # both parts
    dg_kwh: Decimal = Field(sa_type=Energy, default=Decimal("0.000"))  # the DG part of `kwh`
    dg_charge: Decimal = Field(sa_type=Money, default=Decimal("0.00"))  # the DG part of `charge`
    # Indexed so the rollup finds late readings by when they arrived (storage/days.py).
    received_at: dt.datetime = Field(sa_type=UtcTime, index=True)


class ReadingConflict(SQLModel, table=True):
    """A packet that offered another value for an interval already stored (the first is kept)."""

    __tablename__ = "reading_conflict"

    id: int | None = Field(default=None, primary_key=True)
    meter_no: int = Field(sa_type=sa.BigInteger, index=True)
    interval_start: dt.datetime = Field(sa_type=UtcTime)
    stored_kwh: Decimal = Field(sa_type=Energy)
    offered_kwh: Decimal = Field(sa_type=Energy)
    received_at: dt.datetime = Field(sa_type=UtcTime)


class DailyTotal(SQLModel, table=True):
    """A meter's local calendar day, written by the rollup."""

    __tablename__ = "daily_total"
    __table_args__ = {"sqlite_with_rowid": False}

    meter_no: int = Field(sa_type=sa.BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False})
    day: dt.date = Field(primary_key=True)
    kwh: Decimal = Field(sa_type=Energy)
    grid_kwh: Decimal = Field(sa_type=Energy)
    dg_kwh: Decimal = Field(sa_type=Energy)
    intervals: int
    rolled_at: dt.datetime = Field(sa_type=UtcTime)


class RolledDay(SQLModel, table=True):
    """A site's local day as last rolled up: its daily totals hold every reading received by rolled_at."""

    __tablename__ = "rolled_day"

    site_id: str = Field(foreign_key="site.id", primary_key=True, max_length=64)
    day: dt.date = Field(primary_key=True)
    rolled_at: dt.datetime = Field(sa_type=UtcTime)


class RollupMark(SQLModel, table=True):
    """How far the rollup has looked for late readings of a site: everything received up to here."""

    __tablename__ = "rollup_mark"

    site_id: str = Field(foreign_key="site.id", primary_key=True, max_length=64)
    checked_until: dt.datetime = Field(sa_type=UtcTime)


class DieselGenerator(SQLModel, table=True):
    """A site's DG with its latest posted state."""

    __tablename__ = "dg"

    site_id: str = Field(foreign_key="site.id", primary_key=True, max_length=64)
    dg_no: str = Field(primary_key=True, max_length=64)
    meter_no: str = Field(default="", max_length=64)
    status: str = Field(default="OFF", max_length=3)  # "ON" | "OFF"
    status_at: dt.datetime | None = Field(sa_type=UtcTime, default=None)
    fuel_litres: Decimal | None = Field(sa_type=Money, default=None)
    fuel_at: dt.datetime | None = Field(sa_type=UtcTime, default=None)
    reading_kwh: Decimal | None = Field(sa_type=Energy, default=None)
    reading_at: dt.datetime | None = Field(sa_type=UtcTime, default=None)
    created_at: dt.datetime = Field(sa_type=UtcTime, default_factory=utcnow)


class DgStatusChange(SQLModel, table=True):
    """Every ON/OFF transition of a DG: decides which source a reading's energy came from."""

    __tablename__ = "dg_status_change"
    __table_args__ = (sa.Index("ix_dg_status_change_site_at", "site_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    site_id: str = Field(max_length=64)
    dg_no: str = Field(max_length=64)
    at: dt.datetime = Field(sa_type=UtcTime)
    status: str = Field(max_length=3)


class DgSample(SQLModel, table=True):
    """A DG controller's fuel level and energy register as posted at an instant (`POST /dg`): the
    history the energy audit reads (fuel used, refills, DG kWh when no DG meter is registered)."""

    __tablename__ = "dg_sample"
    __table_args__ = (sa.Index("ix_dg_sample_dg_at", "site_id", "dg_no", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    site_id: str = Field(max_length=64)
    dg_no: str = Field(max_length=64)
    at: dt.datetime = Field(sa_type=UtcTime)
    fuel_litres: Decimal | None = Field(sa_type=Money, default=None)
    reading_kwh: Decimal | None = Field(sa_type=Energy, default=None)


class ApiKey(SQLModel, table=True):
    """A named API key. Only its SHA-256 is stored; the key is shown once."""

    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=100)
    key_hash: str = Field(unique=True, max_length=64)
    role: str = Field(max_length=16)  # read | operate | admin | ingest
    sites: list[str] = Field(sa_type=sa.JSON)  # ["*"] for every site
    created_at: dt.datetime = Field(sa_type=UtcTime, default_factory=utcnow)
    revoked_at: dt.datetime | None = Field(sa_type=UtcTime, default=None)


class Command(SQLModel, table=True):
    """The durable command log: every relay/load command, from request to the head-end's answer.

    state: requested → sent → done | failed | cancelled. `command_id` is the idempotency id the
    head-end sees, set when the command is first sent and reused by every re-send.
    """

    __table_args__ = (sa.UniqueConstraint("command_id", name="uq_command_command_id"),)

    id: int | None = Field(default=None, primary_key=True)
    meter_no: int = Field(sa_type=sa.BigInteger, index=True)
    action: str = Field(max_length=16)  # cut | restore | start | stop | load
    reason: str = Field(default="", max_length=200)
    params: dict[str, Any] = Field(sa_type=sa.JSON, default_factory=dict)
    state: str = Field(default="requested", max_length=16, index=True)
    result: str = Field(default="", max_length=500)
    created_at: dt.datetime = Field(sa_type=UtcTime, default_factory=utcnow)
    updated_at: dt.datetime = Field(sa_type=UtcTime, default_factory=utcnow)
    command_id: str | None = Field(default=None, max_length=64)
    sent_at: dt.datetime | None = Field(sa_type=UtcTime, default=None)
    finished_at: dt.datetime | None = Field(sa_type=UtcTime, default=None)
    answer: dict[str, Any] | None = Field(sa_type=sa.JSON, default=None)  # the head-end's last reply
    attempts: int = Field(default=0)  # sends so far
    next_attempt_at: dt.datetime | None = Field(sa_type=UtcTime, default=None)  # a retry's time (requested)


class Recharge(SQLModel, table=True):
    """A recharge (Factech call 3) from request to settlement; call 4 reads it back.

    state: requested (the head-end is being asked) → success | waiting | error; waiting settles
    later to success or error. `transaction_id` is ours and is also the head-end's idempotency id.
    An `Idempotency-Key` is unique per client (API key name), so a retry finds the first request.
    """

    __table_args__ = (sa.UniqueConstraint("client", "idempotency_key", name="uq_recharge_client_key"),)

    id: int | None = Field(default=None, primary_key=True)
    transaction_id: str = Field(max_length=64, unique=True)
    client: str = Field(max_length=100)
    idempotency_key: str | None = Field(default=None, max_length=128)
    site_id: str = Field(foreign_key="site.id", max_length=64, index=True)
    meter_no: int = Field(sa_type=sa.BigInteger, foreign_key="meter.meter_no", index=True)
    amount: Decimal = Field(sa_type=Money)
    state: str = Field(default="requested", max_length=16, index=True)
    headend_state: str = Field(default="", max_length=16)  # applied | queued | refused | unreachable | failed
    token: str | None = Field(default=None, max_length=20)
    balance_after: Decimal | None = Field(sa_type=Money, default=None)
    reason: str = Field(default="", max_length=500)
    created_at: dt.datetime = Field(sa_type=UtcTime, default_factory=utcnow)
    updated_at: dt.datetime = Field(sa_type=UtcTime, default_factory=utcnow)
    applied_at: dt.datetime | None = Field(sa_type=UtcTime, default=None)
    checks: int = Field(default=0)  # times the reconciliation job asked the head-end about it
    next_check_at: dt.datetime | None = Field(sa_type=UtcTime, default=None)  # None: due now


class LedgerEntry(SQLModel, table=True):
    """A change of a meter's prepaid balance other than a reading's charge: its opening balance,
    a credit (recharge) or an adjustment with a reason. Debits are `reading.charge`.
    """

    __tablename__ = "ledger_entry"
    __table_args__ = (
        sa.Index("ix_ledger_entry_meter_id", "meter_no", "id"),
        # A day's fixed charge is debited once per meter, however often the day is rolled.
        sa.Index("uq_ledger_entry_meter_kind_day", "meter_no", "kind", "day", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    meter_no: int = Field(sa_type=sa.BigInteger, foreign_key="meter.meter_no")
    kind: str = Field(max_length=16)  # opening | credit | adjustment | fixed
    amount: Decimal = Field(sa_type=Money)  # signed
    balance_after: Decimal = Field(sa_type=Money)
    reason: str = Field(default="", max_length=200)
    transaction_id: str | None = Field(default=None, max_length=64)
    created_by: str = Field(default="", max_length=100)
    created_at: dt.datetime = Field(sa_type=UtcTime, default_factory=utcnow)
    day: dt.date | None = Field(default=None)  # the local day a fixed charge is for


class MeterChange(SQLModel, table=True):
    """A meter replaced by another on the same unit: the registers at both ends, for billing (call 5).

    Each meter is replaced at most once and installed by at most one change (meter numbers are
    never reused), hence the unique constraints.
    """

    __tablename__ = "meter_change"
    __table_args__ = (sa.Index("ix_meter_change_site_date", "site_id", "meter_change_date"),)

    id: int | None = Field(default=None, primary_key=True)
    site_id: str = Field(foreign_key="site.id", max_length=64)
    unit_no: str = Field(max_length=64)
    old_meter_no: int = Field(sa_type=sa.BigInteger, foreign_key="meter.meter_no", unique=True)
    old_start_grid: Decimal = Field(sa_type=Energy)
    old_start_dg: Decimal = Field(sa_type=Energy)
    old_end_grid: Decimal = Field(sa_type=Energy)
    old_end_dg: Decimal = Field(sa_type=Energy)
    new_meter_no: int = Field(sa_type=sa.BigInteger, foreign_key="meter.meter_no", unique=True)
    new_start_grid: Decimal = Field(sa_type=Energy)
    new_start_dg: Decimal = Field(sa_type=Energy)
    balance_moved: Decimal = Field(sa_type=Money)
    meter_change_date: dt.date
    reading_start_date: dt.date
    created_at: dt.datetime = Field(sa_type=UtcTime, default_factory=utcnow)


class PortalUser(SQLModel, table=True):
    """A web portal account: a resident bound to one meter, or a staff member with a username.

    Residents log in with their meter number, staff with their username; the password is kept
    only as an Argon2 hash. The check constraint keeps the two kinds apart.
    """

    __tablename__ = "portal_user"
    __table_args__ = (
        sa.CheckConstraint(
            "(is_staff AND username IS NOT NULL AND meter_no IS NULL)"
            " OR (NOT is_staff AND meter_no IS NOT NULL AND username IS NULL)",
            name="ck_portal_user_kind",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    is_staff: bool = Field(default=False)
    username: str | None = Field(default=None, unique=True, max_length=100)
    meter_no: int | None = Field(sa_type=sa.BigInteger, default=None, foreign_key="meter.meter_no", unique=True)
    password_hash: str = Field(max_length=200)
    created_at: dt.datetime = Field(sa_type=UtcTime, default_factory=utcnow)
    last_login_at: dt.datetime | None = Field(sa_type=UtcTime, default=None)
    # Staff see these sites only, as API keys do (["*"]: every site); residents see their meter.
    sites: list[str] = Field(sa_type=sa.JSON, default_factory=list)
    disabled_at: dt.datetime | None = Field(sa_type=UtcTime, default=None)
    # Sessions carry the version they began at: bumping it (logout, password change or reset,
    # disable) ends every session of the account, wherever its cookies are.
    session_version: int = Field(default=0)
    # Wrong passwords since the last good one: past a few, each try waits longer (no hard lock).
    failed_logins: int = Field(default=0)
    last_failed_at: dt.datetime | None = Field(sa_type=UtcTime, default=None)
