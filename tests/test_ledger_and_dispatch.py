"""The ledger (admin listing, adjustments, meter replacement, the balance check) and the command
dispatcher (queued cuts, crash recovery by re-sending under the same id), plus the gateway
against `python -m mock_meter_server` as a real process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import update

from adapters.operations import send_command
from gateway.app import create_app
from gateway.app_keys import CLOCK, DISPATCHER, HEADEND
from storage.clock import FixedClock
from storage.db.engine import Database
from storage.db.models import Command, Meter
from storage.money import command_log, ledger
from storage.registry import meter_changes
from tests.command_setup import MOCK_TOKEN, NOW, MockHeadEnd, World, gateway_settings

# The ledger


async def test_admin_lists_the_ledger_with_its_check(simulated: TestClient, world: World) -> None:
    response = await simulated.post(
        "/api/v1/meter/recharge",
        json={"site_id": "S1", "meter_no": "101", "amount": "20"},
        headers=world.headers("operate"),
    )
    transaction_id = (await response.json())["data"]["transaction_id"]
    response = await simulated.get("/api/v1/admin/meters/101/ledger", headers=world.headers("admin"))
    assert response.status == 200
    body = await response.json()
    for entry in body["data"]["entries"]:
        assert entry.pop("id") and entry.pop("created_at")
    assert body == {
        "status": "success",
        "message": "Ledger",
        "data": {
            "meter_no": "101",
            "check": {
                "opening": "100.00",
                "credits": "20.00",
                "adjustments": "0.00",
                "debits": "0.00",
                "expected": "120.00",
                "balance": "120.00",
                "ok": True,
            },
            "entries": [
                {
                    "kind": "opening",
                    "amount": "100.00",
                    "balance_after": "100.00",
                    "reason": "balance when registered",
                    "transaction_id": None,
                    "created_by": "",
                },
                {
                    "kind": "credit",
                    "amount": "20.00",
                    "balance_after": "120.00",
                    "reason": "recharge",
                    "transaction_id": transaction_id,
                    "created_by": "operate",
                },
            ],
        },
    }


async def test_an_adjustment_moves_the_balance_with_its_reason(
    simulated: TestClient, world: World, db: Database
) -> None:
    response = await simulated.post(
        "/api/v1/admin/meters/101/adjustments",
        json={"amount": "-30.25", "reason": "meter read wrong in January"},
        headers=world.headers("admin"),
    )
    assert response.status == 201
    body = await response.json()
    assert body["message"] == "Balance adjusted"
    assert {k: body["data"][k] for k in ("kind", "amount", "balance_after", "reason", "created_by")} == {
        "kind": "adjustment",
        "amount": "-30.25",
        "balance_after": "69.75",
        "reason": "meter read wrong in January",
        "created_by": "admin",
    }
    check = await ledger.check_ledger(db, meter_no=101)
    assert check.ok and check.adjustments == Decimal("-30.25")


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"amount": "5"}, {"reason": ["Missing data for required field."]}),
        ({"amount": "0", "reason": "x"}, {"amount": ["Must not be zero."]}),
        ({"amount": "1.001", "reason": "x"}, {"amount": ["At most 2 decimals."]}),
        ({"amount": "1", "reason": "x", "extra": 1}, {"extra": ["Unknown field."]}),
    ],
)
async def test_adjustment_bad_input(simulated: TestClient, world: World, body: dict, errors: dict) -> None:
    response = await simulated.post("/api/v1/admin/meters/101/adjustments", json=body, headers=world.headers("admin"))
    assert response.status == 400
    assert (await response.json())["errors"] == errors


async def test_ledger_routes_need_admin_of_the_meters_site(simulated: TestClient, world: World) -> None:
    for method, path in (("GET", "/api/v1/admin/meters/101/ledger"), ("POST", "/api/v1/admin/meters/101/adjustments")):
        response = await simulated.request(
            method, path, json={"amount": "1", "reason": "x"}, headers=world.headers("operate")
        )
        assert response.status == 403
        response = await simulated.request(
            method, path.replace("101", "201"), json={"amount": "1", "reason": "x"}, headers=world.headers("admin")
        )
        assert response.status == 404
        assert await response.json() == {
            "status": "error",
            "message": "unknown meter 201",
            "errors": {"meter_no": ["Unknown meter."]},
        }


async def test_an_adjustment_lifting_a_cut_meter_above_zero_restores_it(
    simulated: TestClient, world: World, db: Database
) -> None:
    async with db.transaction() as session:
        session.add(
            Command(meter_no=101, action="cut", reason="zero balance", state="done", created_at=NOW, updated_at=NOW)
        )
        await session.execute(update(Meter).where(Meter.meter_no == 101).values(relay_on=False))  # type: ignore[arg-type]
    await ledger.adjust_balance(db, meter_no=101, amount=Decimal("1"), reason="goodwill", created_by="t", now=NOW)
    assert [(c.action, c.state) for c in await command_log.list_commands(db)] == [
        ("cut", "done"),
        ("restore", "requested"),
    ]


async def test_a_meter_replacement_moves_the_balance_through_the_ledger(db: Database, world: World) -> None:
    await meter_changes.replace_meter(
        db, site_id="S1", old_meter_no=101, new_meter_no=111, meter_change_date=dt.date(2025, 2, 8), now=NOW
    )
    old, new = await ledger.check_ledger(db, meter_no=101), await ledger.check_ledger(db, meter_no=111)
    assert (old.ok, old.balance, old.adjustments) == (True, Decimal("0.00"), Decimal("-100.00"))
    assert (new.ok, new.balance, new.opening, new.adjustments) == (
        True,
        Decimal("100.00"),
        Decimal(0),
        Decimal("100.00"),
    )
    assert [(e.kind, e.reason) for e in await ledger.list_ledger(db, meter_no=111)] == [
        ("adjustment", "moved from meter 101")
    ]


async def test_the_check_catches_a_balance_changed_outside_the_ledger(db: Database, world: World) -> None:
    async with db.transaction() as session:
        await session.execute(update(Meter).where(Meter.meter_no == 101).values(balance=Decimal("100.01")))  # type: ignore[arg-type]
    check = await ledger.check_ledger(db, meter_no=101)
    assert not check.ok and check.expected == Decimal("100.00")


# The dispatcher


async def test_a_command_orphaned_after_sending_is_sent_again_and_acts_once(
    gateway: TestClient, world: World, mock: MockHeadEnd, db: Database, clock: FixedClock
) -> None:
    # A process wrote and sent a stop, the head-end did it, and the process died before recording it.
    opened = await command_log.open_command(
        db, site_id="S1", meter_no=101, action="stop", params={}, reason="t", now=NOW
    )
    assert opened.command.command_id is not None
    await mock.faults(drop_next=1)  # the answer is lost
    dispatcher = gateway.app[DISPATCHER]
    assert await dispatcher.run() == []  # not stale yet: it may still be in flight
    clock.advance(minutes=5)
    [finished] = await dispatcher.run()
    assert (finished.id, finished.state, finished.command_id) == (opened.command.id, "done", opened.command.command_id)
    state = await mock.state()
    assert state["commands"] == 1 and state["meters"]["101"]["relay"] == "off"


async def test_a_queued_cut_is_cancelled_once_money_came_in(gateway: TestClient, world: World, db: Database) -> None:
    async with db.transaction() as session:
        session.add(Command(meter_no=101, action="cut", reason="zero balance", created_at=NOW, updated_at=NOW))
    assert await gateway.app[DISPATCHER].run() == []
    [cut] = await command_log.list_commands(db)
    assert (cut.state, cut.result) == ("cancelled", "balance above the cut threshold again before the cut was sent")


async def test_a_cut_the_head_end_cannot_do_now_is_retried_with_backoff_until_done(
    gateway: TestClient, world: World, mock: MockHeadEnd, db: Database, clock: FixedClock
) -> None:
    async with db.transaction() as session:
        await session.execute(update(Meter).where(Meter.meter_no == 101).values(balance=Decimal("-1.00")))  # type: ignore[arg-type]
        session.add(Command(meter_no=101, action="cut", reason="zero balance", created_at=NOW, updated_at=NOW))
    await mock.faults(unreachable=["101"])
    dispatcher = gateway.app[DISPATCHER]
    [cut] = await dispatcher.run()
    assert (cut.state, cut.result, cut.attempts) == ("requested", "unreachable: meter unreachable", 1)
    assert cut.next_attempt_at == NOW + dt.timedelta(seconds=5)
    clock.advance(seconds=4)
    assert await dispatcher.run() == []  # not due yet
    clock.advance(seconds=1)
    [cut] = await dispatcher.run()
    assert (cut.state, cut.attempts, cut.next_attempt_at) == ("requested", 2, NOW + dt.timedelta(seconds=15))
    await mock.faults(unreachable=[])
    clock.advance(seconds=10)
    [cut] = await dispatcher.run()
    assert (cut.state, cut.attempts, cut.command_id) == ("done", 3, (await command_log.list_commands(db))[0].command_id)
    assert (await mock.state())["meters"]["101"]["relay"] == "off"


async def test_a_queued_cut_not_done_by_its_deadline_ends_failed_with_the_reason(
    gateway: TestClient, world: World, mock: MockHeadEnd, db: Database, clock: FixedClock
) -> None:
    async with db.transaction() as session:
        await session.execute(update(Meter).where(Meter.meter_no == 101).values(balance=Decimal("-1.00")))  # type: ignore[arg-type]
        session.add(Command(meter_no=101, action="cut", reason="zero balance", created_at=NOW, updated_at=NOW))
    await mock.faults(failure_rate=1.0)
    dispatcher = gateway.app[DISPATCHER]
    [cut] = await dispatcher.run()
    assert cut.state == "requested" and cut.result.startswith("failed: ")
    clock.advance(days=1, seconds=1)  # the gateway was down past the default 24 h deadline
    assert await dispatcher.run() == []
    [cut] = await command_log.list_commands(db)
    assert cut.state == "failed" and cut.finished_at == clock.now()
    assert cut.result.startswith("deadline passed after 1 attempt(s) (last: failed: ")


async def test_a_refused_cut_and_a_failed_api_command_are_not_retried(
    gateway: TestClient, world: World, mock: MockHeadEnd, db: Database
) -> None:
    async with db.transaction() as session:
        await session.execute(update(Meter).where(Meter.meter_no == 101).values(balance=Decimal("-1.00")))  # type: ignore[arg-type]
        session.add(Command(meter_no=101, action="cut", reason="zero balance", created_at=NOW, updated_at=NOW))
    await mock.faults(refuse_commands=["101"])
    [cut] = await gateway.app[DISPATCHER].run()
    assert (cut.state, cut.result) == ("failed", "refused: meter rejected the command")
    # The caller of an API command is told it failed; it is not carried out later behind its back.
    await mock.faults(refuse_commands=[], unreachable=["102"])
    response = await gateway.post(
        "/api/v1/meter/start", json={"site_id": "S1", "meter_no": "102"}, headers=world.headers("operate")
    )
    assert response.status == 504
    start = (await command_log.list_commands(db, meter_no=102))[0]
    assert (start.state, start.next_attempt_at) == ("failed", None)


# Against the mock meter server as a real process


async def test_the_gateway_against_mock_meter_server_as_a_process(
    aiohttp_client: Any, database_url: str, world: World, db: Database, unused_tcp_port: int
) -> None:
    port = unused_tcp_port
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "mock_meter_server", "--port", str(port), "--token", MOCK_TOKEN, "--seed", "5"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {MOCK_TOKEN}"}) as control:
            for _ in range(200):
                try:
                    async with control.get(base + "/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            settings = gateway_settings(database_url, base, headend_deadline_seconds=3.0)
            gateway = await aiohttp_client(create_app(settings, clock=FixedClock(NOW)))
            async with control.post(base + "/control/faults", json={"fail_next": 2, "drop_next": 1}) as response:
                assert response.status == 200
            order = {"site_id": "S1", "meter_no": "101", "amount": "75.25"}
            response = await gateway.post("/api/v1/meter/recharge", json=order, headers=world.headers("operate"))
            assert response.status == 200, await response.text()
            response = await gateway.post("/api/v1/meter/stop", json=order, headers=world.headers("operate"))
            assert response.status == 200, await response.text()
            async with control.get(base + "/control/state") as response:
                state = await response.json()
        assert state["counts"] == {"requests": 5, "failed": 2, "dropped": 1}
        assert state["meters"]["101"] == {"relay": "off", "load_dg": "2.00", "load_grid": "5.00", "credited": "75.25"}
        assert (await ledger.check_ledger(db, meter_no=101)).balance == Decimal("175.25")
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


async def test_money_arriving_while_a_cut_is_in_flight_restores_once_the_cut_is_done(
    gateway: TestClient, world: World, mock: MockHeadEnd, db: Database
) -> None:
    async with db.transaction() as session:
        await session.execute(update(Meter).where(Meter.meter_no == 101).values(balance=Decimal("-1.00")))  # type: ignore[arg-type]
        session.add(Command(meter_no=101, action="cut", reason="zero balance", created_at=NOW, updated_at=NOW))
    [cut] = await command_log.claim_due(db, now=NOW, stale_before=NOW)  # sent, answer not yet recorded
    await ledger.adjust_balance(db, meter_no=101, amount=Decimal("5"), reason="cash", created_by="t", now=NOW)
    assert [c.action for c in await command_log.list_commands(db)] == ["cut"]  # nothing to restore yet
    await send_command(db, gateway.app[HEADEND], cut, gateway.app[CLOCK])
    assert [(c.action, c.state) for c in await command_log.list_commands(db)] == [
        ("cut", "done"),
        ("restore", "requested"),
    ]
    [restore] = await gateway.app[DISPATCHER].run()
    assert restore.state == "done" and (await mock.state())["meters"]["101"]["relay"] == "on"
