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

import asyncio
import datetime as dt
import logging

from prometheus_client import Counter

from adapters.headend import HeadEnd
from adapters.operations import send_command
from scheduler.backoff import RECONCILE, delay
from storage.clock import Clock
from storage.db.engine import Database
from storage.db.models import Command
from storage.money import command_log

log = logging.getLogger("gateway.commands")

RETRIED_ACTIONS = ("cut", "restore")  # the commands the gateway queues itself
COMMANDS = Counter("gateway_commands_dispatched_total", "Commands sent by the dispatcher, by state after", ["state"])


class CommandDispatcher:
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
        self.interval = dt.timedelta(seconds=every_seconds)
        # A command sent this long ago without a recorded answer is taken to be orphaned; longer
        # than any head-end deadline, so a live request is never sent twice at once.
        self.stale = dt.timedelta(seconds=stale_seconds)
        self.deadline = dt.timedelta(minutes=deadline_minutes)
        self._db = db
        self._headend = headend
        self._clock = clock
        self._running = asyncio.Lock()
        self._stopping = False
        self._kicks: set[asyncio.Task[list[Command]]] = set()

    def kick(self) -> None:
        """Send what is due now, in the background (a recharge queued a restore); returns at once.

        Safe beside the scheduled runs and other processes: claiming skips what another holds.
        """
        if self._stopping:
            return
        task = asyncio.get_running_loop().create_task(self.run())
        self._kicks.add(task)  # keep a reference until done, or the task may be collected
        task.add_done_callback(self._kick_done)

    async def settle(self) -> None:
        """Wait for the runs kicked so far to finish (their failures were logged)."""
        if self._kicks:
            await asyncio.gather(*self._kicks, return_exceptions=True)

    def _kick_done(self, task: asyncio.Task[list[Command]]) -> None:
        self._kicks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Nothing is lost: the command stays due and the periodic run sends it.
            log.error("command dispatch after a kick failed", exc_info=task.exception())

    async def run(self) -> list[Command]:
        """Claim and send what is due now; the commands as recorded after it."""
        finished: list[Command] = []
        async with self._running:
            if self._stopping:
                return finished
            now = self._clock.now()
            claimed = await command_log.claim_due(
                self._db, now=now, stale_before=now - self.stale, deadline_before=now - self.deadline
            )
            for command in claimed:
                if self._stopping:
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

    def _retry_at(self, command: Command) -> dt.datetime | None:
        """When to try a command again if this send fails transiently; None: not retried.

        Never later than its deadline: the run that finds it then ends it with the reason.
        """
        if command.action not in RETRIED_ACTIONS:
            return None
        deadline = command_log.deadline_start(command) + self.deadline
        return min(self._clock.now() + delay(RECONCILE, command.attempts), deadline)

    async def stop(self) -> None:
        """Finish the command in flight, then refuse further work."""
        self._stopping = True
        async with self._running:
            pass
        await self.settle()
