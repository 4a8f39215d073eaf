"""Crash consistency: post unique readings at full speed, SIGKILL the gateway at random moments,
restart it, and compare what the client was told with what the database holds.

The client behaves like a real meter fleet: every reading is unique (meter × half hour); a
request whose reply never came (the connection died with the process) is sent again, unchanged,
once the gateway is back. A reply "Duplicate reading" to such a retry means the first attempt
had been committed but its reply was lost: that is the "stored but unacknowledged" figure.

Checked after the last restart (`check_database`):
- every acknowledged reading is stored, with the value sent (lost must be 0);
- no (meter, interval) is stored twice (the primary key forbids it; checked anyway);
- nothing is stored that was refused or never sent;
- each meter's balance = opening − Σ its readings' charge, its grid register = Σ its kWh, and
  each charge = kWh × tariff rounded half-up to the paisa.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import random
import time
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import aiohttp
from sqlalchemy import func, select, text

from storage.db.engine import Database
from storage.db.models import Meter, Reading
from tests.reliability.gatewayproc import FIRST_METER, SITE, GatewayProcess, prepare_site

TARIFF = Decimal("8.00")
OPENING = Decimal("1000000.00")
HALF_HOUR = dt.timedelta(minutes=30)
Key = tuple[int, dt.datetime]  # meter, interval start (UTC)


@dataclass
class CrashConfig:
    """One run: how many kills, how hard the client pushes, how long between kills."""

    database_url: str
    workdir: Path
    kills: int = 3
    meters: int = 500
    concurrency: int = 16
    batch_share: float = 0.5  # share of requests that are arrays (2..max_batch packets)
    max_batch: int = 100
    run_seconds: tuple[float, float] = (0.3, 1.5)  # load before each kill, drawn uniformly
    seed: int = 0
    server_cpu: str = ""
    pause: float = 0.0  # seconds each worker waits after an answered request (0: flat out)


@dataclass
class CrashReport:
    """What the client saw and what the database holds."""

    kills: int = 0
    sent: int = 0  # unique readings posted at least once
    requests: int = 0
    acknowledged: int = 0  # readings with a 2xx, first attempt or retry
    in_doubt: int = 0  # readings whose request died with the process (then retried)
    committed_unacknowledged: int = 0  # of those, the retry answered "Duplicate": stored before the kill
    refused: dict[int, int] = field(default_factory=dict)  # HTTP status → readings (e.g. 503 while starting)
    stored: int = 0
    lost: int = 0  # acknowledged, not stored: must be 0
    stored_twice: int = 0  # must be 0
    stored_never_acknowledged: int = 0
    stored_never_sent: int = 0  # must be 0
    refused_but_stored: int = 0  # a refused request's readings found stored on its retry: must be 0
    wrong_value: int = 0  # must be 0
    wrong_charge: int = 0  # must be 0
    wrong_balance: int = 0  # meters; must be 0
    wrong_register: int = 0  # meters; must be 0
    restart_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no promise was broken."""
        return not (
            self.lost
            or self.stored_twice
            or self.stored_never_sent
            or self.refused_but_stored
            or self.wrong_value
            or self.wrong_charge
            or self.wrong_balance
            or self.wrong_register
            or self.stored_never_acknowledged
        )

    def lines(self) -> list[str]:
        """The report as text."""
        restarts = sorted(self.restart_seconds)
        median = restarts[len(restarts) // 2] if restarts else 0.0
        return [
            f"kills (SIGKILL): {self.kills}, run time {self.seconds:.1f} s, restart to healthy: median {median:.2f} s, "
            f"max {max(restarts, default=0):.2f} s",
            f"requests: {self.requests:,}; unique readings sent: {self.sent:,}, acknowledged: {self.acknowledged:,}",
            f"in doubt at a kill (no reply, retried): {self.in_doubt:,}; of those already committed "
            f"(retry answered 'Duplicate'): {self.committed_unacknowledged:,}",
            f"refused (status → readings, retried): {dict(sorted(self.refused.items())) or 'none'}",
            f"stored: {self.stored:,}",
            f"acknowledged but lost: {self.lost}",
            f"stored twice: {self.stored_twice}",
            f"stored but never acknowledged: {self.stored_never_acknowledged}",
            f"stored but never sent: {self.stored_never_sent}, refused yet stored: {self.refused_but_stored}",
            f"wrong value: {self.wrong_value}, wrong charge: {self.wrong_charge}, "
            f"meters with wrong balance: {self.wrong_balance}, wrong register: {self.wrong_register}",
            "RESULT: " + ("OK" if self.ok else "BROKEN PROMISE"),
        ]


def reading_for(n: int, meters: int, base: dt.datetime) -> tuple[Key, int]:
    """The n-th unique reading: (meter, interval start) and its energy in watt-hours."""
    start = base - HALF_HOUR * (n // meters)
    return (FIRST_METER + n % meters, start), 1 + (n * 7919) % 3000


class CrashClient:
    """A fleet posting unique readings as fast as the gateway takes them, retrying lost replies."""

    def __init__(self, config: CrashConfig, url: str, key: str, log: Path) -> None:
        self.config = config
        self.url = f"{url}/meter"
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.rng = random.Random(config.seed)
        # The newest interval an hour back, so no packet is ever "in the future" for the gateway.
        now = dt.datetime.now(dt.UTC)
        self.base = now.replace(minute=now.minute - now.minute % 30, second=0, microsecond=0) - 2 * HALF_HOUR
        self.next_n = 0
        self.sent: dict[Key, int] = {}
        self.acked: set[Key] = set()
        self.refused: collections.Counter[int] = collections.Counter()
        # (readings, why): "lost" (no reply) or the HTTP status that refused them
        self.retry: collections.deque[tuple[list[tuple[Key, int]], str]] = collections.deque()
        self.in_doubt = 0
        self.committed_unacked = 0
        self.refused_but_stored = 0
        self.requests = 0
        self.stopping = False
        self._log = log.open("a")

    def _fresh(self) -> list[tuple[Key, int]]:
        size = 1 if self.rng.random() >= self.config.batch_share else self.rng.randint(2, self.config.max_batch)
        out = []
        for _ in range(size):
            key, wh = reading_for(self.next_n, self.config.meters, self.base)
            self.next_n += 1
            self.sent[key] = wh
            out.append((key, wh))
        return out

    @staticmethod
    def _body(readings: list[tuple[Key, int]], as_array: bool) -> bytes:
        packets = [
            {
                "id": meter,
                "timestamp": (start + HALF_HOUR + dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "reading_kWh": wh / 1000,
            }
            for (meter, start), wh in readings
        ]
        return json.dumps(packets if as_array else packets[0]).encode()

    async def worker(self, session: aiohttp.ClientSession) -> None:
        """Post until told to stop and nothing is left to retry."""
        while True:
            why = ""
            if self.retry:
                readings, why = self.retry.popleft()
            elif self.stopping:
                return
            else:
                readings = self._fresh()
            retrying = bool(why)
            as_array = len(readings) > 1
            self.requests += 1
            try:
                async with session.post(self.url, data=self._body(readings, as_array), headers=self.headers) as reply:
                    status, payload = reply.status, await reply.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                # No reply: the process died under us (or is restarting). Send the same again later.
                if not retrying:
                    self.in_doubt += len(readings)
                self.retry.append((readings, why or "lost"))
                await asyncio.sleep(0.05)
                continue
            if status == 200:
                data = payload["data"]
                duplicates = (1 if data["duplicate"] else 0) if not as_array else data["duplicates"]
                if why == "lost":
                    self.committed_unacked += duplicates
                elif retrying:  # refused earlier ("nothing was taken"), yet already stored?
                    self.refused_but_stored += duplicates
                elif duplicates:
                    raise AssertionError(f"a fresh reading was answered as a duplicate: {payload}")
                self.acked.update(key for key, _ in readings)
                self._log.write(json.dumps([[m, s.isoformat(), wh] for (m, s), wh in readings]) + "\n")
                if self.config.pause:
                    await asyncio.sleep(self.config.pause)
            else:  # 503 while the writer is full or the store restarts: nothing taken, send again
                self.refused[status] += len(readings)
                self.retry.append((readings, str(status)))
                await asyncio.sleep(float(reply.headers.get("Retry-After", "0.2")))

    def close(self) -> None:
        """Close the acknowledgement log."""
        self._log.close()


async def run_crash(config: CrashConfig) -> CrashReport:
    """Prepare the database, run the kill/restart cycle under load, then check the database."""
    started = time.monotonic()
    key = await prepare_site(config.database_url, meters=config.meters, opening_balance=OPENING, tariff=TARIFF)
    gateway = GatewayProcess(config.database_url, config.workdir, cpu=config.server_cpu)
    report = CrashReport()
    await gateway.start()
    client = CrashClient(config, gateway.url, key, config.workdir / "acknowledged.jsonl")
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
            workers = [asyncio.create_task(client.worker(session)) for _ in range(config.concurrency)]
            for _ in range(config.kills):
                await asyncio.sleep(client.rng.uniform(*config.run_seconds))
                await gateway.kill()
                report.restart_seconds.append(await gateway.start())
            await asyncio.sleep(config.run_seconds[0])  # some load after the last restart too
            client.stopping = True
            await asyncio.wait_for(asyncio.gather(*workers), 120)
    finally:
        client.close()
        await gateway.stop()
    report.kills = gateway.kills
    report.requests = client.requests
    report.sent = len(client.sent)
    report.acknowledged = len(client.acked)
    report.in_doubt = client.in_doubt
    report.committed_unacknowledged = client.committed_unacked
    report.refused = dict(client.refused)
    report.refused_but_stored = client.refused_but_stored
    await check_database(config.database_url, client, report)
    report.seconds = time.monotonic() - started
    return report


def _charge(wh: int) -> Decimal:
    return (Decimal(wh) / 1000 * TARIFF).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


async def check_database(url: str, client: CrashClient, report: CrashReport) -> None:
    """Compare the database with the client's log; fill in the report's database figures."""
    db = Database(url)
    try:
        async with db.reader() as session:
            rows = (
                await session.execute(select(Reading.meter_no, Reading.interval_start, Reading.kwh, Reading.charge))
            ).all()
            twice = (
                await session.execute(
                    select(func.count()).select_from(
                        select(Reading.meter_no, Reading.interval_start)
                        .group_by(Reading.meter_no, Reading.interval_start)
                        .having(func.count() > 1)
                        .subquery()
                    )
                )
            ).scalar_one()
            meters = (
                await session.execute(
                    select(Meter.meter_no, Meter.balance, Meter.grid_kwh).where(Meter.site_id == SITE)
                )
            ).all()
            if db.is_sqlite:
                integrity = (await session.execute(text("PRAGMA integrity_check"))).scalar_one()
                assert integrity == "ok", f"SQLite integrity_check: {integrity}"
    finally:
        await db.dispose()
    stored: dict[Key, tuple[int, Decimal]] = {}
    spent: collections.Counter[int] = collections.Counter()
    energy: collections.Counter[int] = collections.Counter()
    for meter_no, start, kwh, charge in rows:
        wh = int(kwh * 1000)
        stored[(meter_no, start)] = (wh, charge)
        spent[meter_no] += int(charge * 100)
        energy[meter_no] += wh
        if charge != _charge(wh):
            report.wrong_charge += 1
    report.stored = len(stored)
    report.stored_twice = twice
    report.lost = sum(1 for key in client.acked if key not in stored)
    report.stored_never_acknowledged = sum(1 for key in stored if key not in client.acked)
    report.stored_never_sent = sum(1 for key in stored if key not in client.sent)
    report.wrong_value = sum(1 for key, (wh, _) in stored.items() if client.sent.get(key, wh) != wh)
    for meter_no, balance, grid_kwh in meters:
        if balance != OPENING - Decimal(spent[meter_no]) / 100:
            report.wrong_balance += 1
        if int(grid_kwh * 1000) != energy[meter_no]:
            report.wrong_register += 1
