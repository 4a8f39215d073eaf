"""The durable command log: relay and load commands from request to the head-end's answer.

Every command is written before anything is sent, so a crash loses none:

- a command asked for over the API (start, stop, load) is written as `sent` with its
  `command_id` in one transaction, then sent; its answer is recorded by `finish_command`;
- a command queued by the gateway itself (ingest's zero-balance `cut`, a recharge's `restore`)
  is written as `requested`; the dispatcher job claims it (`claim_due`), sends it, records it;
- a `sent` command with no answer for a while (its process died) is claimed again and re-sent
  with the same `command_id`, which the head-end answers with its first answer;
- a queued command the head-end could not carry out for now (unreachable, no usable answer)
  goes back to `requested` with a durable `next_attempt_at` (`finish_command(retry_at=...)`),
  and is re-sent then, still under its `command_id`; one still not done by its deadline ends
  `failed` with the reason (`claim_due(deadline_before=...)`).

Recording the answer and the meter's new relay state or loads is one transaction.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db.engine import Database
from storage.db.models import Command, Holiday, Meter, Site
from storage.errors import Conflict, NotFound
from storage.money import site_events
from storage.money.policy import NoCutWindows, cut_threshold
from storage.registry.meter_roles import FLAT

CUT_REASON = "zero balance"  # the reason of the cuts `CutDecision.queue` queues (storage.ingest.rules)
RESTORE_REASON = "balance above the cut threshold"
RELAY_ACTIONS = {"start": True, "restore": True, "stop": False, "cut": False}  # action → relay on after it
PENDING = ("requested", "sent")  # on its way to the head-end
SUPPLY_EVENTS = {"cut": "meter.cut", "restore": "meter.restored"}  # the gateway's own relay commands
ALREADY = {True: "Meter was already STARTED", False: "Meter was already STOPPED"}


def new_command_id() -> str:
    """A head-end idempotency id, unique across gateways sharing one head-end."""
    return f"gw-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Opened:
    """A command written as sent, with the unit its meter serves (for the reply)."""

    command: Command
    unit_no: str


async def meter_on_site(session: AsyncSession, *, site_id: str, meter_no: int, lock: bool = False) -> Meter:
    """The flat if it is on this site; NotFound worded the same whether it is unknown, elsewhere or
    a bulk meter (`storage.registry.meter_roles`: recharges, relay and load commands are for flats)."""
    meter = await session.get(Meter, meter_no, with_for_update=lock)
    if meter is None or meter.site_id != site_id:
        raise NotFound("Meter not Found", {"meter_no": ["Unknown meter on this site."]})
    if meter.role != FLAT:  # measured for the energy audit, never billed nor switched
        raise NotFound("Meter not Found", {"meter_no": [f"A bulk meter ({meter.role}): not billed or operated."]})
    return meter


async def open_command(
    db: Database,
    *,
    site_id: str,
    meter_no: int,
    action: str,
    params: dict[str, Any],
    reason: str,
    now: dt.datetime,
) -> Opened:
    """Write an API command as sent (one transaction). Conflict if the meter is retired or its
    relay already is where a start/stop would put it (as far as the gateway knows)."""
    async with db.transaction() as session:
        meter = await meter_on_site(session, site_id=site_id, meter_no=meter_no, lock=True)
        if not meter.active:
            raise Conflict("Meter is retired", {"meter_no": ["Retired meter."]})
        wanted = RELAY_ACTIONS.get(action)
        if wanted is not None and meter.relay_on == wanted:
            raise Conflict(ALREADY[wanted])
        command = Command(
            meter_no=meter_no,
            action=action,
            reason=reason,
            params=params,
            state="sent",
            command_id=new_command_id(),
            created_at=now,
            updated_at=now,
            sent_at=now,
            attempts=1,
        )
        session.add(command)
        unit_no = meter.unit_no
    return Opened(command, unit_no)


async def claim_due(
    db: Database,
    *,
    now: dt.datetime,
    stale_before: dt.datetime,
    deadline_before: dt.datetime | None = None,
    limit: int = 100,
) -> list[Command]:
    """Claim commands to send: `requested` ones due by `now`, and `sent` ones unanswered since
    `stale_before`.

    A requested cut whose meter is above the site's cut threshold again, a restore whose meter is
    not, or a relay command a later one supersedes, is cancelled instead; a cut falling due inside
    one of the site's no-cut windows is put off to the window's end (`cut.deferred`); a requested
    one whose deadline (`deadline_start`) is before `deadline_before` ends `failed`. Claiming
    sets `sent` (and a `command_id` on first send) in
    the same transaction that reads the rows, locked with SKIP LOCKED on PostgreSQL, so two
    dispatchers never claim one command.
    """
    due = (Command.state == "requested") & or_(
        Command.next_attempt_at.is_(None),  # type: ignore[union-attr]
        Command.next_attempt_at <= now,  # type: ignore[operator]
    )
    query = (
        select(Command)
        .where(or_(due, (Command.state == "sent") & (Command.sent_at < stale_before)))  # type: ignore[operator]
        .order_by(Command.id)  # type: ignore[arg-type]
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed: list[Command] = []
    async with db.transaction() as session:
        for command in (await session.execute(query)).scalars():
            if command.state == "requested":
                if deadline_before is not None and deadline_start(command) < deadline_before:
                    last = f" (last: {command.result})" if command.result else ""
                    why = f"deadline passed after {command.attempts} attempt(s){last}"
                    _finish(command, "failed", why, command.answer, now)
                    continue
                meter = await session.get(Meter, command.meter_no)
                site = await session.get(Site, meter.site_id) if meter is not None else None
                why_not = _obsolete(command, meter, site) or await _superseded(session, command)
                if why_not:
                    _finish(command, "cancelled", why_not, None, now)
                    continue
                if command.action == "cut" and meter is not None and site is not None:
                    until = await _deferral(session, site, now)
                    if until is not None:
                        await _defer(session, command, meter, until, now)
                        continue
            command.state, command.sent_at, command.updated_at = "sent", now, now
            command.command_id = command.command_id or new_command_id()
            command.attempts += 1
            command.next_attempt_at = None
            claimed.append(command)
    return claimed


async def _superseded(session: AsyncSession, command: Command) -> str | None:
    """Why a queued relay command should not be sent: a later relay command of its meter (a
    retry waiting for the head-end must not undo what staff or the gateway did since)."""
    if command.action not in RELAY_ACTIONS:
        return None
    later = await session.scalar(
        select(Command.id)
        .where(
            Command.meter_no == command.meter_no,
            Command.id > command.id,  # type: ignore[operator]
            Command.action.in_(RELAY_ACTIONS),  # type: ignore[attr-defined]
            Command.state.in_(("done", *PENDING)),  # type: ignore[attr-defined]
        )
        .limit(1)
    )
    return f"superseded by command {later}" if later is not None else None


def _obsolete(command: Command, meter: Meter | None, site: Site | None) -> str | None:
    """Why a queued command should no longer be sent, if it should not."""
    if meter is None or not meter.active or site is None:
        return "meter retired"
    threshold = cut_threshold(site.grace_amount)
    if command.action == "cut" and meter.balance > threshold:
        return "balance above the cut threshold again before the cut was sent"
    if command.action == "restore" and meter.balance <= threshold:
        return "balance at or below the cut threshold again before the restore was sent"
    return None


async def _deferral(session: AsyncSession, site: Site, now: dt.datetime) -> dt.datetime | None:
    """When a zero-balance cut due now may be carried out, if it must wait for a no-cut window."""
    holidays = set((await session.execute(select(Holiday.day).where(Holiday.site_id == site.id))).scalars())
    return NoCutWindows.of(site, holidays).deferral(now)


def deadline_start(command: Command) -> dt.datetime:
    """Where a queued command's deadline counts from: when it was queued, or when the no-cut
    window that deferred it ended (a cut deferred over a long weekend is not late)."""
    deferred = command.params.get("deferred_until") if command.params else None
    return max(command.created_at, dt.datetime.fromisoformat(deferred)) if deferred else command.created_at


async def _defer(session: AsyncSession, command: Command, meter: Meter, until: dt.datetime, now: dt.datetime) -> None:
    """Put a cut off until `until`; the first time, a `cut.deferred` event says when it will happen."""
    first = "deferred_until" not in (command.params or {})
    command.next_attempt_at, command.updated_at = until, now
    command.params = {**(command.params or {}), "deferred_until": until.isoformat()}
    command.result = f"deferred by a no-cut window until {until:%Y-%m-%d %H:%M:%S}Z"
    if first:
        await site_events.add_event(
            session,
            site_id=meter.site_id,
            type="cut.deferred",
            at=now,
            now=now,
            meter_no=meter.meter_no,
            data={"until": until.isoformat().replace("+00:00", "Z"), "balance": str(meter.balance)},
        )


def _finish(command: Command, state: str, result: str, answer: dict[str, Any] | None, now: dt.datetime) -> None:
    command.state, command.result, command.answer = state, result[:500], answer
    command.finished_at = command.updated_at = now


async def finish_command(
    db: Database,
    *,
    command: Command,
    done: bool,
    result: str,
    answer: dict[str, Any] | None,
    now: dt.datetime,
    relay_on: bool | None = None,
    load_dg: Decimal | None = None,
    load_grid: Decimal | None = None,
    retry_at: dt.datetime | None = None,
) -> Command:
    """Record a sent command's answer and, when done, what it changed on the meter.

    Not done with a `retry_at`: back to `requested`, to be sent again then; without: `failed`.
    Only a command still `sent` is finished (a re-send that lost the race changes nothing).
    A cut carried out on a meter that has money again queues its restore at once.
    """
    async with db.transaction() as session:
        row = await session.get(Command, command.id, with_for_update=True)
        if row is None or row.state != "sent":
            return row or command
        if not done and retry_at is not None:
            row.state, row.result, row.answer = "requested", result[:500], answer
            row.next_attempt_at, row.updated_at = retry_at, now
            return row
        _finish(row, "done" if done else "failed", result, answer, now)
        if done:
            meter = await session.get(Meter, row.meter_no, with_for_update=True)
            if meter is not None:
                if relay_on is not None:
                    meter.relay_on = relay_on
                if load_dg is not None and load_grid is not None:
                    meter.load_dg, meter.load_grid = load_dg, load_grid
                if row.action in SUPPLY_EVENTS:
                    await site_events.add_event(
                        session,
                        site_id=meter.site_id,
                        type=SUPPLY_EVENTS[row.action],
                        at=now,
                        now=now,
                        meter_no=meter.meter_no,
                        data={"reason": row.reason, "balance": str(meter.balance)},
                    )
                if row.action == "cut":
                    await restore_if_credited(session, meter=meter, now=now)
        return row


async def restore_if_credited(session: AsyncSession, *, meter: Meter, now: dt.datetime) -> Command | None:
    """After money came in (same transaction): if the balance is above the site's cut threshold,
    drop pending (or deferred) zero-balance cuts and, if the supply is off because of one, queue
    a restore, which the caller should send at once (prompt restore).

    A meter stopped by staff (call 7) stays stopped: only a cut for zero balance is undone.
    """
    site = await session.get(Site, meter.site_id)
    if site is None or meter.balance <= cut_threshold(site.grace_amount) or not meter.active:
        return None
    await session.execute(
        update(Command)
        .where(Command.meter_no == meter.meter_no, Command.action == "cut", Command.state == "requested")  # type: ignore[arg-type]
        .values(state="cancelled", result=RESTORE_REASON, finished_at=now, updated_at=now)
    )
    if meter.relay_on:
        return None
    last_relay = (
        await session.execute(
            select(Command)
            .where(
                Command.meter_no == meter.meter_no,
                Command.action.in_(RELAY_ACTIONS),  # type: ignore[attr-defined]
                Command.state.in_(("done", *PENDING)),  # type: ignore[attr-defined]
            )
            .order_by(Command.id.desc())  # type: ignore[union-attr]
            .limit(1)
        )
    ).scalar_one_or_none()
    if last_relay is None or last_relay.action != "cut" or last_relay.state != "done":
        return None  # not cut for zero balance, or a relay command is already on its way
    restore = Command(meter_no=meter.meter_no, action="restore", reason=RESTORE_REASON, created_at=now, updated_at=now)
    session.add(restore)
    return restore


async def record_status(
    db: Database, *, meter_no: int, relay_on: bool, load_dg: Decimal | None, load_grid: Decimal | None
) -> None:
    """What the head-end said of a meter live (call 8): its relay, and its loads when given."""
    values: dict[str, Any] = {"relay_on": relay_on}
    if load_dg is not None and load_grid is not None:
        values.update(load_dg=load_dg, load_grid=load_grid)
    async with db.transaction() as session:
        await session.execute(update(Meter).where(Meter.meter_no == meter_no).values(**values))  # type: ignore[arg-type]


async def site_meter(db: Database, *, site_id: str, meter_no: int) -> Meter:
    """A meter of a site (read only); NotFound as `meter_on_site`."""
    async with db.reader() as session:
        return await meter_on_site(session, site_id=site_id, meter_no=meter_no)


async def list_commands(db: Database, *, meter_no: int | None = None, state: str | None = None) -> list[Command]:
    """Commands, oldest first, optionally of one meter and/or in one state."""
    query = select(Command).order_by(Command.id)  # type: ignore[arg-type]
    if meter_no is not None:
        query = query.where(Command.meter_no == meter_no)
    if state is not None:
        query = query.where(Command.state == state)
    async with db.reader() as session:
        return list((await session.execute(query)).scalars())
