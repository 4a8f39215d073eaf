"""The reconciliation job against a real HTTP head-end on 127.0.0.1 (the mock meter server), with
the injected clock: recharges the head-end did not confirm are settled once, across restarts,
or end as errors when refused or expired; and the job has one runner among gateway processes.
"""

from __future__ import annotations

import collections
import datetime as dt
from decimal import Decimal
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from gateway.app import create_app
from gateway.app_keys import RECONCILER, RUNNER, SCHEDULER
from gateway.settings import Settings
from mock_meter_server.app import create_app as create_mock
from storage.clock import FixedClock
from storage.db.engine import Database
from storage.db.models import Recharge
from storage.money import ledger, recharge
from tests.command_setup import MOCK_TOKEN, NOW, MockHeadEnd, StepClock, World, gateway_settings

ORDER = {"site_id": "S1", "meter_no": "101", "amount": "250.50"}
CREDITED = Decimal("350.50")  # 100.00 opening + 250.50


async def post_recharge(client: TestClient, world: World) -> tuple[int, dict[str, Any]]:
    response = await client.post("/api/v1/meter/recharge", json=ORDER, headers=world.headers("operate"))
    return response.status, await response.json()


async def status_of(client: TestClient, world: World, transaction_id: str) -> tuple[int, dict[str, Any]]:
    query = {"site_id": "S1", "transaction_id": transaction_id}
    response = await client.get("/api/v1/meter/recharge-status", params=query, headers=world.headers("read"))
    return response.status, await response.json()


async def only_recharge(db: Database) -> Recharge:
    async with db.reader() as session:
        [row] = (await session.execute(select(Recharge))).scalars()
    return row


async def assert_credited_once(db: Database) -> None:
    check = await ledger.check_ledger(db, meter_no=101)
    assert check.ok and (check.balance, check.credits) == (CREDITED, Decimal("250.50"))


def outcomes(**counts: int) -> collections.Counter[str]:
    return collections.Counter(counts)


async def test_a_recharge_waiting_while_the_head_end_was_down_is_settled_once_after_a_restart(
    aiohttp_client: Any, aiohttp_server: Any, database_url: str, world: World, db: Database, unused_tcp_port: int
) -> None:
    clock = FixedClock(NOW)
    headend_url = f"http://127.0.0.1:{unused_tcp_port}"  # nothing listens there yet: the head-end is down
    settings = gateway_settings(database_url, headend_url)
    first = await aiohttp_client(create_app(settings, clock=clock))
    status, body = await post_recharge(first, world)
    assert (status, body["status"], body["data"]["balance"]) == (202, "waiting", "100.00")
    transaction_id = body["data"]["transaction_id"]
    clock.advance(seconds=10)
    assert await first.app[RECONCILER].run() == outcomes(waiting=1)  # still down: asked, no answer
    waiting = await only_recharge(db)
    assert (waiting.state, waiting.headend_state, waiting.checks) == ("waiting", "failed", 2)
    assert waiting.next_check_at == clock.now() + dt.timedelta(seconds=5)  # durable, in the row
    await first.close()  # the gateway stops...

    mock_clock = StepClock()
    await aiohttp_server(create_mock(seed=3, clock=mock_clock, token=MOCK_TOKEN), port=unused_tcp_port)
    # The head-end is back on the same address; it never heard of the credit.
    second = await aiohttp_client(create_app(settings, clock=clock))  # ...and a new one starts on the database
    job = second.app[RECONCILER]
    assert await job.run() == outcomes()  # the next check is stored in the row: not due yet
    clock.advance(seconds=5)
    assert await job.run() == outcomes(success=1)  # unknown to the head-end: sent again, same id, applied
    settled = await only_recharge(db)
    assert (settled.state, settled.headend_state, settled.balance_after) == ("success", "applied", CREDITED)
    assert settled.token is not None and len(settled.token) == 20 and settled.next_check_at is None
    await assert_credited_once(db)
    clock.advance(hours=1)
    assert await job.run() == outcomes()  # a second run changes nothing
    await assert_credited_once(db)
    assert await status_of(second, world, transaction_id) == (
        200,
        {
            "status": "success",
            "message": "Recharge success",
            "data": {"unit_no": "A-101", "meter_no": "101", "transaction_id": transaction_id, "remarks": ""},
        },
    )
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {MOCK_TOKEN}"}) as control:
        async with control.get(f"{headend_url}/control/state") as response:
            state = await response.json()
    assert state["meters"]["101"]["credited"] == "250.50" and list(state["credits"]) == [transaction_id]


async def test_a_queued_credit_is_settled_when_the_head_end_applies_it(
    gateway: TestClient, world: World, mock: MockHeadEnd, mock_clock: StepClock, db: Database, clock: FixedClock
) -> None:
    await mock.faults(queue_credits_seconds=60)
    status, body = await post_recharge(gateway, world)
    assert (status, body["data"]["remarks"]) == (202, "queued by the head-end")
    job = gateway.app[RECONCILER]
    assert await job.run() == outcomes(waiting=1)  # still queued: next check in 5 s, then 10 s
    for seconds, expected in ((4, outcomes()), (1, outcomes(waiting=1)), (55, outcomes(success=1))):
        clock.advance(seconds=seconds)
        mock_clock.at = clock.now()
        assert await job.run() == expected
    settled = await only_recharge(db)
    credit = (await mock.state())["credits"][settled.transaction_id]
    assert (settled.state, settled.token) == ("success", credit["token"])
    assert settled.applied_at == NOW + dt.timedelta(seconds=60)  # when the head-end applied it
    await assert_credited_once(db)
    assert await job.run() == outcomes()


async def test_a_credit_the_head_end_refuses_later_ends_as_an_error(
    gateway: TestClient, world: World, mock: MockHeadEnd, db: Database
) -> None:
    await mock.faults(unreachable=["101"])  # the head-end cannot reach the meter: it keeps nothing
    assert (await post_recharge(gateway, world))[0] == 202
    await mock.faults(unreachable=[], refuse_credits=["101"])
    assert await gateway.app[RECONCILER].run() == outcomes(error=1)
    refused = await only_recharge(db)
    assert (refused.state, refused.reason) == ("error", "meter refuses credits")
    assert await status_of(gateway, world, refused.transaction_id) == (
        200,
        {"status": "error", "message": "Recharge was not successful due to meter refuses credits", "data": None},
    )
    assert (await ledger.check_ledger(db, meter_no=101)).balance == Decimal("100.00")
    assert await gateway.app[RECONCILER].run() == outcomes()


async def test_a_recharge_unconfirmed_past_its_expiry_ends_as_an_error_with_remarks(
    gateway: TestClient, world: World, mock: MockHeadEnd, db: Database, clock: FixedClock
) -> None:
    await mock.faults(unreachable=["101"])
    assert (await post_recharge(gateway, world))[0] == 202
    job = gateway.app[RECONCILER]
    assert await job.run() == outcomes(waiting=1)  # unknown, sent again: unreachable again
    clock.advance(minutes=1440)  # the default GATEWAY_RECHARGE_EXPIRY_MINUTES
    await mock.faults(unreachable=[])  # the head-end could take it now, but it is too late to send it
    assert await job.run() == outcomes(expired=1)
    expired = await only_recharge(db)
    reason = "expired: the head-end never received it within 1440 minutes"
    assert (expired.state, expired.reason, expired.next_check_at) == ("error", reason, None)
    assert await status_of(gateway, world, expired.transaction_id) == (
        200,
        {"status": "error", "message": f"Recharge was not successful due to {reason}", "data": None},
    )
    assert await job.run() == outcomes()
    assert (await mock.state())["credits"] == {}
    assert (await ledger.check_ledger(db, meter_no=101)).balance == Decimal("100.00")


async def test_a_recharge_left_requested_by_a_crash_is_sent_and_settled(
    gateway: TestClient, world: World, mock: MockHeadEnd, db: Database, clock: FixedClock
) -> None:
    # The row was written, then the process died before asking the head-end.
    opened, _ = await recharge.open_recharge(
        db, client="operate", idempotency_key="k1", site_id="S1", meter_no=101, amount=Decimal("250.50"), now=NOW
    )
    job = gateway.app[RECONCILER]
    assert await job.run() == outcomes()  # it may still be in flight in a live request
    clock.advance(minutes=2, seconds=1)  # older than any head-end call: orphaned
    assert await job.run() == outcomes(success=1)
    assert (await only_recharge(db)).transaction_id == opened.transaction_id
    assert list((await mock.state())["credits"]) == [opened.transaction_id]
    await assert_credited_once(db)


async def test_two_gateways_on_postgresql_reconcile_in_one_of_them(aiohttp_client: Any, postgres_url: str) -> None:
    clock = FixedClock(NOW)
    settings = gateway_settings(postgres_url, None)
    a, b = [await aiohttp_client(create_app(settings, clock=clock)) for _ in range(2)]
    assert await a.app[RUNNER].run(a.app[RECONCILER]) == "ran"
    assert await b.app[RUNNER].run(b.app[RECONCILER]) == "skipped"
    assert a.app[RUNNER].leases.held >= {"reconcile"}


async def test_the_scheduler_runs_the_reconciliation_job_through_the_runner(
    aiohttp_client: Any, sqlite_url: str
) -> None:
    app = create_app(Settings(database_url=sqlite_url, reconcile_every_seconds=45))
    await aiohttp_client(app)
    job = app[SCHEDULER].get_job("reconcile")
    assert job.func == app[RUNNER].run and job.args == (app[RECONCILER],)
    assert job.trigger.interval == dt.timedelta(seconds=45)
