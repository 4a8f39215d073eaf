"""The command dispatcher job: carries out queued commands, re-sends unanswered ones, and
retries those the head-end could not carry out yet.

Each run claims what is due in the command log (`storage.money.command_log.claim_due`): commands the
gateway queued itself (ingest's zero-balance cuts, restores after a recharge), their retries,
and commands sent by a process that died before recording the answer (re-sent under the same
`command_id`, so the head-end acts at most once), then sends each and records the answer.

A queued cut or restore that fails transiently (meter unreachable, head-end down or 5xx) goes
back to the log with a durable next-attempt time (scheduler/backoff.py), so a restart loses no
retry; one not done within `deadline_minutes` of being queued ends `failed` with the reason.
Commands asked for over the API are not retried: their caller was already answered with the
failure, and a command carried out hours later behind their back could undo what they did next.
"""

from __future__ import annotations

import datetime as dt
import logging

from prometheus_client import Counter

from adapters.headend import HeadEnd
from adapters.operations import send_command
from scheduler.backoff import RECONCILE, delay
from scheduler.runner import ScheduledJob
from storage.clock import Clock
from storage.db.engine import Database
from storage.db.models import Command
from storage.money import command_log

log = logging.getLogger("gateway.commands")

RETRIED_ACTIONS = ("cut", "restore")  # the commands the gateway queues itself
COMMANDS = Counter("gateway_commands_dispatched_total", "Commands sent by the dispatcher, by state after", ["state"])


class CommandDispatcher(ScheduledJob[list[Command]]):
    """Sends due commands. One run at a time; `stop` lets the command in flight finish."""

    job_id = "commands"
    name = "send queued head-end commands"

    def __init__(
        self,
        db: Database,
        headend: HeadEnd,
        clock: Clock,
        *,
        every_seconds: int = 10,
        stale_seconds: float = 120,
        deadline_minutes: int = 1440,
    ) -> None:
        super().__init__(dt.timedelta(seconds=every_seconds))
        # A command sent this long ago without a recorded answer is taken to be orphaned; longer
        # than any head-end deadline, so a live request is never sent twice at once.
        self.stale = dt.timedelta(seconds=stale_seconds)
        self.deadline = dt.timedelta(minutes=deadline_minutes)
        self._db = db
        self._headend = headend
        self._clock = clock

    async def run_once(self) -> list[Command]:
        """Claim and send what is due now; the commands as recorded after it. A recharge that
        queued a restore kicks a run (`kick`); other processes skip what this one claimed."""
        finished: list[Command] = []
        now = self._clock.now()
        claimed = await command_log.claim_due(
            self._db, now=now, stale_before=now - self.stale, deadline_before=now - self.deadline
        )
        for command in claimed:
            if self.stopping:
                break  # claimed but not sent: stale after `stale_seconds`, then sent again
            done, result = await send_command(
                self._db, self._headend, command, self._clock, retry_at=self._retry_at(command)
            )
            COMMANDS.labels(done.state).inc()
            log.info(
                "command %s %s meter %s: %s %s%s",
                done.id,
                done.action,
                done.meter_no,
                done.state,
                result.reason,
                f" (retry at {done.next_attempt_at:%Y-%m-%d %H:%M:%S})" if done.state == "requested" else "",
            )
            finished.append(done)
        return finished

    def idle(self) -> list[Command]:
        """Nothing sent after `stop` (the command in flight finishes)."""
        return []

    def _retry_at(self, command: Command) -> dt.datetime | None:
        """When to try a command again if this send fails transiently; None: not retried.

        Never later than its deadline: the run that finds it then ends it with the reason.
        """
        if command.action not in RETRIED_ACTIONS:
            return None
        deadline = command_log.deadline_start(command) + self.deadline
        return min(self._clock.now() + delay(RECONCILE, command.attempts), deadline)
