"""Backoff for work retried across runs and restarts: tenacity's wait functions, turned into the
delay before a durable next-attempt time.

Jobs here do not sleep between attempts: they store when the next one is due, and a later run
(in this process or, after a restart, in another) picks it up. The delay still comes from
tenacity's wait strategies, so the policy reads the same as the in-call retries of the HTTP
head-end client.
"""

from __future__ import annotations

import datetime as dt

from tenacity import RetryCallState
from tenacity.wait import wait_base, wait_exponential

# Recharges waiting for the head-end and queued commands it could not carry out: 5 s, 10 s,
# 20 s ... capped at 30 min (a head-end that queues a credit usually applies it within seconds).
# No jitter: one job in one process walks them in turn, so there
# is no herd of clients to spread.
RECONCILE = wait_exponential(multiplier=5, max=1800)


def delay(wait: wait_base, attempts: int) -> dt.timedelta:
    """How long `wait` waits after the `attempts`-th failed attempt (1 for the first)."""
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = max(1, attempts)
    return dt.timedelta(seconds=wait(state))
