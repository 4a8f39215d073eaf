"""The audit trail: every state change made by a person or a key, appended, never edited.

`record` is the one way in: the admin API, the Factech calls that act, the CLI and the portal
call it after the change they made was committed. The table refuses UPDATE and DELETE
(triggers, migration 0009), so what is written stays as written. `list_events` pages through it
by id, limited to the sites a caller may see.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db.engine import Database
from storage.db.event_models import AuditEvent

PAGE = 500  # events per listing, at most
SECRET_FIELDS = frozenset({"key", "token", "secret", "password", "password_hash", "new_password"})


def _plain(value: Any) -> Any:
    """A JSON-storable copy: Decimals and dates as text, secrets never."""
    if isinstance(value, Mapping):
        return {str(k): ("<hidden>" if str(k) in SECRET_FIELDS else _plain(v)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal | dt.date | dt.datetime):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _event(
    *, actor: str, action: str, at: dt.datetime, site_id: str | None, target: str, address: str, details: Any
) -> AuditEvent:
    return AuditEvent(
        at=at,
        actor=actor[:200],
        address=(address or "")[:100],
        action=action[:64],
        site_id=site_id,
        target=target[:200],
        details=_plain(details or {}),
    )


async def record(
    db: Database | AsyncSession,
    *,
    actor: str,
    action: str,
    at: dt.datetime,
    site_id: str | None = None,
    target: str = "",
    address: str = "",
    details: Mapping[str, Any] | None = None,
) -> None:
    """Append one event. Given a session, it joins that transaction (committed with the change);
    given the database, it commits on its own.

    actor: `key:<name>`, `user:<name>` or `cli:<os user>`; action: a dotted verb such as
    `meter.recharge`; target: the object (meter number, key name ...); details: what was asked
    (secrets under the names in SECRET_FIELDS are written as "<hidden>").
    """
    event = _event(actor=actor, action=action, at=at, site_id=site_id, target=target, address=address, details=details)
    if isinstance(db, AsyncSession):
        db.add(event)
        return
    async with db.transaction() as session:
        session.add(event)


async def list_events(
    db: Database,
    *,
    sites: Collection[str] | None,
    site_id: str | None = None,
    after_id: int | None = None,
    after_time: dt.datetime | None = None,
    limit: int = PAGE,
) -> list[AuditEvent]:
    """Events oldest first, after an id or a time, of one site or of `sites` (None: every site,
    gateway-wide events included)."""
    query = select(AuditEvent).order_by(AuditEvent.id).limit(min(limit, PAGE))  # type: ignore[arg-type]
    if site_id is not None:
        query = query.where(AuditEvent.site_id == site_id)
    elif sites is not None:
        query = query.where(AuditEvent.site_id.in_(list(sites)))  # type: ignore[union-attr]
    if after_id is not None:
        query = query.where(AuditEvent.id > after_id)  # type: ignore[operator]
    if after_time is not None:
        query = query.where(AuditEvent.at > after_time)
    async with db.reader() as session:
        return list((await session.execute(query)).scalars())
