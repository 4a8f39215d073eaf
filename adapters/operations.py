"""Operations that take the store and the head-end together, shared by API handlers and jobs.

`send_command` carries out one logged command (written as `sent`) and records the answer;
`recharge` writes a recharge, asks the head-end to credit it, and settles it. Neither holds a
database transaction while the head-end is asked.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from adapters.headend import HeadEnd, Outcome, Result
from storage import commands
from storage import recharge as recharges
from storage.clock import Clock
from storage.engine import Database
from storage.models import Command


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
        command.meter_no, command_id=command.command_id, on=commands.RELAY_ACTIONS[command.action]
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
    finished = await commands.finish_command(
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
        result = await headend.credit(meter_no, transaction_id=opened.transaction_id, amount=amount)
        await recharges.settle_recharge(
            db,
            transaction_id=opened.transaction_id,
            outcome=result.outcome.value,
            token=result.token,
            reason=result.reason,
            applied_at=result.applied_at,
            now=clock.now(),
        )
    return await recharges.recharge_view(db, transaction_id=opened.transaction_id)
