"""Money safety under faults: recharge while the gateway dies at its fault points, restart it,
let reconciliation and the clients' retries settle everything, then count every rupee.

A real `mock-meter-server` plays the head-end and a real `gateway serve` talks to it over HTTP.
Each cycle starts the gateway with one fault point armed (tests/reliability/faults.py: it SIGKILLs itself
the N-th time a recharge reaches that point, N drawn at random) or, for the kind `sigkill`, with
none, and the harness SIGKILLs it after a random 0.3-2 s. Meanwhile:

- recharge clients post Factech call 3, half with an `Idempotency-Key`, half without, each
  recharge with an amount no other has (so a recharge without a key can be found again);
- a reading client posts unique readings (tests/reliability/crash.py's, slowed down), so
  balances are debited throughout and the ledger identity is not trivial.

After the kill the gateway is restarted with no fault point and new recharges are held back.
The clients do what iSocietyManager would: a request that never connected is sent again
(nothing reached the gateway); a request that died after it was sent is sent again only with
its `Idempotency-Key` (the contract's way of making a retry safe), and a 202 is followed by
call 4 until it is final, then call 3 again with the key for the full answer. Without a key a
recharge in doubt is not sent again: sending it twice would be two recharges. Reconciliation
(every second, taking over a `requested` recharge 3 s after it was written) settles what the
dead process left. The settle time is from the restarted gateway's first healthy answer until
no client waits and no recharge in the database is unsettled. Then the gateway stops (SIGTERM)
and the next cycle starts it with the next fault point.

Checked at the end: tests/reliability/money_check.py.
"""

from __future__ import annotations

import asyncio
import collections
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select

from storage.db.engine import Database
from storage.db.models import Recharge
from storage.registry import keys
from tests.reliability.crash import CrashClient, CrashConfig
from tests.reliability.faults import AFTER_COMMIT, AFTER_CREDIT, BEFORE_CREDIT
from tests.reliability.gatewayproc import FIRST_METER, SITE, GatewayProcess, HeadEndProcess, prepare_site
from tests.reliability.money_check import MoneyReport, Order, check_money

SIGKILL = "sigkill"  # not a fault point: the harness kills the gateway at a random moment
KINDS = (AFTER_CREDIT, AFTER_COMMIT, BEFORE_CREDIT, SIGKILL)
TARIFF = Decimal("8.00")
RECHARGE = "/api/v1/meter/recharge"
RECHARGE_STATUS = "/api/v1/meter/recharge-status"
GATEWAY_ENV = {
    "GATEWAY_RECONCILE_EVERY_SECONDS": "1",
    "GATEWAY_HEADEND_DEADLINE_SECONDS": "2",
    "GATEWAY_ORPHAN_AFTER_SECONDS": "3",  # a `requested` recharge left by a dead process: taken over after 3 s
}


@dataclass
class MoneyConfig:
    """One run: the kills and their kinds, the load, the database."""

    database_url: str
    workdir: Path
    kills: int = 3
    kinds: tuple[str, ...] = (AFTER_CREDIT, AFTER_COMMIT, BEFORE_CREDIT)  # taken in turn
    meters: int = 10
    opening: Decimal = Decimal("20000.00")
    recharge_clients: int = 4
    keyed_share: float = 0.5  # share of recharges sent with an Idempotency-Key
    hits: tuple[int, int] = (1, 4)  # an armed point kills at its N-th hit, N drawn from this range
    sigkill_seconds: tuple[float, float] = (0.3, 2.0)  # load before a random SIGKILL
    reading_clients: int = 2
    reading_pause: float = 0.05  # seconds between one reading client's requests
    settle_within: float = 60.0
    seed: int = 0
    server_cpu: str = ""


class RechargeClient:
    """iSocietyManager recharging: new recharges while `open` is set, each followed to its end."""

    def __init__(self, config: MoneyConfig, url: str, api_key: str) -> None:
        self.config = config
        self.url = url
        self.headers = {"X-API-Key": api_key}
        self.rng = random.Random(config.seed)
        self.orders: list[Order] = []
        self.answers: collections.Counter[int] = collections.Counter()  # HTTP status → answers
        self.open = asyncio.Event()
        self.busy = 0
        self.stopping = False

    def _new_order(self) -> Order:
        number = len(self.orders) + 1
        keyed = self.rng.random() < self.config.keyed_share
        order = Order(
            number=number,
            meter_no=FIRST_METER + self.rng.randrange(self.config.meters),
            amount=Decimal(10) + Decimal(number) / 100,  # unique: the order is found again by it
            key=f"money-{self.config.seed}-{number}" if keyed else None,
        )
        self.orders.append(order)
        return order

    async def worker(self, session: aiohttp.ClientSession) -> None:
        """Place orders one after another while new ones are allowed."""
        while True:
            await self.open.wait()
            if self.stopping:
                return
            order = self._new_order()
            self.busy += 1
            try:
                await self.place(session, order)
            finally:
                self.busy -= 1

    async def place(self, session: aiohttp.ClientSession, order: Order) -> None:
        """Call 3 until answered (resending only what is safe to resend), then follow a 202."""
        body = {"site_id": SITE, "meter_no": str(order.meter_no), "amount": str(order.amount)}
        headers = {**self.headers, **({"Idempotency-Key": order.key} if order.key else {})}
        while True:
            order.attempts += 1
            try:
                async with session.post(self.url + RECHARGE, json=body, headers=headers) as reply:
                    status, payload = reply.status, await reply.json(content_type=None)
                    retry_after = float(reply.headers.get("Retry-After", "0.2"))
            except aiohttp.ClientConnectorError:
                await asyncio.sleep(0.1)  # never connected: nothing reached the gateway, send it again
                continue
            except (aiohttp.ClientError, TimeoutError, ValueError):
                order.in_doubt = True  # sent, no answer: taken or not, nobody can say from here
                if order.key is None:
                    order.outcome = "no answer"  # resending without a key would be a second recharge
                    return
                await asyncio.sleep(0.1)
                continue
            self.answers[status] += 1
            if status in (429, 503):
                await asyncio.sleep(retry_after)
                continue
            if status == 200 and payload["status"] == "success":
                order.answered(payload["data"])
                return
            if status == 202:
                await self.follow(session, order, payload["data"]["transaction_id"])
                return
            order.outcome = f"HTTP {status}: {payload}"
            return

    async def follow(self, session: aiohttp.ClientSession, order: Order, transaction_id: str) -> None:
        """Call 4 until the recharge is final; with a key, call 3 again for the full answer."""
        order.transaction_id = transaction_id
        query = {"site_id": SITE, "transaction_id": transaction_id}
        deadline = time.monotonic() + self.config.settle_within
        while time.monotonic() < deadline:
            try:
                async with session.get(self.url + RECHARGE_STATUS, params=query, headers=self.headers) as reply:
                    status, payload = reply.status, await reply.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                await asyncio.sleep(0.2)  # a read: always safe to ask again
                continue
            if status == 202:
                await asyncio.sleep(0.2)
                continue
            if status == 200 and payload["status"] == "success" and order.key is not None:
                await self.place(session, order)  # the first answer again, now final: token, balance
            elif status == 200 and payload["status"] == "success":
                order.outcome = "success"
            else:
                order.outcome = f"call 4 HTTP {status}: {payload}"
            return
        order.outcome = "unsettled"


@dataclass
class Cycle:
    """One kill: its kind, how the gateway ended, and how long it took to come back and settle."""

    kind: str
    exit_status: int | None = None
    restart_seconds: float = 0.0
    settle_seconds: float | None = None  # None: not settled within the limit


@dataclass
class MoneyRun:
    """The report and the timings of every cycle."""

    report: MoneyReport
    cycles: list[Cycle] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Timings, then the report."""
        kinds = collections.Counter(c.kind for c in self.cycles)
        statuses = collections.Counter(c.exit_status for c in self.cycles)
        restarts = [c.restart_seconds for c in self.cycles]
        settles = [c.settle_seconds for c in self.cycles if c.settle_seconds is not None]
        return [
            f"kills: {len(self.cycles)} ({', '.join(f'{k} {n}' for k, n in kinds.items())}); "
            f"exit statuses {dict(statuses)}",
            f"restart to healthy: median {_median(restarts):.2f} s, max {max(restarts, default=0):.2f} s; "
            f"healthy to settled: median {_median(settles):.2f} s, max {max(settles, default=0):.2f} s, "
            f"not settled: {len(self.cycles) - len(settles)}",
            *self.report.lines(),
        ]

    @property
    def ok(self) -> bool:
        """True when no promise was broken and every kill was the kind intended."""
        fault_kills = [c for c in self.cycles if c.kind != SIGKILL]
        return self.report.ok and all(c.exit_status == -9 and c.settle_seconds is not None for c in fault_kills)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


async def _unsettled(db: Database) -> int:
    async with db.reader() as session:
        query = select(func.count()).select_from(Recharge).where(Recharge.state.in_(("requested", "waiting")))  # type: ignore[attr-defined]
        return (await session.execute(query)).scalar_one()


async def _settled(db: Database, client: RechargeClient, within: float) -> float | None:
    """Seconds until no client waits and no recharge is unsettled, or None past `within`."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if client.busy == 0 and await _unsettled(db) == 0:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    return None


async def _cycle(
    config: MoneyConfig, kind: str, gateway: GatewayProcess, client: RechargeClient, db: Database
) -> Cycle:
    """Start with `kind` armed, recharge until the gateway dies, restart it clean, wait for the settling."""
    cycle = Cycle(kind)
    armed = "" if kind == SIGKILL else f"{kind}:{client.rng.randint(*config.hits)}"
    await gateway.start(faults=armed)
    client.open.set()
    if kind == SIGKILL:
        await asyncio.sleep(client.rng.uniform(*config.sigkill_seconds))
        await gateway.kill()
        cycle.exit_status = -9
    else:
        cycle.exit_status = await gateway.exited(within=60)
        if cycle.exit_status is None:
            raise RuntimeError(f"the gateway did not reach fault point {kind} within 60 s")
    client.open.clear()
    cycle.restart_seconds = await gateway.start()
    cycle.settle_seconds = await _settled(db, client, config.settle_within)
    await gateway.stop()
    return cycle


async def run_money(config: MoneyConfig, progress: Callable[[str], None] = print) -> MoneyRun:
    """Prepare the site, run the kill/restart cycles under recharge and reading load, then check."""
    started = time.monotonic()
    ingest_key = await prepare_site(config.database_url, meters=config.meters, opening_balance=config.opening)
    db = Database(config.database_url)
    operate = await keys.create_key(db, name="money-operate", role="operate", sites=[SITE])
    headend = HeadEndProcess(config.workdir, seed=config.seed, cpu=config.server_cpu)
    await headend.start()
    gateway = GatewayProcess(
        config.database_url, config.workdir, env={**headend.gateway_env, **GATEWAY_ENV}, cpu=config.server_cpu
    )
    client = RechargeClient(config, gateway.url, operate.key)
    readings = CrashClient(
        CrashConfig(
            database_url=config.database_url,
            workdir=config.workdir,
            meters=config.meters,
            concurrency=config.reading_clients,
            max_batch=10,
            seed=config.seed,
            pause=config.reading_pause,
        ),
        gateway.url,
        ingest_key,
        config.workdir / "readings.jsonl",
    )
    cycles: list[Cycle] = []
    headend_state: dict[str, Any] = {}
    try:
        timeout = aiohttp.ClientTimeout(total=30)
        fresh = aiohttp.TCPConnector(limit=0, force_close=True)  # no stale pooled connection after a restart
        async with (
            aiohttp.ClientSession(timeout=timeout, connector=fresh) as money_session,
            aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as reading_session,
        ):
            workers = [asyncio.create_task(client.worker(money_session)) for _ in range(config.recharge_clients)]
            posters = [asyncio.create_task(readings.worker(reading_session)) for _ in range(config.reading_clients)]
            for number in range(config.kills):
                cycle = await _cycle(config, config.kinds[number % len(config.kinds)], gateway, client, db)
                cycles.append(cycle)
                progress(
                    f"kill {number + 1}/{config.kills} {cycle.kind}: exit {cycle.exit_status}, restart "
                    f"{cycle.restart_seconds:.2f} s, settled {_seconds(cycle.settle_seconds)}; recharges so far "
                    f"{len(client.orders)}, in doubt {sum(o.in_doubt for o in client.orders)}, "
                    f"readings {len(readings.acked)}"
                )
            await gateway.start()  # the readings still to send go in, then everything stops
            readings.stopping = client.stopping = True
            client.open.set()
            await asyncio.wait_for(asyncio.gather(*workers, *posters), 120)
            headend_state = await headend.state()
    finally:
        readings.close()
        await gateway.stop()
        await headend.stop()
    try:
        report = await check_money(db, client.orders, headend_state, meters=config.meters)
    finally:
        await db.dispose()
    report.readings = len(readings.acked)
    report.answers = dict(client.answers)
    report.seconds = time.monotonic() - started
    return MoneyRun(report, cycles)


def _seconds(value: float | None) -> str:
    return "NOT SETTLED" if value is None else f"{value:.2f} s"
