"""DG callbacks end to end: `POST /dg` transitions delivered to a real HTTP receiver on 127.0.0.1,
signed, retried with backoff, logged, and listed/redelivered through the admin API.

The receiver lives on loopback, so these gateways run with GATEWAY_CALLBACK_ALLOW_PRIVATE on,
except where the test is that a loopback target is refused at delivery.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from gateway.app import create_app
from gateway.app_keys import CALLBACKS, DELIVERIES
from gateway.settings import Settings
from scheduler.deliveries import DeliveryJob
from schemas.dg_callback import new_secret, verify
from storage.clock import FixedClock
from storage.db.engine import Database
from storage.db.event_models import DgDeliveryAttempt, DgEvent
from storage.dg import dg_events
from tests.api_setup import add_dg, add_key, add_site, headers

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


@dataclass
class Receiver:
    """An HTTP endpoint that records every callback and answers the scripted statuses, then 200."""

    replies: list[int] = field(default_factory=list)
    received: asyncio.Queue[tuple[dict[str, str], bytes]] = field(default_factory=asyncio.Queue)
    gate: asyncio.Event | None = None  # when set up, hold each answer until the test opens it
    moved_hits: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.received.put_nowait((dict(request.headers), await request.read()))
        if self.gate is not None:
            await self.gate.wait()
        status = self.replies.pop(0) if self.replies else 200
        return web.Response(status=status, headers={"Location": "/moved"} if 300 <= status < 400 else None)

    async def moved(self, _request: web.Request) -> web.Response:
        self.moved_hits += 1
        return web.Response(status=200)

    async def next(self, within: float = 5) -> tuple[dict[str, str], bytes]:
        return await asyncio.wait_for(self.received.get(), within)


@dataclass
class Env:
    client: TestClient
    app: web.Application
    db: Database
    clock: FixedClock
    receiver: Receiver
    url: str
    secret: str
    keys: dict[str, str]

    async def post_dg(self, status: str, at: str = "2026-11-20T10:10:00Z", dg: str = "DG1", **extra: Any) -> int:
        body = {"site_id": "S1", "dg_number": dg, "timestamp": at, "status": status, **extra}
        response = await self.client.post("/dg", json=body, headers={"Authorization": f"Bearer {self.keys['ingest']}"})
        return response.status

    @property
    def job(self) -> DeliveryJob:
        return self.app[DELIVERIES]

    async def admin(self, method: str, path: str, key: str = "admin") -> tuple[int, dict[str, Any]]:
        response = await self.client.request(method, f"/api/v1/admin{path}", headers=headers(self.keys[key]))
        return response.status, await response.json()


async def make_env(
    aiohttp_client: Any,
    aiohttp_server: Any,
    database_url: str,
    *,
    scheduler: bool = False,
    allow_private: bool = True,
    replies: list[int] | None = None,
    host: str = "127.0.0.1",
) -> Env:
    db = Database(database_url)
    await add_site(db, "S1")  # Asia/Kolkata: UTC+05:30
    await add_site(db, "S2")
    for site, dg in (("S1", "DG1"), ("S1", "DG2"), ("S2", "DG9")):
        await add_dg(db, site, dg)
    keys = {role: await add_key(db, role, "S1") for role in ("ingest", "operate", "admin")}
    receiver = Receiver(list(replies or []))
    receiving = web.Application()
    receiving.router.add_post("/dg", receiver.handle)
    receiving.router.add_post("/moved", receiver.moved)
    server: TestServer = await aiohttp_server(receiving, host="127.0.0.1")
    url = f"http://{host}:{server.port}/dg"
    clock = FixedClock(NOW)
    settings = Settings(database_url=database_url, scheduler=scheduler, callback_allow_private=allow_private)
    app = create_app(settings, clock=clock)
    client = await aiohttp_client(app)
    if allow_private:
        response = await client.post(
            "/api/v1/dg/sensing",
            json={"site_id": "S1", "dg_number": "DG1", "url": url},
            headers=headers(keys["operate"]),
        )
        assert response.status == 200
        secret = (await response.json())["data"]["secret"]
    else:  # registered while the override was on, say; the gateway must still refuse at delivery
        secret = new_secret()
        await dg_events.subscribe(db, site_id="S1", dg_no="DG1", url=url, secret=secret, now=NOW)
    return Env(client, app, db, clock, receiver, url, secret, keys)


@pytest.fixture
async def env(aiohttp_client: Any, aiohttp_server: Any, database_url: str) -> Any:
    environment = await make_env(aiohttp_client, aiohttp_server, database_url, replies=[500, 503])
    yield environment
    await environment.db.dispose()


async def events(db: Database) -> list[DgEvent]:
    async with db.reader() as session:
        return list((await session.execute(select(DgEvent).order_by(DgEvent.id))).scalars())


async def attempts(db: Database) -> list[DgDeliveryAttempt]:
    async with db.reader() as session:
        return list((await session.execute(select(DgDeliveryAttempt).order_by(DgDeliveryAttempt.id))).scalars())


async def test_callback_arrives_signed_within_five_seconds_of_the_change(
    aiohttp_client: Any, aiohttp_server: Any, database_url: str
) -> None:
    env = await make_env(aiohttp_client, aiohttp_server, database_url, scheduler=True)
    try:
        started = time.monotonic()
        assert await env.post_dg("ON") == 200
        received_headers, body = await env.receiver.next(within=5)
        assert time.monotonic() - started < 5
        payload = verify(env.secret, received_headers, body, now=env.clock.now())
        assert payload == {
            "site_id": "S1",
            "dg_no": "DG1",
            "status": "ON",
            "date_time": "2026-11-20 15:40:00",  # 10:10 UTC in Asia/Kolkata
            "event_id": received_headers["webhook-id"],
        }
        assert received_headers["Content-Type"] == "application/json"
        assert received_headers["webhook-timestamp"] == str(int(NOW.timestamp()))
        for _ in range(200):  # the attempt is logged just after the receiver answers
            if (await events(env.db))[0].state == "delivered":
                break
            await asyncio.sleep(0.01)
        [event] = await events(env.db)
        [attempt] = await attempts(env.db)
        assert (event.event_id, event.state, event.delivered_at) == (payload["event_id"], "delivered", NOW)
        assert (attempt.http_status, attempt.error, attempt.url, attempt.attempted_at) == (200, "", env.url, NOW)
        assert attempt.latency_ms >= 0
    finally:
        await env.db.dispose()


async def test_a_receiver_that_fails_then_recovers_gets_the_event_exactly_as_sent(env: Env) -> None:
    assert await env.post_dg("ON") == 200
    sent: list[tuple[dict[str, str], bytes]] = []
    for wait, made in ((0, 1), (4, 0), (1, 1), (9, 0), (1, 1), (3600, 0)):
        env.clock.advance(seconds=wait)
        assert await env.job.run() == made  # backoff: 5 s after the first failure, 10 s after the second
        if made:
            sent.append(await env.receiver.next())
            verify(env.secret, sent[-1][0], sent[-1][1], now=env.clock.now())
    assert len({h["webhook-id"] for h, _ in sent}) == 1 and len({body for _, body in sent}) == 1
    assert [int(h["webhook-timestamp"]) - int(NOW.timestamp()) for h, _ in sent] == [0, 5, 15]
    log = await attempts(env.db)
    assert [(a.http_status, a.attempted_at - NOW) for a in log] == [
        (500, dt.timedelta(0)),
        (503, dt.timedelta(seconds=5)),
        (200, dt.timedelta(seconds=15)),
    ]
    [event] = await events(env.db)
    assert (event.state, event.attempts, event.next_attempt_at) == ("delivered", 3, None)


async def test_retries_stop_at_the_horizon_and_an_admin_can_redeliver(env: Env) -> None:
    # Retries 5 s after the first failure; the next would be 15 s in, past a 10 s horizon.
    job = DeliveryJob(env.db, env.clock, env.app[CALLBACKS], horizon=dt.timedelta(seconds=10))
    assert await env.post_dg("ON") == 200
    assert await job.run() == 1
    env.clock.advance(seconds=5)
    assert await job.run() == 1
    env.clock.advance(days=1)
    assert await job.run() == 0
    [event] = await events(env.db)
    assert (event.state, event.next_attempt_at) == ("failed", None)
    status, body = await env.admin("POST", f"/sites/S1/dgs/DG1/deliveries/{event.event_id}/redeliver")
    assert status == 202 and body["data"]["state"] == "pending"
    assert await job.run() == 1
    first, second, third = [await env.receiver.next() for _ in range(3)]
    assert first[1] == second[1] == third[1]
    assert [a.http_status for a in await attempts(env.db)] == [500, 503, 200]


async def test_a_slow_receiver_does_not_hold_up_dg_posts(
    aiohttp_client: Any, aiohttp_server: Any, database_url: str
) -> None:
    env = await make_env(aiohttp_client, aiohttp_server, database_url, scheduler=True)
    env.receiver.gate = asyncio.Event()
    try:
        assert await env.post_dg("ON") == 200
        on_headers, _ = await env.receiver.next()  # in flight, unanswered
        started = time.monotonic()
        assert await env.post_dg("OFF", at="2026-11-20T10:20:00Z") == 200
        assert time.monotonic() - started < 1
        env.receiver.gate.set()
        off_headers, off_body = await env.receiver.next()
        assert verify(env.secret, off_headers, off_body, now=env.clock.now())["status"] == "OFF"
        assert on_headers["webhook-id"] != off_headers["webhook-id"]
    finally:
        env.receiver.gate.set()
        await env.db.dispose()


async def test_redirects_are_not_followed(aiohttp_client: Any, aiohttp_server: Any, database_url: str) -> None:
    env = await make_env(aiohttp_client, aiohttp_server, database_url, replies=[307])
    try:
        assert await env.post_dg("ON") == 200
        assert await env.job.run() == 1
        await env.receiver.next()
        assert env.receiver.moved_hits == 0
        [attempt] = await attempts(env.db)
        [event] = await events(env.db)
        assert attempt.http_status == 307 and event.state == "pending"
        assert event.next_attempt_at == NOW + dt.timedelta(seconds=5)
    finally:
        await env.db.dispose()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_loopback_target_is_refused_again_at_delivery(
    aiohttp_client: Any, aiohttp_server: Any, database_url: str, host: str
) -> None:
    env = await make_env(aiohttp_client, aiohttp_server, database_url, allow_private=False, host=host)
    try:
        assert await env.post_dg("ON") == 200
        assert await env.job.run() == 1
        assert env.receiver.received.empty()
        [attempt] = await attempts(env.db)
        assert attempt.http_status is None and "callback URL refused" in attempt.error
        [event] = await events(env.db)
        assert event.state == "pending" and event.next_attempt_at == NOW + dt.timedelta(seconds=5)
    finally:
        await env.db.dispose()


async def test_only_transitions_of_subscribed_dgs_make_events(env: Env) -> None:
    assert await env.post_dg("ON") == 200
    assert await env.post_dg("ON", at="2026-11-20T10:15:00Z") == 200  # no change: no event
    assert await env.post_dg("ON", dg="DG2") == 200  # a change, but nobody to call
    # A refused post changes nothing, so it queues nothing.
    assert await env.post_dg("OFF", at="2026-11-20T10:20:00Z", reading_kWh=5) == 200
    assert await env.post_dg("ON", at="2026-11-20T10:30:00Z", reading_kWh=4) == 400
    assert [(e.dg_no, e.status, e.at) for e in await events(env.db)] == [
        ("DG1", "ON", dt.datetime(2026, 11, 20, 10, 10, tzinfo=dt.UTC)),
        ("DG1", "OFF", dt.datetime(2026, 11, 20, 10, 20, tzinfo=dt.UTC)),
    ]


async def test_admin_lists_a_dgs_deliveries_with_every_attempt(env: Env) -> None:
    assert await env.post_dg("ON") == 200
    assert await env.job.run() == 1
    env.clock.advance(seconds=5)
    assert await env.job.run() == 1
    [event] = await events(env.db)
    status, body = await env.admin("GET", "/sites/S1/dgs/DG1/deliveries")
    assert status == 200 and body["message"] == "DG callback deliveries"
    assert body["data"] == [
        {
            "event": {
                "event_id": event.event_id,
                "site_id": "S1",
                "dg_number": "DG1",
                "status": "ON",
                "at": "2026-11-20T10:10:00+00:00",
                "state": "pending",
                "next_attempt_at": "2026-11-20T12:00:15+00:00",
                "delivered_at": None,
            },
            "attempts": [
                {
                    "attempted_at": f"2026-11-20T12:00:{second}+00:00",
                    "url": env.url,
                    "http_status": code,
                    "error": "",
                    "latency_ms": attempt["latency_ms"],
                }
                for (second, code), attempt in zip((("00", 500), ("05", 503)), body["data"][0]["attempts"], strict=True)
            ],
        }
    ]


async def test_admin_delivery_calls_answer_404_403_outside_their_scope(env: Env) -> None:
    assert await env.post_dg("ON") == 200
    [event] = await events(env.db)
    assert (await env.admin("GET", "/sites/S1/dgs/DG7/deliveries"))[0] == 404
    assert (await env.admin("GET", "/sites/S2/dgs/DG9/deliveries"))[0] == 404
    assert (await env.admin("POST", f"/sites/S2/dgs/DG9/deliveries/{event.event_id}/redeliver"))[0] == 404
    assert (await env.admin("POST", "/sites/S1/dgs/DG1/deliveries/evt_nope/redeliver"))[0] == 404
    assert (await env.admin("POST", f"/sites/S1/dgs/DG2/deliveries/{event.event_id}/redeliver"))[0] == 404
    status, body = await env.admin("GET", "/sites/S1/dgs/DG1/deliveries", key="operate")
    assert status == 403 and body["status"] == "error"
    async with env.db.reader() as session:
        assert await session.scalar(select(func.count()).select_from(DgDeliveryAttempt)) == 0


async def test_a_nat64_form_of_loopback_is_refused_at_delivery(
    aiohttp_client: Any, aiohttp_server: Any, database_url: str
) -> None:
    env = await make_env(aiohttp_client, aiohttp_server, database_url, allow_private=False, host="[64:ff9b::7f00:1]")
    try:
        assert await env.post_dg("ON") == 200
        assert await env.job.run() == 1
        [attempt] = await attempts(env.db)
        assert attempt.http_status is None
        assert attempt.error.endswith("callback URL refused: 64:ff9b::7f00:1 is not a public address")
    finally:
        await env.db.dispose()


async def test_a_slow_receiver_holds_up_no_other_receiver(
    aiohttp_client: Any, aiohttp_server: Any, database_url: str
) -> None:
    """Eight DGs of one site call back a receiver that hangs; another site's callback still goes out."""
    env = await make_env(aiohttp_client, aiohttp_server, database_url)
    slow = Receiver(gate=asyncio.Event())
    slow_app = web.Application()
    slow_app.router.add_post("/dg", slow.handle)
    slow_server: TestServer = await aiohttp_server(slow_app, host="127.0.0.1")
    try:
        slow_dgs = [f"DG-SLOW-{n}" for n in range(8)]
        for dg in slow_dgs:
            await add_dg(env.db, "S1", dg)
            url = f"http://127.0.0.1:{slow_server.port}/dg"
            await dg_events.subscribe(env.db, site_id="S1", dg_no=dg, url=url, secret=new_secret(), now=NOW)
        await dg_events.subscribe(env.db, site_id="S2", dg_no="DG9", url=env.url, secret=new_secret(), now=NOW)
        async with env.db.transaction() as session:
            for dg in slow_dgs:  # queued first, so they are first in the pass
                await dg_events.queue_event(session, site_id="S1", dg_no=dg, status="ON", at=NOW, now=NOW)
            await dg_events.queue_event(session, site_id="S2", dg_no="DG9", status="ON", at=NOW, now=NOW)
        passing = asyncio.create_task(env.job.run())
        _headers, body = await env.receiver.next()  # the other site's callback, while the slow ones hang
        assert b'"DG9"' in body and not passing.done()
        slow.gate.set()
        assert await passing == 9
        assert slow.received.qsize() == 8
    finally:
        if slow.gate is not None:
            slow.gate.set()
        await env.db.dispose()
