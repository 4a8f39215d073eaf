"""Fault points, FOR TESTS ONLY: places where the gateway kills itself at once, as a crash would.

`GATEWAY_FAULT_POINTS=recharge.after_credit` (a comma-separated list; `point:N` dies the N-th time
the point is reached, default the first) makes the process send itself SIGKILL at that point:
no cleanup, no reply, nothing flushed but what was committed. Unset (the default, and the only
setting for production) nothing happens at any point. The crash harness
(`tests/reliability/money.py`, `bench/money.py`) uses them to prove that a recharge is neither
lost nor credited twice when the gateway dies at the worst moments; the app logs a warning at
start when any is set. With several worker processes each counts its own hits.

The points, in the order a recharge reaches them (adapters/operations.py `recharge`):

- `recharge.before_credit`: the recharge is committed as `requested`, the head-end not yet asked;
- `recharge.after_credit`: the head-end has answered the credit (applied, in the runs), its
  result not yet committed here;
- `recharge.after_commit`: the result (balance, ledger credit, state) is committed, the HTTP
  reply not yet sent.
"""

from __future__ import annotations

import logging
import os
import signal

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
        log.critical("fault point %s reached: killing this process (GATEWAY_FAULT_POINTS, tests only)", point)
        os.kill(os.getpid(), signal.SIGKILL)


NO_FAULTS = FaultPoints()
