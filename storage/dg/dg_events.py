"""DG sensing in the store: callback subscriptions, the ON/OFF events to deliver, the attempt log.

An event is queued in the same transaction as the DG's state change (`queue_event`, called by
`storage.dg.posts.record_dg_post` right after `record_dg_state`), so a committed transition always has its callback
and a rolled-back one never does. Events are made only for DGs with a subscription at that
moment: with no URL there is nobody to call, and registering later should not replay old
transitions as if they were news (the full history stays in `dg_status_change`).

Delivery goes to the DG's subscription as it is at the attempt, so re-registering redirects
pending events to the new URL, signed with the new secret.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any, NamedTuple

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db.engine import Database
from storage.db.event_models import DgDeliveryAttempt, DgEvent, DgSubscription
from storage.db.models import DieselGenerator, Site
from storage.errors import unknown, unknown_dg

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


class DueEvent(NamedTuple):
    """An event to POST now, with what is needed to sign and address it."""

    event_id: str
    site_id: str
    dg_no: str
    status: str
    at: dt.datetime
    timezone: str
    url: str
    secret: str
    attempts: int  # attempts already made in this round
    round_started_at: dt.datetime  # queued, or redelivered: the callback horizon counts from it


class Delivery(NamedTuple):
    """An event and its attempts, newest attempt last."""

    event: DgEvent
    attempts: list[DgDeliveryAttempt]


async def subscribe(
    db: Database, *, site_id: str, dg_no: str, url: str, secret: str, now: dt.datetime
) -> DgSubscription:
    """Set the DG's callback URL and secret, replacing any earlier ones; NotFound for an unknown DG."""
    async with db.transaction() as session:
        # Locking the DG row makes two registrations of one DG take turns (PostgreSQL).
        if await session.get(DieselGenerator, (site_id, dg_no), with_for_update=True) is None:
            raise unknown_dg(site_id, dg_no)
        subscription = await session.get(DgSubscription, (site_id, dg_no))
        if subscription is None:
            subscription = DgSubscription(site_id=site_id, dg_no=dg_no, url=url, secret=secret, created_at=now)
            session.add(subscription)
        else:
            subscription.url, subscription.secret, subscription.created_at = url, secret, now
    return subscription


async def queue_event(
    session: AsyncSession, *, site_id: str, dg_no: str, status: str, at: dt.datetime, now: dt.datetime
) -> DgEvent | None:
    """Queue the callback of one ON/OFF transition, due at once; None if the DG has no subscription."""
    subscribed = await session.scalar(
        select(DgSubscription.url).where(DgSubscription.site_id == site_id, DgSubscription.dg_no == dg_no)
    )
    if subscribed is None:
        return None
    event = DgEvent(
        event_id=f"evt_{secrets.token_hex(16)}",  # hex: no "." to blur the signed "id.timestamp.body"
        site_id=site_id,
        dg_no=dg_no,
        status=status,
        at=at,
        next_attempt_at=now,
        created_at=now,
        round_started_at=now,
    )
    session.add(event)
    return event


async def due_events(db: Database, *, now: dt.datetime, limit: int) -> list[DueEvent]:
    """Pending events due by `now`, oldest transition first, with their subscription and timezone."""
    query = (
        select(
            DgEvent.event_id,
            DgEvent.site_id,
            DgEvent.dg_no,
            DgEvent.status,
            DgEvent.at,
            Site.timezone,
            DgSubscription.url,
            DgSubscription.secret,
            DgEvent.attempts,
            DgEvent.round_started_at,
        )
        .join(DgSubscription, (DgSubscription.site_id == DgEvent.site_id) & (DgSubscription.dg_no == DgEvent.dg_no))
        .join(Site, Site.id == DgEvent.site_id)
        .where(DgEvent.state == PENDING, DgEvent.next_attempt_at <= now)  # type: ignore[operator]
        .order_by(DgEvent.at, DgEvent.id)
        .limit(limit)
    )
    async with db.reader() as session:
        return [DueEvent(*row) for row in await session.execute(query)]


def after_attempt(*, attempted_at: dt.datetime, delivered: bool, next_attempt_at: dt.datetime | None) -> dict[str, Any]:
    """An event's new delivery columns after an attempt (DG callbacks and site events alike)."""
    if delivered:
        return {"state": DELIVERED, "delivered_at": attempted_at, "next_attempt_at": None}
    if next_attempt_at is None:
        return {"state": FAILED, "next_attempt_at": None}
    return {"next_attempt_at": next_attempt_at}


async def record_attempt(
    db: Database,
    *,
    attempt: DgDeliveryAttempt,
    delivered: bool,
    next_attempt_at: dt.datetime | None,
) -> None:
    """Log one attempt and move its event on: delivered, due again at `next_attempt_at`, or failed (None)."""
    changes = after_attempt(attempted_at=attempt.attempted_at, delivered=delivered, next_attempt_at=next_attempt_at)
    async with db.transaction() as session:
        session.add(attempt)
        await session.execute(
            update(DgEvent)
            .where(DgEvent.event_id == attempt.event_id)  # type: ignore[arg-type]
            .values(attempts=DgEvent.attempts + 1, **changes)
        )


async def list_deliveries(db: Database, *, site_id: str, dg_no: str, limit: int = 100) -> list[Delivery]:
    """The DG's latest events (newest first) with every attempt; NotFound for an unknown DG."""
    async with db.reader() as session:
        if await session.get(DieselGenerator, (site_id, dg_no)) is None:
            raise unknown_dg(site_id, dg_no)
        events = list(
            (
                await session.execute(
                    select(DgEvent)
                    .where(DgEvent.site_id == site_id, DgEvent.dg_no == dg_no)
                    .order_by(DgEvent.at.desc(), DgEvent.id.desc())  # type: ignore[attr-defined, union-attr]
                    .limit(limit)
                )
            ).scalars()
        )
        by_event: dict[str, list[DgDeliveryAttempt]] = {event.event_id: [] for event in events}
        if by_event:
            attempts = await session.execute(
                select(DgDeliveryAttempt)
                .where(DgDeliveryAttempt.event_id.in_(by_event))  # type: ignore[attr-defined]
                .order_by(DgDeliveryAttempt.id)
            )
            for attempt in attempts.scalars():
                by_event[attempt.event_id].append(attempt)
    return [Delivery(event, by_event[event.event_id]) for event in events]


async def redeliver(db: Database, *, site_id: str, dg_no: str, event_id: str, now: dt.datetime) -> DgEvent:
    """Queue an event again, due now, with a fresh round of retries (delivered or not): the
    callback horizon counts from now."""
    async with db.transaction() as session:
        event = await session.scalar(
            select(DgEvent)
            .where(DgEvent.event_id == event_id, DgEvent.site_id == site_id, DgEvent.dg_no == dg_no)
            .with_for_update()
        )
        if event is None:
            raise unknown("event", event_id, field="event_id", where=f" of DG {dg_no!r}")
        event.state, event.attempts, event.next_attempt_at, event.round_started_at = PENDING, 0, now, now
    return event
