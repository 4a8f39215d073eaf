"""The head-end: how commands and money reach the meters. One interface, two implementations.

`HeadEnd` is what the gateway asks: switch a relay, set the loads, credit money for a token,
look a credit up, read a meter live. Every answer is a `Result` with an `Outcome`, never an
exception, so callers decide what each outcome means for them (a recharge that the head-end
did not answer is `waiting`; a start command it did not answer is a 502):

- applied: done (a relay command that found the meter already in that state is applied with
  `changed` false);
- queued: accepted, to be done later (credits only);
- refused: the head-end or the meter said no, with a `reason`;
- unreachable: the head-end could not reach the meter; nothing was done;
- failed: no usable answer (errors, timeouts, the deadline): it may or may not have been done,
  which is why every command and credit carries an idempotency id to ask or re-send with;
- unknown: the head-end has never heard of that transaction (credit status only).

`SimulatedHeadEnd` is the embedded default (no `GATEWAY_HEADEND_URL`): it keeps relay states and
loads in memory, starting from what the database says of each meter, and applies credits at once
with a 20-digit token. `adapters.headend_http.HttpHeadEnd` speaks `schemas.headend` over HTTP.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import secrets
from decimal import Decimal
from typing import Any, Protocol

from storage.db.engine import Database
from storage.db.models import Meter


class Outcome(enum.StrEnum):
    """What became of one head-end call."""

    APPLIED = "applied"
    QUEUED = "queued"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclasses.dataclass(frozen=True)
class Result:
    """One head-end answer. Fields beyond `outcome` are set where the call has them."""

    outcome: Outcome
    reason: str = ""
    relay_on: bool | None = None  # relay and status calls: the relay after the call
    changed: bool | None = None  # relay calls: false when the meter already was in that state
    load_dg: Decimal | None = None  # load and status calls, kW
    load_grid: Decimal | None = None
    token: str | None = None  # credits: the 20-digit token, once applied
    applied_at: dt.datetime | None = None
    answer: dict[str, Any] = dataclasses.field(default_factory=dict)  # the reply as received, for the log

    @property
    def applied(self) -> bool:
        """True when the head-end did it."""
        return self.outcome is Outcome.APPLIED


class HeadEnd(Protocol):
    """What the gateway asks of a head-end. Ids make every call safe to repeat."""

    async def relay(self, meter_no: int, *, command_id: str, on: bool) -> Result:
        """Connect (`on`) or cut the meter's supply."""

    async def set_load(self, meter_no: int, *, command_id: str, load_dg: Decimal, load_grid: Decimal) -> Result:
        """Set the sanctioned DG and grid loads in kW."""

    async def credit(self, meter_no: int, *, transaction_id: str, amount: Decimal) -> Result:
        """Add prepaid credit; applied with a token, queued, or refused."""

    async def credit_status(self, transaction_id: str) -> Result:
        """A credit as the head-end knows it now (`unknown` if it never arrived)."""

    async def meter_status(self, meter_no: int) -> Result:
        """The meter's live relay state and loads."""


@dataclasses.dataclass
class _SimMeter:
    relay_on: bool
    load_dg: Decimal | None
    load_grid: Decimal | None


MAX_REMEMBERED = 100_000  # answers the simulator keeps for repeated ids (a day's commands many times over)


def new_token() -> str:
    """A random 20-digit recharge token."""
    return str(secrets.randbelow(10**20)).zfill(20)


class SimulatedHeadEnd:
    """The in-process head-end: meters always reachable, credits applied at once.

    A meter is first read from the database, so the simulator agrees with the gateway after a
    restart; from then on its relay and loads live here. Repeats of an id answer the first
    result, as a real head-end does.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._meters: dict[int, _SimMeter] = {}
        self._answers: dict[str, tuple[tuple[Any, ...], Result]] = {}
        self._lock = asyncio.Lock()  # one call at a time: no two repeats of an id both act

    async def _meter(self, meter_no: int) -> _SimMeter:
        if meter_no not in self._meters:
            async with self._db.reader() as session:
                row = await session.get(Meter, meter_no)
            if row is None:
                self._meters[meter_no] = _SimMeter(True, None, None)
            else:
                self._meters[meter_no] = _SimMeter(row.relay_on, row.load_dg, row.load_grid)
        return self._meters[meter_no]

    async def _once(self, key: str, params: tuple[Any, ...], act: Any) -> Result:
        async with self._lock:
            if key in self._answers:
                first_params, result = self._answers[key]
                if first_params != params:
                    return Result(Outcome.FAILED, reason=f"id {key} reused with other parameters")
                return result
            result = await act()
            if len(self._answers) >= MAX_REMEMBERED:  # bounded memory: forget the oldest answer
                del self._answers[next(iter(self._answers))]
            self._answers[key] = (params, result)
            return result

    async def relay(self, meter_no: int, *, command_id: str, on: bool) -> Result:
        """Switch the relay; `changed` false if it already was so."""

        async def act() -> Result:
            meter = await self._meter(meter_no)
            changed, meter.relay_on = meter.relay_on != on, on
            return Result(Outcome.APPLIED, relay_on=on, changed=changed)

        return await self._once(command_id, ("relay", meter_no, on), act)

    async def set_load(self, meter_no: int, *, command_id: str, load_dg: Decimal, load_grid: Decimal) -> Result:
        """Set the loads."""

        async def act() -> Result:
            meter = await self._meter(meter_no)
            meter.load_dg, meter.load_grid = load_dg, load_grid
            return Result(Outcome.APPLIED, load_dg=load_dg, load_grid=load_grid)

        return await self._once(command_id, ("load", meter_no, load_dg, load_grid), act)

    async def credit(self, meter_no: int, *, transaction_id: str, amount: Decimal) -> Result:
        """Apply a credit at once with a fresh token."""

        async def act() -> Result:
            if amount <= 0:
                return Result(Outcome.REFUSED, reason="amount must be greater than zero")
            return Result(Outcome.APPLIED, token=new_token())  # applied now: the gateway's clock says when

        return await self._once("credit:" + transaction_id, ("credit", meter_no, amount), act)

    async def credit_status(self, transaction_id: str) -> Result:
        """The credit's first answer, or `unknown`."""
        known = self._answers.get("credit:" + transaction_id)
        return known[1] if known else Result(Outcome.UNKNOWN, reason="unknown transaction")

    async def meter_status(self, meter_no: int) -> Result:
        """The simulated relay and loads."""
        async with self._lock:
            meter = await self._meter(meter_no)
            return Result(Outcome.APPLIED, relay_on=meter.relay_on, load_dg=meter.load_dg, load_grid=meter.load_grid)
