"""SQLModel tables of what happened and who is told: site events and their webhook, DG
callbacks, every delivery attempt, and the audit trail. The rest of the tables are in
`storage.db.models`; both are created only by the Alembic migrations.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from storage.db.models import utcnow
from storage.db.types import UtcTime


class SiteEvent(SQLModel, table=True):
    """Something a site's staff should hear of (a low balance, a cut, a restore, a settled
    recharge...), listed per site and delivered to the site's webhook like DG callbacks."""

    __tablename__ = "site_event"
    __table_args__ = (
        sa.Index("ix_site_event_site_id", "site_id", "id"),
        sa.Index("ix_site_event_due", "state", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(unique=True, max_length=40)
    site_id: str = Field(foreign_key="site.id", max_length=64)
    meter_no: int | None = Field(sa_type=sa.BigInteger, default=None)
    type: str = Field(max_length=32)  # balance.low | cut.deferred | meter.cut | meter.restored | ...
    at: dt.datetime = Field(sa_type=UtcTime)
    data: dict[str, Any] = Field(sa_type=sa.JSON, default_factory=dict)
    # Delivery to the site's webhook: "none" when the site had no webhook when it happened.
    state: str = Field(default="none", max_length=16)  # none | pending | delivered | failed
    attempts: int = Field(default=0)
    next_attempt_at: dt.datetime | None = Field(sa_type=UtcTime, default=None)
    delivered_at: dt.datetime | None = Field(sa_type=UtcTime, default=None)
    round_started_at: dt.datetime | None = Field(sa_type=UtcTime, default=None)


class SiteWebhook(SQLModel, table=True):
    """Where a site's events are POSTed, and the secret they are signed with (kept as issued)."""

    __tablename__ = "site_webhook"

    site_id: str = Field(foreign_key="site.id", primary_key=True, max_length=64)
    url: str = Field(max_length=2000)
    secret: str = Field(max_length=100)
    created_at: dt.datetime = Field(sa_type=UtcTime, default_factory=utcnow)


class DgSubscription(SQLModel, table=True):
    """A DG's callback (call 11): one per DG; registering again replaces the URL and the secret.

    The secret is kept as issued, not hashed: every delivery is signed with it.
    """

    __tablename__ = "dg_subscription"
    __table_args__ = (sa.ForeignKeyConstraint(["site_id", "dg_no"], ["dg.site_id", "dg.dg_no"]),)

    site_id: str = Field(primary_key=True, max_length=64)
    dg_no: str = Field(primary_key=True, max_length=64)
    url: str = Field(max_length=2000)
    secret: str = Field(max_length=100)
    created_at: dt.datetime = Field(sa_type=UtcTime, default_factory=utcnow)


class DgEvent(SQLModel, table=True):
    """An ON/OFF transition to call back, and where its delivery stands.

    `state` is pending (due at `next_attempt_at`), delivered, or failed (no success within the
    callback horizon of `round_started_at`; an admin can redeliver). `attempts` counts the
    attempts of the current round: a redelivery starts a new round; the attempt log keeps them all.
    """

    __tablename__ = "dg_event"
    __table_args__ = (
        sa.Index("ix_dg_event_due", "state", "next_attempt_at"),
        sa.Index("ix_dg_event_dg", "site_id", "dg_no", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(unique=True, max_length=40)
    site_id: str = Field(max_length=64)
    dg_no: str = Field(max_length=64)
    status: str = Field(max_length=3)  # "ON" | "OFF"
    at: dt.datetime = Field(sa_type=UtcTime)  # when the DG changed state
    state: str = Field(default="pending", max_length=16)
    attempts: int = Field(default=0)
    next_attempt_at: dt.datetime | None = Field(sa_type=UtcTime, default=None)
    delivered_at: dt.datetime | None = Field(sa_type=UtcTime, default=None)
    created_at: dt.datetime = Field(sa_type=UtcTime, default_factory=utcnow)
    round_started_at: dt.datetime = Field(sa_type=UtcTime, default_factory=utcnow)  # the horizon counts from it


class DeliveryAttempt(SQLModel):
    """One POST of an event to a URL: when, where, what came back, how long it took (the
    columns both attempt logs share; not a table itself)."""

    id: int | None = Field(default=None, primary_key=True)
    attempted_at: dt.datetime = Field(sa_type=UtcTime)
    url: str = Field(max_length=2000)
    http_status: int | None = Field(default=None)
    error: str = Field(default="", max_length=500)
    latency_ms: int = Field(default=0)


class DgDeliveryAttempt(DeliveryAttempt, table=True):
    """One POST of a DG event to its callback URL."""

    __tablename__ = "dg_delivery_attempt"

    event_id: str = Field(foreign_key="dg_event.event_id", index=True, max_length=40)


class SiteEventAttempt(DeliveryAttempt, table=True):
    """One POST of a site event to the site's webhook."""

    __tablename__ = "site_event_attempt"

    event_id: str = Field(foreign_key="site_event.event_id", index=True, max_length=40)


class AuditEvent(SQLModel, table=True):
    """One state change made by a person or a key: who, from where, when, what. Append-only.

    `actor` is `key:<name>`, `user:<name>` or `cli:<os user>`; `site_id` is the site it touched
    (None for gateway-wide changes, such as a key for every site); `details` holds the inputs
    that say what changed, never a secret. Triggers refuse UPDATE and DELETE (migration 0009).
    """

    __tablename__ = "audit_event"
    __table_args__ = (sa.Index("ix_audit_event_site", "site_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    at: dt.datetime = Field(sa_type=UtcTime, index=True)
    actor: str = Field(max_length=200)
    address: str = Field(default="", max_length=100)
    action: str = Field(max_length=64)
    site_id: str | None = Field(default=None, max_length=64)
    target: str = Field(default="", max_length=200)
    details: dict[str, Any] = Field(sa_type=sa.JSON, default_factory=dict)
