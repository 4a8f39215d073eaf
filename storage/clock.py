"""The injected clock. Everything that asks "what time is it" (ingest's timestamp window, jobs,
the rollup) asks one `Clock`, so tests move time without sleeping.
"""

from __future__ import annotations

import datetime as dt


class Clock:
    """Real time, in UTC."""

    def now(self) -> dt.datetime:
        """The current instant, timezone-aware UTC."""
        return dt.datetime.now(dt.UTC)


class FixedClock(Clock):
    """A clock that stands still until moved: for tests and simulations."""

    def __init__(self, at: dt.datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._at = at.astimezone(dt.UTC)

    def now(self) -> dt.datetime:
        """The instant the clock was set to."""
        return self._at

    def set(self, at: dt.datetime) -> None:
        """Jump to an instant."""
        self._at = at.astimezone(dt.UTC)

    def advance(self, **delta: float) -> dt.datetime:
        """Move forward by a timedelta's keyword arguments (minutes=30, days=1, ...)."""
        self._at += dt.timedelta(**delta)
        return self._at
