"""The backup job: a consistent online backup of the SQLite database every so often.

The job looks every `interval` (at most 10 minutes) whether a backup is due: the newest one in
the backup directory, by the time in its name, is `every` old. So a restart neither takes an
extra backup (a restart loop would otherwise push the good ones out of the kept N) nor waits a
whole period: at most one look late. A backup is due a little early (half a look) so that a
look landing a moment before the mark does not put the backup off by a whole look.
PostgreSQL has no such job: it is backed up with pg_dump (README, Operations).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path

from prometheus_client import Gauge

from scheduler.runner import ScheduledJob
from storage.clock import Clock
from storage.db.engine import Database
from storage.ops import backup

log = logging.getLogger("gateway.backup")

LOOK_EVERY = dt.timedelta(minutes=10)
LAST_BACKUP = Gauge("gateway_backup_last_success_timestamp_seconds", "When the last scheduled backup was taken")


class BackupJob(ScheduledJob[backup.BackupReport | None]):
    """Backs the SQLite database up into a directory, keeping the newest `keep` backups."""

    job_id = "backup"
    name = "back up the SQLite database"

    def __init__(
        self, db: Database, clock: Clock, *, directory: Path, keep: int = 12, every_minutes: int = 120
    ) -> None:
        if not db.is_sqlite or not db.sqlite_path or db.sqlite_path == ":memory:":
            raise ValueError("the backup job backs up a SQLite file; back PostgreSQL up with pg_dump")
        self.every = dt.timedelta(minutes=every_minutes)
        super().__init__(min(self.every, LOOK_EVERY))
        self._source = db.sqlite_path
        self._clock = clock
        self._directory = directory
        self._keep = keep

    async def run_once(self) -> backup.BackupReport | None:
        """A backup if one is due at the clock's "now"; None when not due or stopped."""
        now = self._clock.now()
        newest = await asyncio.to_thread(backup.newest_backup, self._directory)
        if newest is not None and now - newest < self.every - self.interval / 2:
            return None
        try:
            report = await asyncio.to_thread(
                backup.backup_into,
                self._source,
                self._directory,
                now=now,
                keep=self._keep,
                should_stop=lambda: self.stopping,
            )
        except backup.BackupCancelled:
            log.info("backup stopped for shutdown; nothing kept")
            return None
        LAST_BACKUP.set(now.timestamp())
        log.info(
            "backup %s: %d bytes in %.1f s, %d old removed",
            report.backup.path,
            report.backup.bytes,
            report.backup.seconds,
            len(report.removed),
        )
        return report

    def idle(self) -> None:
        """No backup after `stop` (one in progress is abandoned, its unfinished copy removed)."""
        return None
