"""Backlog flush: many meters come back at once, each with a missed day (48 packets) to post.

Each meter posts its day either as one array (batched) or as 48 single packets one after the
other (unbatched), all meters at once. A 503 or 429 is retried after its `Retry-After` (times
1-1.5, so retries do not come back in one wave); a dropped connection after a second. At the
end every reading must be stored exactly once, with its value, each meter's balance debited
for exactly its 48 readings; the drain time is from the first request to the last reply.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import aiohttp
from sqlalchemy import func, select

from storage.db.engine import Database
from storage.db.models import Meter, Reading
from tests.reliability.gatewayproc import FIRST_METER, SITE, GatewayProcess, prepare_site

OPENING = Decimal("100000.00")
TARIFF = Decimal("8.00")
INTERVALS = 48


@dataclass
class BacklogReport:
    """What one flush took and what it left in the database."""

    mode: str
    meters: int
    requests: int = 0
    retried: collections.Counter[int] = field(default_factory=collections.Counter)  # status (0: no reply) → count
    drain_seconds: float = 0.0
    stored: int = 0
    expected: int = 0
    stored_twice: int = 0
    wrong_balance: int = 0
    unexpected: list[str] = field(default_factory=list)
    checked: bool = False  # the database figures are filled in (`check`)

    @property
    def ok(self) -> bool:
        """Every reading stored once, balances right, no unexpected reply."""
        return self.stored == self.expected and not (self.stored_twice or self.wrong_balance or self.unexpected)

    def line(self) -> str:
        """One line of figures."""
        retries = ", ".join(f"{'no reply' if s == 0 else s}: {n:,}" for s, n in sorted(self.retried.items())) or "none"
        rate = self.expected / self.drain_seconds if self.drain_seconds else 0
        line = (
            f"{self.mode:9} {self.meters:,} meters × {INTERVALS} = {self.expected:,} readings in {self.requests:,} "
            f"requests: drained in {self.drain_seconds:.1f} s ({rate:,.0f} readings/s); retried ({retries})"
        )
        if self.unexpected:
            line += f"; UNEXPECTED {self.unexpected[:3]}"
        if self.checked:
            line += f"; stored {self.stored:,}, twice {self.stored_twice}, wrong balances {self.wrong_balance}"
            line += "" if self.ok else "  ← FAILED"
        return line


def missed_day(meter_no: int, first: dt.datetime) -> list[dict[str, object]]:
    """The meter's 48 packets of a missed day, oldest first (values vary by meter and interval)."""
    return [
        {
            "id": meter_no,
            "timestamp": (first + dt.timedelta(minutes=30 * (i + 1) + 1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "reading_kWh": ((meter_no + i) % 50 + 1) / 100,
        }
        for i in range(INTERVALS)
    ]


async def flush(
    url: str, key: str, *, meters: int, batched: bool, connections: int, first_index: int = 0, seed: int = 0
) -> BacklogReport:
    """Post the missed day of meters first_index.. at once; returns the report without the database figures."""
    report = BacklogReport("batched" if batched else "unbatched", meters, expected=meters * INTERVALS)
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    # The 48 half hours ending at least an hour ago: nothing is "in the future" for the gateway.
    first = now.replace(minute=now.minute - now.minute % 30, second=0, microsecond=0) - dt.timedelta(hours=25)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    async def post(session: aiohttp.ClientSession, body: bytes) -> None:
        while True:
            report.requests += 1
            try:
                async with session.post(f"{url}/meter", data=body, headers=headers) as reply:
                    await reply.read()
                    status, wait = reply.status, float(reply.headers.get("Retry-After", "1"))
            except (aiohttp.ClientError, TimeoutError):
                status, wait = 0, 1.0
            if status == 200:
                return
            if status not in (0, 429, 503):
                report.unexpected.append(f"{status} for {body[:80]!r}")
                return
            report.retried[status] += 1
            await asyncio.sleep(wait * rng.uniform(1.0, 1.5))

    async def meter(session: aiohttp.ClientSession, meter_no: int) -> None:
        packets = missed_day(meter_no, first)
        if batched:
            await post(session, json.dumps(packets).encode())
        else:
            for one in packets:  # a meter replays its buffer in order, one packet at a time
                await post(session, json.dumps(one).encode())

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        started = time.monotonic()
        await asyncio.gather(*(meter(session, FIRST_METER + first_index + i) for i in range(meters)))
        report.drain_seconds = time.monotonic() - started
    return report


async def check(url: str, report: BacklogReport) -> None:
    """Fill in the database figures (readings stored, stored twice, balances) for the whole site."""
    report.expected = report.meters * INTERVALS
    report.checked = True
    db = Database(url)
    try:
        async with db.reader() as session:
            report.stored = (await session.execute(select(func.count()).select_from(Reading))).scalar_one()
            keys = select(Reading.meter_no, Reading.interval_start).group_by(Reading.meter_no, Reading.interval_start)
            twice = keys.having(func.count() > 1).subquery()
            report.stored_twice = (await session.execute(select(func.count()).select_from(twice))).scalar_one()
            charges = dict(
                (
                    await session.execute(select(Reading.meter_no, func.sum(Reading.charge)).group_by(Reading.meter_no))
                ).all()
            )
            counts = dict(
                (await session.execute(select(Reading.meter_no, func.count()).group_by(Reading.meter_no))).all()
            )
            balances = (await session.execute(select(Meter.meter_no, Meter.balance).where(Meter.site_id == SITE))).all()
    finally:
        await db.dispose()
    for meter_no, balance in balances:
        if counts.get(meter_no) != INTERVALS or balance != OPENING - Decimal(charges.get(meter_no) or 0):
            report.wrong_balance += 1


async def run_backlog(
    database_url: str,
    workdir: Path,
    *,
    meters: int,
    batched: bool,
    connections: int = 256,
    env: dict[str, str] | None = None,
    server_cpu: str = "",
) -> BacklogReport:
    """A fresh site of `meters` meters, a gateway process, one flush, the check."""
    key = await prepare_site(database_url, meters=meters, opening_balance=OPENING, tariff=TARIFF)
    gateway = GatewayProcess(database_url, workdir, env=env, cpu=server_cpu)
    await gateway.start()
    try:
        report = await flush(gateway.url, key, meters=meters, batched=batched, connections=connections)
    finally:
        await gateway.stop()
    await check(database_url, report)
    return report
