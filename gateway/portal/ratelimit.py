"""Failed login and registration attempts, limited per account and per client address.

Kept in this process's memory (not the database): nothing to clean up, no write per failed
attempt. The bounds: at most `max_keys` keys, each holding at most `max_failures` times, the
least recently failed key dropped first. With several gateway processes each counts on its
own, so a client gets at most `max_failures` tries per process in a window.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict, deque

MAX_FAILURES = 5
WINDOW = dt.timedelta(minutes=15)
MAX_KEYS = 20_000


class FailureLimiter:
    """A sliding window of failures per key: blocked once `max_failures` fall in the window."""

    def __init__(
        self, *, max_failures: int = MAX_FAILURES, window: dt.timedelta = WINDOW, max_keys: int = MAX_KEYS
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[dt.datetime]] = OrderedDict()

    def retry_after(self, keys: list[str], now: dt.datetime) -> int:
        """Seconds until every key may try again; 0 when none is blocked."""
        wait = dt.timedelta(0)
        for key in keys:
            times = self._failures.get(key)
            if times is None:
                continue
            while times and times[0] <= now - self.window:
                times.popleft()
            if not times:
                del self._failures[key]
            elif len(times) >= self.max_failures:
                wait = max(wait, times[0] + self.window - now)
        return int(wait.total_seconds()) + (1 if wait else 0)

    def failed(self, keys: list[str], now: dt.datetime) -> None:
        """Count one failure against each key."""
        for key in keys:
            times = self._failures.pop(key, None) or deque(maxlen=self.max_failures)
            times.append(now)
            self._failures[key] = times  # re-inserted: now the most recent
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def forget(self, key: str) -> None:
        """Clear a key's failures (an account after a successful login)."""
        self._failures.pop(key, None)
