"""The partition and retention job: months of readings created ahead, old ones removed.

Hourly: on PostgreSQL it keeps the monthly partitions of `reading` ready (storage/ops/partitions.py),
so the turn of a month never lands in the default partition; with `GATEWAY_RETENTION_DAYS` set
it removes readings older than that (whole partitions on PostgreSQL, batches on SQLite). Both
steps are idempotent and safe to race, so the job is correct even if two processes run it.
"""

from __future__ import annotations

import datetime as dt
import logging

from scheduler.runner import ScheduledJob
from storage.clock import Clock
from storage.db.engine import Database
from storage.ops import partitions

log = logging.getLogger("gateway.partitions")


class PartitionJob(ScheduledJob[partitions.RetentionReport | None]):
    """Creates partitions ahead and applies retention. One run at a time."""

    job_id = "partitions"
    name = "reading partitions and retention"

    def __init__(self, db: Database, clock: Clock, *, retention_days: int | None, every_minutes: int = 60) -> None:
        super().__init__(dt.timedelta(minutes=every_minutes))
        self._db = db
        self._clock = clock
        self._retention_days = retention_days

    async def run_once(self) -> partitions.RetentionReport | None:
        """One pass at the clock's "now"; what retention removed (None when it is off)."""
        now = self._clock.now()
        created = await partitions.ensure_partitions(self._db, now=now)
        if created:
            log.info("created reading partitions %s", ", ".join(created))
        if self._retention_days is None:
            return None
        report = await partitions.apply_retention(
            self._db, now=now, days=self._retention_days, should_stop=lambda: self.stopping
        )
        if report.dropped or report.deleted:
            log.info(
                "retention (readings before %s): dropped %s, deleted %d rows",
                report.cutoff.isoformat(),
                ", ".join(report.dropped) or "no partitions",
                report.deleted,
            )
        return report

    def idle(self) -> None:
        """Nothing done after `stop` (a run in progress ends after its current transaction)."""
        return None
