"""Recharges (Factech calls 3 and 4): money-safe across retries, processes and crashes.

A recharge is written before the head-end is asked (`open_recharge`), and settled from the
head-end's answer afterwards (`settle_recharge`); no database transaction is held open across
the network call.

- Idempotency: `(client, idempotency_key)` is a unique constraint. The first request inserts
  the row; any repeat, concurrent or later, in this process or another, finds that row instead
  of making a second one, and the same key with other parameters is a Conflict. So one key is
  one transaction id, and the head-end, idempotent by transaction id, credits it at most once.
- Settlement: one transaction locks the recharge and the meter, and only a recharge not yet
  settled changes: state, balance and the ledger's credit entry move together, once. A waiting
  recharge (queued, unreachable, no answer) keeps its transaction id for the reconciliation job
  (scheduler/reconcile.py) to ask the head-end about and settle with the same function, at the
  `next_check_at` it stored there, so a restart loses no check; past its expiry it ends as an
  error (`expire_recharge`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db.engine import Database
from storage.db.models import Meter, Recharge, Site
from storage.errors import Conflict, NotFound
from storage.money import site_events
from storage.money.command_log import meter_on_site, restore_if_credited
from storage.money.ledger import add_entry

FINAL = ("success", "error")
NO_SUCH_RECORD = "No such record found"  # the contract's words for an unknown transaction (call 4)
# What a head-end outcome makes of a recharge that is not settled yet.
STATE_BY_OUTCOME = {
    "applied": "success",
    "refused": "error",
    "queued": "waiting",
    "unreachable": "waiting",
    "failed": "waiting",  # no usable answer: it may have been applied; ask again by transaction id
    "unknown": "waiting",  # the head-end never got it: it can be sent again with the same id
}


@dataclass(frozen=True)
class RechargeView:
    """A recharge with what its replies show of the meter and site."""

    recharge: Recharge
    unit_no: str
    timezone: str
    balance: Decimal  # the meter's balance now


def new_transaction_id() -> str:
    """Our transaction id: unique across gateways, fit for the head-end's id pattern."""
    return f"TXN{uuid.uuid4().hex.upper()}"


async def open_recharge(
    db: Database,
    *,
    client: str,
    idempotency_key: str | None,
    site_id: str,
    meter_no: int,
    amount: Decimal,
    now: dt.datetime,
) -> tuple[Recharge, bool]:
    """The recharge for this request and whether this call created it.

    NotFound if the meter is not on the site, Conflict if it is retired or the key was used
    with other parameters. A repeat of a key returns the first recharge, in whatever state.
    """
    try:
        async with db.transaction() as session:
            if idempotency_key is not None:
                existing = await _by_key(session, client, idempotency_key)
                if existing is not None:
                    return _same_request(existing, site_id, meter_no, amount), False
            meter = await meter_on_site(session, site_id=site_id, meter_no=meter_no)
            if not meter.active:
                raise Conflict("Meter is retired", {"meter_no": ["Retired meter."]})
            recharge = Recharge(
                transaction_id=new_transaction_id(),
                client=client,
                idempotency_key=idempotency_key,
                site_id=site_id,
                meter_no=meter_no,
                amount=amount,
                created_at=now,
                updated_at=now,
            )
            session.add(recharge)
        return recharge, True
    except IntegrityError:
        if idempotency_key is None:
            raise
    # A concurrent request with the same key committed first (PostgreSQL's unique index waited
    # for it): that one is the recharge.
    async with db.reader() as session:
        existing = await _by_key(session, client, idempotency_key)
    assert existing is not None
    return _same_request(existing, site_id, meter_no, amount), False


async def _by_key(session: AsyncSession, client: str, key: str) -> Recharge | None:
    query = select(Recharge).where(Recharge.client == client, Recharge.idempotency_key == key)
    return (await session.execute(query)).scalar_one_or_none()


def _same_request(recharge: Recharge, site_id: str, meter_no: int, amount: Decimal) -> Recharge:
    if (recharge.site_id, recharge.meter_no, recharge.amount) != (site_id, meter_no, amount):
        raise Conflict(
            "Idempotency-Key was already used with other parameters",
            {"Idempotency-Key": ["Already used for another recharge."]},
        )
    return recharge


async def settle_recharge(
    db: Database,
    *,
    transaction_id: str,
    outcome: str,
    now: dt.datetime,
    token: str | None = None,
    reason: str = "",
    applied_at: dt.datetime | None = None,
    next_check_at: dt.datetime | None = None,
) -> Recharge:
    """Record the head-end's answer (an `adapters.headend.Outcome` value) in one transaction.

    applied: balance credited, ledger entry, token, and a restore if that ends a zero-balance
    cut; refused: error with the reason; anything else: waiting, to be checked again at
    `next_check_at` (None: at once). A settled recharge never changes again, so settling twice
    (a retry, the reconciliation job) credits once.
    """
    async with db.transaction() as session:
        query = select(Recharge).where(Recharge.transaction_id == transaction_id).with_for_update()
        recharge = (await session.execute(query)).scalar_one_or_none()
        if recharge is None:
            raise NotFound(NO_SUCH_RECORD, {"transaction_id": ["Unknown transaction."]})
        if recharge.state in FINAL:
            return recharge
        recharge.state = STATE_BY_OUTCOME[outcome]
        recharge.headend_state, recharge.reason, recharge.updated_at = outcome, reason[:500], now
        recharge.next_check_at = next_check_at if recharge.state == "waiting" else None
        recharge.checks += 1  # answers recorded: the reconciliation job's backoff counts them
        if recharge.state == "success":
            meter = await session.get(Meter, recharge.meter_no, with_for_update=True)
            assert meter is not None  # the recharge's foreign key
            add_entry(
                session,
                meter=meter,
                kind="credit",
                amount=recharge.amount,
                reason="recharge",
                transaction_id=transaction_id,
                created_by=recharge.client,
                now=now,
            )
            recharge.token, recharge.balance_after = token, meter.balance
            recharge.applied_at = applied_at or now
            await restore_if_credited(session, meter=meter, now=now)
        if recharge.state in FINAL:
            await _settled_event(session, recharge, now)
    return recharge


async def _settled_event(session: AsyncSession, recharge: Recharge, now: dt.datetime) -> None:
    """`recharge.settled`, in the transaction that settles it."""
    await site_events.add_event(
        session,
        site_id=recharge.site_id,
        type="recharge.settled",
        at=now,
        now=now,
        meter_no=recharge.meter_no,
        data={
            "transaction_id": recharge.transaction_id,
            "amount": str(recharge.amount),
            "state": recharge.state,
            "balance_after": None if recharge.balance_after is None else str(recharge.balance_after),
            "reason": recharge.reason,
        },
    )


async def recharge_view(db: Database, *, transaction_id: str, site_id: str | None = None) -> RechargeView:
    """A recharge by transaction id (on `site_id` when given); NotFound otherwise."""
    query = (
        select(Recharge, Meter.unit_no, Site.timezone, Meter.balance)
        .join(Meter, Meter.meter_no == Recharge.meter_no)
        .join(Site, Site.id == Recharge.site_id)
        .where(Recharge.transaction_id == transaction_id)
    )
    if site_id is not None:
        query = query.where(Recharge.site_id == site_id)
    async with db.reader() as session:
        row = (await session.execute(query)).first()
    if row is None:
        raise NotFound(NO_SUCH_RECORD, {"transaction_id": ["Unknown transaction."]})
    return RechargeView(*row)


async def waiting_recharges(
    db: Database,
    *,
    limit: int = 100,
    now: dt.datetime | None = None,
    requested_before: dt.datetime | None = None,
) -> list[Recharge]:
    """Recharges still to settle (waiting, or requested and left by a crash), oldest first.

    With `now`: only those due (no `next_check_at`, or one not after `now`). With
    `requested_before`: `requested` ones only if created before it, so a request still being
    sent by an API handler is left to it.
    """
    unsettled = Recharge.state.in_(("requested", "waiting"))  # type: ignore[attr-defined]
    if requested_before is not None:
        unsettled = (Recharge.state == "waiting") | (
            (Recharge.state == "requested") & (Recharge.created_at < requested_before)  # type: ignore[operator]
        )
    query = select(Recharge).where(unsettled)
    if now is not None:
        query = query.where(or_(Recharge.next_check_at.is_(None), Recharge.next_check_at <= now))  # type: ignore[union-attr, operator]
    query = query.order_by(Recharge.id).limit(limit)  # type: ignore[arg-type]
    async with db.reader() as session:
        return list((await session.execute(query)).scalars())


async def expire_recharge(db: Database, *, transaction_id: str, reason: str, now: dt.datetime) -> Recharge:
    """End a recharge not settled in time as an error, remarks "expired: <reason>" (one
    transaction). The balance does not move; a recharge settled meanwhile stays as it is."""
    async with db.transaction() as session:
        query = select(Recharge).where(Recharge.transaction_id == transaction_id).with_for_update()
        recharge = (await session.execute(query)).scalar_one_or_none()
        if recharge is None:
            raise NotFound(NO_SUCH_RECORD, {"transaction_id": ["Unknown transaction."]})
        if recharge.state in FINAL:
            return recharge
        recharge.state, recharge.reason = "error", f"expired: {reason}"[:500]
        recharge.next_check_at, recharge.updated_at = None, now
        await _settled_event(session, recharge, now)
    return recharge
