"""Fault points, FOR TESTS ONLY: places where a gateway process kills itself at once, as a crash
would. Nothing here is imported by the gateway: `python -m tests.reliability.faulty_gateway`
serves the production app (`gateway.app.create_app`) wrapped by `with_faults` below.

`FaultPoints("recharge.after_credit:2")` (a comma-separated list; `point:N` dies the N-th time
the point is reached, default the first) sends this process SIGKILL at that point: no cleanup,
no reply, nothing flushed but what was committed. The crash harness (`tests/reliability/money.py`,
`bench/money.py`) uses them to prove that a recharge is neither lost nor credited twice when
the gateway dies at the worst moments.

The points, in the order a recharge (call 3, `adapters.operations.recharge`) reaches them:

- `recharge.before_credit`: the recharge is committed as `requested`, the head-end not yet asked
  (the wrapped head-end's `credit`, before it calls the real one);
- `recharge.after_credit`: the head-end has answered the credit (applied, in the runs), its
  result not yet committed here (the wrapped `credit`, after the real one answered);
- `recharge.after_commit`: the result (balance, ledger credit, state) is committed, the HTTP
  reply not yet sent (a middleware around the handler, for a request that asked for a credit).

Only the request handlers see the wrapped head-end: the scheduler's jobs keep the real one, as
the fault points were never in the reconciliation job.
"""

from __future__ import annotations

import contextvars
import logging
import os
import signal
from collections.abc import AsyncIterator
from decimal import Decimal

from aiohttp import web
from aiohttp.typedefs import Handler

from adapters.headend import HeadEnd, Result
from gateway.app_keys import HEADEND

log = logging.getLogger("gateway.faults")

BEFORE_CREDIT = "recharge.before_credit"
AFTER_CREDIT = "recharge.after_credit"
AFTER_COMMIT = "recharge.after_commit"
POINTS = (BEFORE_CREDIT, AFTER_CREDIT, AFTER_COMMIT)


def parse_fault_points(spec: str) -> dict[str, int]:
    """`"point[:N],..."` as {point: N}; ValueError naming an unknown point or a bad count."""
    plan: dict[str, int] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        name, _, count = item.partition(":")
        if name not in POINTS:
            raise ValueError(f"unknown fault point {name!r} (known: {', '.join(POINTS)})")
        if count and (not count.isdigit() or int(count) < 1):
            raise ValueError(f"fault point {name}: the count after ':' must be a whole number from 1")
        plan[name] = int(count or 1)
    return plan


class FaultPoints:
    """The armed points of this process and how many more hits each waits for."""

    def __init__(self, spec: str = "") -> None:
        self._remaining = parse_fault_points(spec)

    @property
    def armed(self) -> dict[str, int]:
        """Points still armed: {point: hits left before the kill}."""
        return dict(self._remaining)

    def reach(self, point: str) -> None:
        """Pass `point`; if it is armed and this is its N-th hit, die at once by SIGKILL."""
        if point not in self._remaining:
            return
        self._remaining[point] -= 1
        if self._remaining[point] > 0:
            return
        log.critical("fault point %s reached: killing this process (tests only)", point)
        os.kill(os.getpid(), signal.SIGKILL)


# Set per request by the middleware: whether this request asked the head-end for a credit.
_credited: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("credited", default=None)


class FaultyHeadEnd:
    """A head-end that passes the credit's fault points around the real one's `credit`."""

    def __init__(self, inner: HeadEnd, faults: FaultPoints) -> None:
        self._inner = inner
        self._faults = faults

    async def credit(self, meter_no: int, *, transaction_id: str, amount: Decimal) -> Result:
        """The real credit between `recharge.before_credit` and `recharge.after_credit`."""
        self._faults.reach(BEFORE_CREDIT)
        result = await self._inner.credit(meter_no, transaction_id=transaction_id, amount=amount)
        credited = _credited.get()
        if credited is not None:
            credited.append(transaction_id)
        self._faults.reach(AFTER_CREDIT)
        return result

    async def relay(self, meter_no: int, *, command_id: str, on: bool) -> Result:
        """The real head-end's."""
        return await self._inner.relay(meter_no, command_id=command_id, on=on)

    async def set_load(self, meter_no: int, *, command_id: str, load_dg: Decimal, load_grid: Decimal) -> Result:
        """The real head-end's."""
        return await self._inner.set_load(meter_no, command_id=command_id, load_dg=load_dg, load_grid=load_grid)

    async def credit_status(self, transaction_id: str) -> Result:
        """The real head-end's."""
        return await self._inner.credit_status(transaction_id)

    async def meter_status(self, meter_no: int) -> Result:
        """The real head-end's."""
        return await self._inner.meter_status(meter_no)


def with_faults(app: web.Application, faults: FaultPoints) -> web.Application:
    """`app` (from `create_app`) passing `faults` on the recharge path; returns it."""

    @web.middleware
    async def after_commit(request: web.Request, handler: Handler) -> web.StreamResponse:
        token = _credited.set([])
        try:
            response = await handler(request)
            if _credited.get():  # this request's credit is settled and committed; the reply is not sent
                faults.reach(AFTER_COMMIT)
            return response
        finally:
            _credited.reset(token)

    async def faulty_headend(app: web.Application) -> AsyncIterator[None]:
        # After every other resource: the scheduler's jobs already hold the real head-end.
        real = app[HEADEND]
        app[HEADEND] = FaultyHeadEnd(real, faults)
        yield
        app[HEADEND] = real

    app.middlewares.append(after_commit)  # innermost: it sees the handler's own return
    app.cleanup_ctx.append(faulty_headend)
    log.warning("FAULT POINTS ARMED: this process will kill itself at %s (tests only)", faults.armed)
    return app
