"""Site events: what a society's staff should hear of, listed per site and delivered to the
site's webhook (signed and retried like DG callbacks, scheduler/deliveries.py).

Types: `balance.low` (a meter's balance crossed an alert threshold), `cut.deferred` (a
zero-balance cut waits for the end of a no-cut window), `meter.cut`, `meter.restored`,
`recharge.settled`, `dg.late_change` (a DG state change arrived after readings of its interval
were billed). An event is written in the transaction that makes it true (`add_event`), so a
committed change always has its event and a rolled-back one never does; it is queued for
delivery if the site has a webhook at that moment.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any, NamedTuple

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db.engine import Database
from storage.db.event_models import SiteEvent, SiteEventAttempt, SiteWebhook
from storage.db.models import Site
from storage.dg.dg_events import PENDING, after_attempt
from storage.errors import NotFound, unknown, unknown_site

NONE = "none"  # the site had no webhook when it happened
TYPES = ("balance.low", "cut.deferred", "meter.cut", "meter.restored", "recharge.settled", "dg.late_change")


def new_event_id() -> str:
    """An event id: hex, so no "." blurs the signed "id.timestamp.body"."""
    return f"evt_{secrets.token_hex(16)}"


async def add_event(
    session: AsyncSession,
    *,
    site_id: str,
    type: str,
    at: dt.datetime,
    now: dt.datetime,
    meter_no: int | None = None,
    data: dict[str, Any] | None = None,
) -> SiteEvent:
    """Record an event in the caller's transaction; due for delivery at once if the site has a webhook."""
    assert type in TYPES, type
    hooked = await session.scalar(select(SiteWebhook.url).where(SiteWebhook.site_id == site_id))
    event = SiteEvent(
        event_id=new_event_id(),
        site_id=site_id,
        meter_no=meter_no,
        type=type,
        at=at,
        data=data or {},
        state=PENDING if hooked else NONE,
        next_attempt_at=now if hooked else None,
        round_started_at=now if hooked else None,
    )
    session.add(event)
    return event


async def list_events(db: Database, *, site_id: str, after: str | None = None, limit: int = 100) -> list[SiteEvent]:
    """A site's events in the order they happened (oldest first), those after event `after` when
    given; NotFound for an unknown site or an `after` that is not one of its events."""
    async with db.reader() as session:
        if await session.get(Site, site_id) is None:
            raise unknown_site(site_id)
        query = select(SiteEvent).where(SiteEvent.site_id == site_id)
        if after is not None:
            after_id = await session.scalar(
                select(SiteEvent.id).where(SiteEvent.site_id == site_id, SiteEvent.event_id == after)
            )
            if after_id is None:
                raise unknown("event", after, field="after", where=f" of site {site_id!r}")
            query = query.where(SiteEvent.id > after_id)  # type: ignore[operator]
        query = query.order_by(SiteEvent.id).limit(limit)  # type: ignore[arg-type]
        return list((await session.execute(query)).scalars())


async def set_webhook(db: Database, *, site_id: str, url: str, secret: str, now: dt.datetime) -> SiteWebhook:
    """Set the site's webhook URL and secret, replacing any earlier ones."""
    async with db.transaction() as session:
        if await session.get(Site, site_id, with_for_update=True) is None:
            raise unknown_site(site_id)
        hook = await session.get(SiteWebhook, site_id)
        if hook is None:
            hook = SiteWebhook(site_id=site_id, url=url, secret=secret, created_at=now)
            session.add(hook)
        else:
            hook.url, hook.secret, hook.created_at = url, secret, now
    return hook


async def get_webhook(db: Database, *, site_id: str) -> SiteWebhook:
    """The site's webhook; NotFound if it has none."""
    async with db.reader() as session:
        hook = await session.get(SiteWebhook, site_id)
    if hook is None:
        raise NotFound(f"site {site_id!r} has no webhook", {"site_id": ["No webhook."]})
    return hook


async def delete_webhook(db: Database, *, site_id: str) -> None:
    """Remove the site's webhook; events still pending are no longer delivered. NotFound if none."""
    async with db.transaction() as session:
        hook = await session.get(SiteWebhook, site_id)
        if hook is None:
            raise NotFound(f"site {site_id!r} has no webhook", {"site_id": ["No webhook."]})
        await session.delete(hook)
        await session.execute(
            update(SiteEvent)
            .where(SiteEvent.site_id == site_id, SiteEvent.state == PENDING)  # type: ignore[arg-type]
            .values(state=NONE, next_attempt_at=None)
        )


class DueSiteEvent(NamedTuple):
    """An event to POST now, with what is needed to sign and address it."""

    event_id: str
    site_id: str
    meter_no: int | None
    type: str
    at: dt.datetime
    data: dict[str, Any]
    timezone: str
    url: str
    secret: str
    attempts: int
    round_started_at: dt.datetime


async def due_events(db: Database, *, now: dt.datetime, limit: int) -> list[DueSiteEvent]:
    """Pending events due by `now`, oldest first, with their site's webhook."""
    query = (
        select(
            SiteEvent.event_id,
            SiteEvent.site_id,
            SiteEvent.meter_no,
            SiteEvent.type,
            SiteEvent.at,
            SiteEvent.data,
            Site.timezone,
            SiteWebhook.url,
            SiteWebhook.secret,
            SiteEvent.attempts,
            SiteEvent.round_started_at,
        )
        .join(SiteWebhook, SiteWebhook.site_id == SiteEvent.site_id)
        .join(Site, Site.id == SiteEvent.site_id)
        .where(SiteEvent.state == PENDING, SiteEvent.next_attempt_at <= now)  # type: ignore[operator]
        .order_by(SiteEvent.id)
        .limit(limit)
    )
    async with db.reader() as session:
        return [DueSiteEvent(*row) for row in await session.execute(query)]


async def record_attempt(
    db: Database, *, attempt: SiteEventAttempt, delivered: bool, next_attempt_at: dt.datetime | None
) -> None:
    """Log one attempt and move its event on: delivered, due again at `next_attempt_at`, or failed (None)."""
    changes = after_attempt(attempted_at=attempt.attempted_at, delivered=delivered, next_attempt_at=next_attempt_at)
    async with db.transaction() as session:
        session.add(attempt)
        await session.execute(
            update(SiteEvent)
            .where(SiteEvent.event_id == attempt.event_id)  # type: ignore[arg-type]
            .values(attempts=SiteEvent.attempts + 1, **changes)
        )
