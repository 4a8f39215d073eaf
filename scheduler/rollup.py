"""The rollup job: rolls every due site-day up into daily totals, as the scheduler (scheduler/runner.py) runs it.

Every few minutes the job rolls every due site-day (storage/days.py): each site's days after
its local 00:15, days missed while the gateway was down, and days a late packet landed in.
The first run starts with the scheduler (scheduler/runner.py), which is the catch-up on start.
"""

from __future__ import annotations

import datetime as dt
import logging

from scheduler.runner import ScheduledJob
from storage import days
from storage.clock import Clock
from storage.db.engine import Database

log = logging.getLogger("gateway.rollup")


class RollupJob(ScheduledJob[days.RollupReport]):
    """Rolls every due site-day. One run at a time; `stop` ends a run between two days."""

    job_id = "rollup"
    name = "roll up due days"

    def __init__(self, db: Database, clock: Clock, *, every_minutes: int = 5) -> None:
        super().__init__(dt.timedelta(minutes=every_minutes))
        self._db = db
        self._clock = clock

    async def run_once(self) -> days.RollupReport:
        """One run at the clock's "now"; what it rolled."""
        report = await days.roll_up_due(self._db, now=self._clock.now(), should_stop=lambda: self.stopping)
        for rolled in report.days:
            log.info(
                "rolled site %s day %s: %d meters (%s)",
                rolled.site_id,
                rolled.day,
                rolled.meters,
                rolled.reason,
            )
        return report

    def idle(self) -> days.RollupReport:
        """Nothing rolled after `stop` (a run in progress ends after its current day)."""
        return days.RollupReport(complete=False)
