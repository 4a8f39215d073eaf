"""Fault injection for the head-end calls: latency, injected 5xx, dropped connections,
unreachable meters, refusals and queued credits.

The settings start from the command-line flags and change at run time through
`POST /control/faults`. Random faults draw from one generator seeded by `--seed`, so a run with
the same seed and the same requests fails the same requests. `fail_next` / `drop_next` hit the
next N head-end calls exactly, for tests that must not depend on chance.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import Counter
from decimal import Decimal
from typing import Any

from aiohttp import web

from schemas.headend import PREFIX


@dataclasses.dataclass
class Faults:
    """The current fault settings (see `schemas.headend.FaultsSchema` for ranges)."""

    latency_ms: int = 0
    failure_rate: float = 0.0
    drop_rate: float = 0.0
    # "after": the command is carried out, then the reply is lost (the case idempotency is for);
    # "before": the connection drops before anything is done.
    drop_when: str = "after"
    fail_next: int = 0
    drop_next: int = 0
    unreachable: list[str] = dataclasses.field(default_factory=list)
    refuse_credits: list[str] = dataclasses.field(default_factory=list)
    refuse_commands: list[str] = dataclasses.field(default_factory=list)
    queue_credits_seconds: float = 0.0
    max_credit: Decimal = Decimal("100000.00")

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a validated partial update (a `FaultsSchema().load(...)` result)."""
        for name, value in changes.items():
            setattr(self, name, list(value) if isinstance(value, list) else value)

    def as_dict(self) -> dict[str, Any]:
        """Every setting, for `FaultsSchema().dump`."""
        return dataclasses.asdict(self)

    def copy(self) -> Faults:
        """An independent copy (the startup settings are kept for `/control/reset`)."""
        return dataclasses.replace(
            self,
            unreachable=list(self.unreachable),
            refuse_credits=list(self.refuse_credits),
            refuse_commands=list(self.refuse_commands),
        )


class Dropped(Exception):
    """Raised to make the server close the connection without an answer."""


class FaultInjector:
    """Decides, per head-end request, whether to delay, fail or drop it; counts what it did."""

    def __init__(self, faults: Faults, *, seed: int) -> None:
        self.startup = faults.copy()
        self.faults = faults
        self.seed = seed
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()

    def reset(self) -> None:
        """Back to the startup settings and the startup random sequence."""
        self.faults = self.startup.copy()
        self.rng = random.Random(self.seed)
        self.counts.clear()

    def is_unreachable(self, meter_no: str) -> bool:
        """Whether commands to this meter time out at the head-end."""
        return meter_no in self.faults.unreachable

    def _take(self, counter: str, rate: float) -> bool:
        """Use up one of `counter` (fail_next/drop_next) if any, else draw against `rate`."""
        if getattr(self.faults, counter) > 0:
            setattr(self.faults, counter, getattr(self.faults, counter) - 1)
            return True
        # Draw only when a rate is set, so switching a fault on does not shift unrelated draws.
        return rate > 0 and self.rng.random() < rate

    async def before(self, request: web.Request) -> None:
        """Latency, then maybe an injected failure or an early drop."""
        faults = self.faults
        self.counts["requests"] += 1
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if self._take("fail_next", faults.failure_rate):
            self.counts["failed"] += 1
            raise InjectedFailure(self.rng.choice((500, 503)))
        if faults.drop_when == "before" and self._take("drop_next", faults.drop_rate):
            self.counts["dropped"] += 1
            raise Dropped()

    def after(self, response: web.StreamResponse) -> None:
        """Maybe lose the reply of a call that succeeded (the command is already carried out)."""
        if response.status >= 300 or self.faults.drop_when != "after":
            return
        if self._take("drop_next", self.faults.drop_rate):
            self.counts["dropped"] += 1
            raise Dropped()


class InjectedFailure(Exception):
    """An injected 500/503: the head-end failed before doing anything."""

    def __init__(self, status: int) -> None:
        super().__init__(f"injected failure {status}")
        self.status = status


def fault_middleware(injector: FaultInjector) -> Any:
    """Apply the injector to every head-end call (not to /control or /healthz)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith(PREFIX + "/"):
            return await handler(request)
        try:
            await injector.before(request)
            response = await handler(request)
            injector.after(response)
            return response
        except Dropped:
            # Close the socket without a byte of answer: the client sees a disconnection.
            if request.transport is not None:
                request.transport.close()
            raise asyncio.CancelledError() from None

    return middleware
