"""The reconciliation job: settles recharges the head-end has not confirmed yet.

A recharge is `waiting` when the head-end queued it, could not reach the meter, or gave no
usable answer; it is left `requested` when the gateway died between writing it and asking the
head-end. Each run takes those due (`next_check_at` passed; `requested` ones only once older
than `grace`, so a request still in flight is left to its handler) and, for each:

1. asks the head-end for the credit by transaction id (`credit_status`);
2. if the head-end never heard of it, sends the credit again under the same transaction id
   (the head-end is idempotent by it, so a credit is applied at most once) and settles it with
   the answer: `adapters.operations.credit_and_settle`, as the recharge call does;
3. settles it with the answer (`adapters.operations.settle_answer`, storage/money/recharge.py:
   balance, token, ledger credit and state in one transaction): applied → success, refused →
   error with the reason;
4. otherwise, past its expiry (counted from the request) it ends as an error with remarks
   "expired: ..."; before that it stays waiting with its next check stored in the row
   (scheduler/backoff.py), so a restart or another gateway process loses nothing.

Nothing is sent after expiry: a credit the head-end never got cannot be applied behind an error.
One the head-end still has queued at expiry may yet apply there; that is logged as a warning
for staff to check (the gateway's balance does not move after an error).
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging

from prometheus_client import Counter

from adapters.headend import HeadEnd, Outcome, Result
from adapters.operations import credit_and_settle, settle_answer
from scheduler.backoff import RECONCILE, delay
from scheduler.runner import ScheduledJob
from storage.clock import Clock
from storage.db.engine import Database
from storage.db.models import Recharge
from storage.money import recharge as recharges

log = logging.getLogger("gateway.reconcile")

RECHARGES = Counter(
    "gateway_reconcile_recharges_total",
    "Recharges checked by the reconciliation job, by outcome: success, error, expired, waiting, failed",
    ["outcome"],
)
MAX_BATCHES = 10  # per run: the rest waits for the next run rather than hold the job for long


class ReconcileJob(ScheduledJob[collections.Counter[str]]):
    """Settles due unconfirmed recharges. One run at a time; `stop` lets checks in flight finish."""

    job_id = "reconcile"
    name = "settle recharges the head-end has not confirmed"

    def __init__(
        self,
        db: Database,
        headend: HeadEnd,
        clock: Clock,
        *,
        every_seconds: int = 30,
        expiry_minutes: int = 1440,
        grace_seconds: float = 120,
        batch: int = 100,
        concurrency: int = 4,
    ) -> None:
        super().__init__(dt.timedelta(seconds=every_seconds))
        self.expiry = dt.timedelta(minutes=expiry_minutes)
        # A `requested` recharge this old is no longer being sent by a live request: longer
        # than any head-end deadline, as for orphaned commands.
        self.grace = dt.timedelta(seconds=grace_seconds)
        self._db = db
        self._headend = headend
        self._clock = clock
        self._batch = batch
        self._concurrency = concurrency

    async def run_once(self) -> collections.Counter[str]:
        """Check every due recharge once at the clock's "now"; how many ended each way."""
        outcomes: collections.Counter[str] = collections.Counter()
        gate = asyncio.Semaphore(self._concurrency)

        async def check(recharge: Recharge) -> str:
            async with gate:
                if self.stopping:
                    return "skipped"  # still due: the next run (here or elsewhere) takes it
                return await self._check(recharge)

        for _ in range(MAX_BATCHES):
            if self.stopping:
                break
            now = self._clock.now()
            due = await recharges.waiting_recharges(
                self._db, now=now, requested_before=now - self.grace, limit=self._batch
            )
            results = await asyncio.gather(*(check(r) for r in due), return_exceptions=True)
            for recharge, result in zip(due, results, strict=True):
                if isinstance(result, BaseException):
                    # Left as it was, so still due: the next run asks again.
                    log.error("recharge %s: check failed", recharge.transaction_id, exc_info=result)
                    result = "failed"
                if result != "skipped":
                    RECHARGES.labels(result).inc()
                outcomes[result] += 1
            if len(due) < self._batch or "failed" in outcomes:
                break  # all due ones seen (a failed check stays due: no second go this run)
        return outcomes

    def idle(self) -> collections.Counter[str]:
        """Nothing checked after `stop`."""
        return collections.Counter()

    async def _check(self, recharge: Recharge) -> str:
        """Ask the head-end about one recharge and record what became of it."""
        tid = recharge.transaction_id
        expired = self._clock.now() >= recharge.created_at + self.expiry
        retry_in = delay(RECONCILE, recharge.checks)  # if it is still not final
        result = await self._headend.credit_status(tid)
        if result.outcome is Outcome.UNKNOWN and not expired:
            # The head-end never got it (it was down, or we died before asking): send it now.
            settled, result = await credit_and_settle(
                self._db,
                self._headend,
                self._clock,
                transaction_id=tid,
                meter_no=recharge.meter_no,
                amount=recharge.amount,
                retry_in=retry_in,
            )
        elif result.outcome in (Outcome.APPLIED, Outcome.REFUSED) or not expired:
            settled = await settle_answer(self._db, self._clock, transaction_id=tid, result=result, retry_in=retry_in)
        else:
            return await self._expire(recharge, result)
        if result.outcome not in (Outcome.APPLIED, Outcome.REFUSED):
            return "waiting"
        log.info("recharge %s settled: %s %s", tid, settled.state, settled.reason)
        return settled.state

    async def _expire(self, recharge: Recharge, result: Result) -> str:
        """End a recharge unconfirmed past its expiry as an error, saying why."""
        tid = recharge.transaction_id
        why = self._why_expired(result)
        await recharges.expire_recharge(self._db, transaction_id=tid, reason=why, now=self._clock.now())
        if result.outcome is Outcome.QUEUED:
            log.warning(
                "recharge %s expired while the head-end still has it queued: if it applies there, "
                "adjust meter %s's balance by hand",
                tid,
                recharge.meter_no,
            )
        else:
            log.warning("recharge %s expired: %s", tid, why)
        return "expired"

    def _why_expired(self, result: Result) -> str:
        minutes = int(self.expiry.total_seconds() // 60)
        if result.outcome is Outcome.UNKNOWN:
            return f"the head-end never received it within {minutes} minutes"
        if result.outcome is Outcome.QUEUED:
            return f"still queued at the head-end after {minutes} minutes"
        last = f"{result.outcome.value}: {result.reason}" if result.reason else result.outcome.value
        return f"not confirmed by the head-end within {minutes} minutes (last answer: {last})"
