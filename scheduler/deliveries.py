"""The callback job: POST every due event (DG callbacks, and site events to site webhooks), log
each attempt, schedule the retry.

Runs every few seconds from the scheduler, and at once when `POST /dg` commits a transition
(`kick`), so a callback's first attempt goes out within a second or two of the change without
ingest ever waiting on a receiver. Retries are rows, not timers: each failure stores the
event's `next_attempt_at` (exponential backoff, tenacity's formula), so they survive restarts
and the periodic pass picks them up. An event is retried for `horizon` (GATEWAY_CALLBACK_HORIZON_HOURS,
3 days by default) from the start of its round (queued, or redelivered by an admin): a failure
whose next retry would fall past it marks the event failed. An event found due past its horizon
(the gateway was down) still gets one attempt first.

Events of one DG go out one at a time, oldest first, and a failure holds back that DG's later
events until the next pass, so a receiver mostly sees ON and OFF in order (not always: a later
event can be due before an earlier one's retry); different DGs go in parallel, at most
`concurrency` at once and at most `per_destination` to one receiver (host and port): a slow
receiver, or one that lets every attempt run to its timeout, holds at most that many of the
slots, and the other sites' callbacks go out beside it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import defaultdict

from tenacity import wait_exponential
from yarl import URL

from adapters.webhooks import WebhookSender
from scheduler.backoff import delay
from scheduler.runner import ScheduledJob
from storage.clock import Clock
from storage.db.engine import Database
from storage.db.event_models import DgDeliveryAttempt, SiteEventAttempt
from storage.dg import dg_events
from storage.money import site_events

log = logging.getLogger("gateway.callbacks")

# 5 s, 10 s, 20 s ... capped at an hour: after the first 5 hours, one attempt an hour until
# the horizon (about 80 attempts over the default 3 days).
# No jitter: one DG's events go out one at a time, so there is no herd of retries to spread.
BACKOFF = wait_exponential(multiplier=5, max=3600)
HORIZON = dt.timedelta(hours=72)


Due = dg_events.DueEvent | site_events.DueSiteEvent


def destination(url: str) -> str:
    """The receiver a URL reaches: scheme, host and port (what its concurrency is limited by)."""
    parsed = URL(url)
    return f"{parsed.scheme}://{(parsed.host or '').lower()}:{parsed.port}"


def backoff(attempts: int) -> dt.timedelta:
    """How long to wait after the `attempts`-th failed attempt of a round."""
    return delay(BACKOFF, attempts)


class DeliveryJob(ScheduledJob[int]):
    """Delivers due DG callbacks. One pass at a time; a kick during a pass asks for another."""

    job_id = "dg-callbacks"
    name = "deliver DG callbacks"

    def __init__(
        self,
        db: Database,
        clock: Clock,
        sender: WebhookSender,
        *,
        every_seconds: int = 5,
        concurrency: int = 8,
        per_destination: int = 2,
        batch: int = 200,
        horizon: dt.timedelta = HORIZON,
    ) -> None:
        super().__init__(dt.timedelta(seconds=every_seconds))
        self._db = db
        self._clock = clock
        self._sender = sender
        self._concurrency = concurrency
        self._per_destination = per_destination
        self._batch = batch
        self.horizon = horizon
        self._again = False

    def kick(self) -> None:
        """Deliver now what is due (called after a transition is committed); returns at once."""
        self._again = True
        if not self._running.locked():  # else the pass in progress goes round once more
            super().kick()

    async def run(self) -> int:
        """Passes until nothing more was asked for; the number of attempts made (0 at once
        when a pass is in progress: it goes round once more instead)."""
        if self._running.locked():
            self._again = True
            return 0
        return await super().run()

    async def run_once(self) -> int:
        """Passes until nothing more was asked for or the job stops; the attempts made."""
        made = 0
        self._again = True
        while self._again and not self.stopping:
            self._again = False
            made_now = await self._pass()
            made += made_now
            self._again = self._again or made_now == self._batch  # more may be due
        return made

    def idle(self) -> int:
        """No attempts after `stop`."""
        return 0

    async def _pass(self) -> int:
        now = self._clock.now()
        due: list[Due] = [
            *await dg_events.due_events(self._db, now=now, limit=self._batch),
            *await site_events.due_events(self._db, now=now, limit=self._batch),
        ]
        # One lane per DG, and one per site for its events: each goes out in order.
        by_dg: dict[tuple[str, str], list[Due]] = defaultdict(list)
        for event in due:
            by_dg[event.site_id, event.dg_no if isinstance(event, dg_events.DueEvent) else ""].append(event)
        gate = asyncio.Semaphore(self._concurrency)
        destinations: dict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(self._per_destination))

        async def deliver_in_order(events: list[Due]) -> int:
            made = 0
            # The receiver's own slot first: DGs waiting on a busy receiver hold no shared slot.
            async with destinations[destination(events[0].url)], gate:
                for event in events:
                    made += 1
                    if self.stopping or not await self._deliver(event):
                        break
            return made

        return sum(await asyncio.gather(*(deliver_in_order(events) for events in by_dg.values())))

    async def _deliver(self, event: Due) -> bool:
        """One attempt at one event, logged; True if delivered."""
        attempted_at = self._clock.now()
        result = await self._sender.deliver(event, at=attempted_at)
        tries = event.attempts + 1
        retry_at = attempted_at + backoff(tries)
        if result.delivered or retry_at > event.round_started_at + self.horizon:
            retry_at = None  # delivered, or failed for good: past the horizon
        attempt = {
            "event_id": event.event_id,
            "attempted_at": attempted_at,
            "url": event.url,
            "http_status": result.http_status,
            "error": result.error,
            "latency_ms": result.latency_ms,
        }
        if isinstance(event, dg_events.DueEvent):
            await dg_events.record_attempt(
                self._db, attempt=DgDeliveryAttempt(**attempt), delivered=result.delivered, next_attempt_at=retry_at
            )
        else:
            await site_events.record_attempt(
                self._db, attempt=SiteEventAttempt(**attempt), delivered=result.delivered, next_attempt_at=retry_at
            )
        if result.delivered:
            log.info("callback %s delivered to %s in %d ms", event.event_id, event.url, result.latency_ms)
        else:
            log.warning(
                "callback %s to %s failed (attempt %d, %s): %s",
                event.event_id,
                event.url,
                tries,
                f"retry at {retry_at:%Y-%m-%d %H:%M:%S}" if retry_at else f"giving up: horizon {self.horizon} passed",
                result.error or f"HTTP {result.http_status}",
            )
        return result.delivered
