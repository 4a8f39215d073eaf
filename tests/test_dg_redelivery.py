"""The DG callback horizon: an undelivered event is retried with backoff, across restarts, for
GATEWAY_CALLBACK_HORIZON_HOURS from the start of its round, then marked failed.

Time is the injected clock's; the receiver is a real HTTP server on 127.0.0.1 that answers 503
while "down". Each step jumps the clock to the event's stored next attempt.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from gateway.app import create_app
from gateway.settings import Settings
from tests.test_dg_callbacks import NOW, Env, attempts, events, make_env


async def restart(env: Env, aiohttp_client: Any, database_url: str, **settings: Any) -> None:
    """Close the gateway and start a new one on the same database and clock, with `settings`."""
    await env.client.close()
    values = {"database_url": database_url, "scheduler": False, "callback_allow_private": True, **settings}
    env.client = await aiohttp_client(create_app(Settings(**values), clock=env.clock))
    env.app = env.client.app


async def step(env: Env, job: Any) -> int:
    """Jump to the event's next attempt and run a pass; the attempts it made."""
    [event] = await events(env.db)
    assert event.next_attempt_at is not None
    env.clock.set(event.next_attempt_at)
    return await job.run()


async def test_a_receiver_down_for_hours_gets_the_event_once_it_is_back(
    aiohttp_client: Any, aiohttp_server: Any, database_url: str
) -> None:
    env = await make_env(aiohttp_client, aiohttp_server, database_url, replies=[503] * 1000)
    try:
        assert await env.post_dg("ON") == 200
        job = env.job
        assert await job.run() == 1
        while env.clock.now() < NOW + dt.timedelta(hours=3):
            assert await step(env, job) == 1
        await restart(env, aiohttp_client, database_url)  # the gateway restarts meanwhile
        job = env.job
        while env.clock.now() < NOW + dt.timedelta(hours=8):
            assert await step(env, job) == 1
        env.receiver.replies.clear()  # the receiver is back
        assert await step(env, job) == 1
        [event] = await events(env.db)
        assert (event.state, event.delivered_at) == ("delivered", env.clock.now())
        log = await attempts(env.db)
        assert [a.http_status for a in log] == [503] * (len(log) - 1) + [200]
        gaps = [later.attempted_at - earlier.attempted_at for earlier, later in itertools.pairwise(log)]
        assert gaps[:3] == [dt.timedelta(seconds=s) for s in (5, 10, 20)] and max(gaps) == dt.timedelta(hours=1)
        env.clock.advance(days=5)
        assert await job.run() == 0  # delivered exactly once
        assert env.receiver.received.qsize() == len(log)
    finally:
        await env.db.dispose()


async def test_an_event_undelivered_past_the_horizon_is_failed_and_can_be_redelivered(
    aiohttp_client: Any, aiohttp_server: Any, database_url: str
) -> None:
    env = await make_env(aiohttp_client, aiohttp_server, database_url, replies=[503] * 1000)
    try:
        assert await env.post_dg("ON") == 200
        await restart(env, aiohttp_client, database_url, callback_horizon_hours=6)
        job = env.job
        assert await job.run() == 1
        [event] = await events(env.db)
        while event.state == "pending":
            assert await step(env, job) == 1
            [event] = await events(env.db)
        assert (event.state, event.next_attempt_at) == ("failed", None)
        log = await attempts(env.db)
        horizon = NOW + dt.timedelta(hours=6)
        assert log[-1].attempted_at <= horizon < log[-1].attempted_at + dt.timedelta(hours=1)
        env.clock.advance(days=1)
        assert await job.run() == 0
        # An admin redelivers it: a new round, with its own horizon, from now.
        env.receiver.replies.clear()
        status, _ = await env.admin("POST", f"/sites/S1/dgs/DG1/deliveries/{event.event_id}/redeliver")
        assert status == 202
        assert await job.run() == 1
        [event] = await events(env.db)
        assert (event.state, event.round_started_at) == ("delivered", env.clock.now())
    finally:
        await env.db.dispose()
