"""The fleet simulator: meters posting half-hourly packets to a gateway's `/meter`, DGs posting
to `/dg`, on an accelerated clock. It replaces the seed's `meterlogger.py`.

Time: the simulated clock starts at `start` and runs `speed` simulated seconds per real second.
Unless `free_run`, it never passes real time: it fast-forwards through the past, then keeps
pace with the wall clock (a gateway refuses packets from the future). Events (a meter tick
after each half hour, DG switching) run in simulated-time order from one heap; what each
device reports comes from `curves`, a pure function of the seed, so runs are reproducible.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import email.utils
import heapq
import itertools
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import aiohttp

from mock_meter_server import curves
from mock_meter_server.curves import HALF_HOUR, Generator, iso_z

RETRY_STATUSES = (429, 503)

log = logging.getLogger("mock_meter_server.fleet")


@dataclasses.dataclass
class FleetConfig:
    """Everything the simulator needs; `__main__` builds it from the flags."""

    gateway: str
    meters: list[str]
    start: dt.datetime
    speed: float = 60.0
    seed: int = 0
    free_run: bool = False
    ingest_key: str | None = None
    tokens: dict[str, str] = dataclasses.field(default_factory=dict)  # meter_no -> device token
    batch: int = 0  # 0: one POST per packet; N: concentrator arrays of up to N
    upload_every: int = 1  # half hours a concentrator keeps before posting them together (1: at once)
    site_id: str | None = None
    dgs: list[str] = dataclasses.field(default_factory=list)
    dg_start_kwh: float = 0.0  # the DGs' energy registers at the start (to continue a previous run)
    timezone: str = "Asia/Kolkata"
    intervals: int | None = None  # stop after this many half hours (None: run until stopped)
    dup_rate: float = 0.01
    late_rate: float = 0.01
    outage_rate: float = 0.04  # chance per half hour that a DG starts
    dg_run_by: int | None = None  # if no DG has run by this interval, one starts in it (a demo's replay)
    concurrency: int = 32
    progress_seconds: float = 5.0
    max_attempts: int = 5
    max_retry_after: float = 60.0
    output: TextIO = dataclasses.field(default_factory=lambda: sys.stdout)


class SimClock:
    """Simulated UTC time: `start` + real elapsed x `speed`, capped at the wall clock unless
    `free_run`. `monotonic` and `wall` are injectable for tests.
    """

    def __init__(
        self,
        start: dt.datetime,
        speed: float,
        *,
        free_run: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start, self.speed, self.free_run = start, speed, free_run
        self._monotonic, self._wall = monotonic, wall
        self._t0 = monotonic()

    def now(self) -> dt.datetime:
        """The simulated instant."""
        sim = self.start + dt.timedelta(seconds=(self._monotonic() - self._t0) * self.speed)
        return sim if self.free_run else min(sim, self._wall())

    def seconds_until(self, at: dt.datetime) -> float:
        """Real seconds until the simulated clock reaches `at` (0 if it has)."""
        wait = self._t0 + (at - self.start).total_seconds() / self.speed - self._monotonic()
        if not self.free_run:
            wait = max(wait, (at - self._wall()).total_seconds())
        return max(0.0, wait)

    async def sleep_until(self, at: dt.datetime) -> None:
        """Sleep (in slices of at most a second, so a wall-clock jump is noticed) until `at`."""
        wait = self.seconds_until(at)
        while wait > 0:
            await asyncio.sleep(min(wait, 1.0))
            wait = self.seconds_until(at)


@dataclasses.dataclass
class Stats:
    """What the fleet did, for progress lines and tests."""

    packets_sent: int = 0
    packets_ok: int = 0
    packets_failed: int = 0
    dg_sent: int = 0
    dg_ok: int = 0
    requests: Counter[str] = dataclasses.field(default_factory=Counter)  # by HTTP status or "error"
    retries: Counter[str] = dataclasses.field(default_factory=Counter)
    sim_time: dt.datetime | None = None

    def line(self) -> str:
        """One progress line."""
        by_status = " ".join(f"{k}:{v}" for k, v in sorted(self.requests.items())) or "-"
        retries = " ".join(f"{k}:{v}" for k, v in sorted(self.retries.items())) or "0"
        when = iso_z(self.sim_time) if self.sim_time else "-"
        return (
            f"[fleet] sim {when} | packets sent {self.packets_sent} ok {self.packets_ok} "
            f"failed {self.packets_failed} | dg sent {self.dg_sent} ok {self.dg_ok} "
            f"| replies {by_status} | retries {retries}"
        )


def retry_after_seconds(value: str | None, now: dt.datetime) -> float | None:
    """A `Retry-After` header (seconds or an HTTP date) as seconds to wait; None if absent/bad."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - now).total_seconds()) if when.tzinfo else None


def packet_id(meter_no: str) -> int | str:
    """The packet's `id`: a number as in the seed when the meter number is one, else the string."""
    return int(meter_no) if meter_no.isdigit() and not meter_no.startswith("0") else meter_no


class Fleet:
    """Runs the simulation: call `run()` and await it (or cancel it to stop)."""

    def __init__(
        self,
        config: FleetConfig,
        *,
        clock: SimClock | None = None,
        after_interval: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        """`after_interval(k)` is awaited once interval k's packets have been answered (for tests
        that look at the gateway between half hours without polling)."""
        self.config = config
        self.after_interval = after_interval
        self.clock = clock or SimClock(config.start, config.speed, free_run=config.free_run)
        self.stats = Stats()
        self.tz = ZoneInfo(config.timezone)
        self.base = config.gateway.rstrip("/")
        self.first = curves.floor_half_hour(config.start)
        self.generators = {
            dg: Generator(config.site_id or "", dg, reading_kwh=config.dg_start_kwh) for dg in config.dgs
        }
        self.held: dict[int, list[dict[str, Any]]] = {}  # late packets by the tick that sends them
        self.kept: list[dict[str, Any]] = []  # packets waiting for the concentrator's next upload
        self.kept_intervals: list[int] = []
        self._heap: list[tuple[dt.datetime, int, str, Any]] = []
        self._seq = itertools.count()
        self._limit = asyncio.Semaphore(config.concurrency)
        self._beating: set[str] = set()  # DGs with a half-hourly report scheduled
        self._dg_ran = False
        self._session: aiohttp.ClientSession | None = None

    def _push(self, at: dt.datetime, kind: str, payload: Any) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), kind, payload))

    async def run(self) -> Stats:
        """Simulate until `intervals` half hours have been reported (or until cancelled)."""
        timeout = aiohttp.ClientTimeout(total=30, connect=5)
        tick = dt.timedelta(minutes=1)
        end = None if self.config.intervals is None else self.first + self.config.intervals * HALF_HOUR + tick
        progress = asyncio.create_task(self._progress())
        try:
            async with aiohttp.ClientSession(timeout=timeout) as self._session:
                if self.generators:
                    self._push(self.first, "dg_plan", 0)
                self._push(self.first + HALF_HOUR + tick, "meters", 0)
                while self._heap:
                    at, _, kind, payload = heapq.heappop(self._heap)
                    if end is not None and at > end:
                        break  # the last half hour is reported; DGs stop with the meters
                    await self.clock.sleep_until(at)
                    self.stats.sim_time = at
                    await getattr(self, f"_on_{kind}")(at, payload)
        finally:
            progress.cancel()
            print(self.stats.line(), file=self.config.output, flush=True)
        return self.stats

    async def _progress(self) -> None:
        # Only when something changed: an idle fleet (replay done, waiting for real time) is quiet.
        last = ""
        while True:
            await asyncio.sleep(self.config.progress_seconds)
            line = self.stats.line()
            if line != last:
                print(line, file=self.config.output, flush=True)
                last = line

    def _last(self, k: int) -> bool:
        return self.config.intervals is not None and k >= self.config.intervals - 1

    # --- meters ----------------------------------------------------------------------------

    async def _on_meters(self, at: dt.datetime, k: int) -> None:
        """Interval k has ended a minute ago: every meter reports it (some late, some twice), at
        once or with the next upload (`upload_every`); each packet keeps its own timestamp."""
        cfg = self.config
        start = self.first + k * HALF_HOUR
        due = self.held.pop(k, [])
        for meter_no in cfg.meters:
            packet = {
                "id": packet_id(meter_no),
                "timestamp": iso_z(at),
                "reading_kWh": curves.interval_kwh(cfg.seed, meter_no, start, self.tz),
            }
            quirk = curves.quirks(cfg.seed, meter_no, start, cfg.dup_rate, cfg.late_rate)
            if quirk.late_by:
                self.held.setdefault(k + quirk.late_by, []).append(packet)
                continue
            due.extend([packet, packet] if quirk.duplicate else [packet])
        if self._last(k):  # the run ends here: late packets still held go out now
            for tick in sorted(self.held):
                due.extend(self.held.pop(tick))
        else:
            self._push(at + HALF_HOUR, "meters", k + 1)
        self.kept.extend(due)
        self.kept_intervals.append(k)
        if (k + 1) % cfg.upload_every and not self._last(k):
            return
        due, self.kept = self.kept, []
        await self._send_packets(due)
        if self.after_interval is not None:
            for answered in self.kept_intervals:
                await self.after_interval(answered)
        self.kept_intervals = []

    async def _send_packets(self, packets: list[dict[str, Any]]) -> None:
        if not packets:
            return
        if self.config.batch:
            size = self.config.batch
            chunks = [packets[i : i + size] for i in range(0, len(packets), size)]
            await asyncio.gather(*(self._post_meter(chunk, self.config.ingest_key) for chunk in chunks))
        else:
            await asyncio.gather(*(self._post_meter(p, self._bearer(p)) for p in packets))

    def _bearer(self, packet: dict[str, Any]) -> str | None:
        return self.config.tokens.get(str(packet["id"]), self.config.ingest_key)

    async def _post_meter(self, body: dict[str, Any] | list[dict[str, Any]], bearer: str | None) -> None:
        count = len(body) if isinstance(body, list) else 1
        self.stats.packets_sent += count
        status, reply = await self._post("/meter", body, bearer)
        if status == 207 and isinstance(reply, dict):  # a batch with some items rejected
            rejected = len((reply.get("data") or {}).get("rejected") or [])
            self.stats.packets_ok += count - rejected
            self.stats.packets_failed += rejected
        elif status is not None and 200 <= status < 300:
            self.stats.packets_ok += count
        else:
            self.stats.packets_failed += count

    # --- DGs -------------------------------------------------------------------------------

    async def _on_dg_plan(self, at: dt.datetime, k: int) -> None:
        """At the start of interval k: which stopped DGs an outage will start in it."""
        cfg = self.config
        self._push(at + HALF_HOUR, "dg_plan", k + 1)
        forced = k == cfg.dg_run_by and not self._dg_ran
        for index, (dg, gen) in enumerate(self.generators.items()):
            if gen.status == "ON":
                continue
            # The first DG surely starts in interval `dg_run_by` if none has run yet (rate 1).
            rate = 1.0 if forced and index == 0 else cfg.outage_rate
            found = curves.outage(cfg.seed, cfg.site_id or "", dg, at, rate)
            if found is not None:
                self._push(at + found.offset, "dg_on", (dg, found))

    async def _on_dg_on(self, at: dt.datetime, payload: tuple[str, curves.Outage]) -> None:
        dg, found = payload
        gen = self.generators[dg]
        gen.switch("ON", at, found.load_kw)
        self._dg_ran = True
        self._push(at + found.duration, "dg_off", dg)
        if dg not in self._beating:
            self._beating.add(dg)
            self._push(curves.floor_half_hour(at) + HALF_HOUR + dt.timedelta(minutes=1), "dg_beat", dg)
        await self._post_dg(gen.packet(at))

    async def _on_dg_off(self, at: dt.datetime, dg: str) -> None:
        gen = self.generators[dg]
        packet = gen.packet(at) | {"status": "OFF"}  # the tank as it stopped, before any refill
        gen.switch("OFF", at)
        await self._post_dg(packet)

    async def _on_dg_beat(self, at: dt.datetime, dg: str) -> None:
        """Every half hour while running: fuel and register, so the tank visibly drains."""
        gen = self.generators[dg]
        if gen.status != "ON":
            self._beating.discard(dg)
            return
        self._push(at + HALF_HOUR, "dg_beat", dg)
        await self._post_dg(gen.packet(at))

    async def _post_dg(self, packet: dict[str, Any]) -> None:
        self.stats.dg_sent += 1
        status, _ = await self._post("/dg", packet, self.config.ingest_key)
        if status is not None and 200 <= status < 300:
            self.stats.dg_ok += 1

    # --- HTTP ------------------------------------------------------------------------------

    async def _post(self, path: str, body: Any, bearer: str | None) -> tuple[int | None, Any]:
        """POST with retries: 429/503 wait for `Retry-After` (capped), connection errors back off.

        Returns the last HTTP status (None if no answer ever came) and the JSON reply if any.
        """
        assert self._session is not None
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        cfg = self.config
        for attempt in range(1, cfg.max_attempts + 1):
            final = attempt == cfg.max_attempts
            try:
                async with self._limit, self._session.post(self.base + path, json=body, headers=headers) as r:
                    status, raw, retry_after = r.status, await r.read(), r.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError):
                if final:
                    self.stats.requests["error"] += 1
                    return None, None
                self.stats.retries["error"] += 1
                await asyncio.sleep(min(2.0**attempt / 4, 5.0))
                continue
            if status in RETRY_STATUSES and not final:
                self.stats.retries[str(status)] += 1
                wait = retry_after_seconds(retry_after, dt.datetime.now(dt.UTC))
                await asyncio.sleep(min(wait if wait is not None else 1.0, cfg.max_retry_after))
                continue
            self.stats.requests[str(status)] += 1
            try:
                return status, json.loads(raw) if raw else None
            except ValueError:
                return status, None
        raise AssertionError("unreachable")  # the loop always returns on its final attempt


def fleet_context(config: FleetConfig) -> Callable[[Any], AsyncIterator[None]]:
    """A cleanup context running the fleet beside the head-end for the app's life."""

    async def context(_app: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(Fleet(config).run())
        task.add_done_callback(_report_failure)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return context


def _report_failure(task: asyncio.Task[Stats]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("fleet stopped", exc_info=task.exception())
