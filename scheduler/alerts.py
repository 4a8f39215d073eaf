"""The balance alert job: `balance.low` events as balances cross a site's alert thresholds.

Runs every `GATEWAY_ALERTS_EVERY_SECONDS` (30 s by default) rather than inside ingest, so the
hot path never pays for it; a warning half a minute late is still a warning before the cut
(storage/money/policy.py says which thresholds alert and when they re-arm).
"""

from __future__ import annotations

import datetime as dt
import logging

from scheduler.runner import ScheduledJob
from storage.clock import Clock
from storage.db.engine import Database
from storage.money import policy

log = logging.getLogger("gateway.alerts")


class BalanceAlertJob(ScheduledJob[int]):
    """Writes the balance alerts due. One run at a time."""

    job_id = "balance-alerts"
    name = "raise balance alerts"

    def __init__(self, db: Database, clock: Clock, *, every_seconds: int = 30) -> None:
        super().__init__(dt.timedelta(seconds=every_seconds))
        self._db = db
        self._clock = clock

    async def run_once(self) -> int:
        """One pass at the clock's "now"; the events written."""
        written = await policy.raise_balance_alerts(self._db, now=self._clock.now())
        if written:
            log.info("balance alerts: %d written", written)
        return written

    def idle(self) -> int:
        """No events after `stop`."""
        return 0
