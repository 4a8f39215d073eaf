"""Operations that take the store and the head-end together, shared by API handlers and jobs.

`send_command` carries out one logged command (written as `sent`) and records the answer;
`recharge` writes a recharge and hands it to `credit_and_settle`, which asks the head-end to
credit it and settles it with the answer (the reconciliation job settles with the same
`settle_answer`, and sends a credit the head-end never got with the same `credit_and_settle`).
None holds a database transaction while the head-end is asked.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from adapters.headend import HeadEnd, Outcome, Result
from storage.clock import Clock
from storage.db.engine import Database
from storage.db.models import Command, Recharge
from storage.money import command_log
from storage.money import recharge as recharges


async def ask_headend(headend: HeadEnd, command: Command) -> Result:
    """Send a command to the head-end under its `command_id`."""
    assert command.command_id is not None, "a command gets its id when it is sent"
    if command.action == "load":
        return await headend.set_load(
            command.meter_no,
            command_id=command.command_id,
            load_dg=Decimal(command.params["load_dg"]),
            load_grid=Decimal(command.params["load_grid"]),
        )
    return await headend.relay(
        command.meter_no, command_id=command.command_id, on=command_log.RELAY_ACTIONS[command.action]
    )


TRANSIENT = (Outcome.UNREACHABLE, Outcome.FAILED)  # worth asking again later; a refusal is not


async def send_command(
    db: Database, headend: HeadEnd, command: Command, clock: Clock, *, retry_at: dt.datetime | None = None
) -> tuple[Command, Result]:
    """Carry out a sent command and record the answer: done if applied, failed otherwise, or,
    with `retry_at`, a transient failure back to `requested` to be sent again then."""
    result = await ask_headend(headend, command)
    text = result.outcome.value if not result.reason else f"{result.outcome.value}: {result.reason}"
    if result.applied and command.action == "load":
        effect = {"load_dg": result.load_dg, "load_grid": result.load_grid}
    elif result.applied:
        effect = {"relay_on": result.relay_on}
    else:
        effect = {}
    finished = await command_log.finish_command(
        db,
        command=command,
        done=result.applied,
        result=text,
        answer=result.answer or None,
        now=clock.now(),
        retry_at=retry_at if result.outcome in TRANSIENT else None,
        **effect,
    )
    return finished, result


async def settle_answer(
    db: Database, clock: Clock, *, transaction_id: str, result: Result, retry_in: dt.timedelta | None = None
) -> Recharge:
    """Record the head-end's answer about a recharge (storage/money/recharge.py `settle_recharge`):
    applied → success, refused → error, anything else → waiting, checked again `retry_in`
    from now (None: at once)."""
    now = clock.now()
    return await recharges.settle_recharge(
        db,
        transaction_id=transaction_id,
        outcome=result.outcome.value,
        token=result.token,
        reason=result.reason,
        applied_at=result.applied_at,
        now=now,
        next_check_at=None if retry_in is None else now + retry_in,
    )


async def credit_and_settle(
    db: Database,
    headend: HeadEnd,
    clock: Clock,
    *,
    transaction_id: str,
    meter_no: int,
    amount: Decimal,
    retry_in: dt.timedelta | None = None,
) -> tuple[Recharge, Result]:
    """Ask the head-end to apply a written recharge's credit (idempotent by transaction id),
    then settle it with the answer (`settle_answer`); the recharge as settled, and the answer."""
    result = await headend.credit(meter_no, transaction_id=transaction_id, amount=amount)
    settled = await settle_answer(db, clock, transaction_id=transaction_id, result=result, retry_in=retry_in)
    return settled, result


async def recharge(
    db: Database,
    headend: HeadEnd,
    clock: Clock,
    *,
    client: str,
    idempotency_key: str | None,
    site_id: str,
    meter_no: int,
    amount: Decimal,
) -> recharges.RechargeView:
    """A recharge from request to settlement; a repeated key answers the first recharge as it stands."""
    opened, created = await recharges.open_recharge(
        db,
        client=client,
        idempotency_key=idempotency_key,
        site_id=site_id,
        meter_no=meter_no,
        amount=amount,
        now=clock.now(),
    )
    if created:
        await credit_and_settle(
            db, headend, clock, transaction_id=opened.transaction_id, meter_no=meter_no, amount=amount
        )
    return await recharges.recharge_view(db, transaction_id=opened.transaction_id)
