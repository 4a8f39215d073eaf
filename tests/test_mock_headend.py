"""The mock head-end over a real socket: commands, credits, idempotency, faults, control calls.

Every reply is also loaded with the shared `schemas.headend` reply schema, as the gateway's HTTP
client will load it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from marshmallow import Schema

from mock_meter_server.app import create_app
from mock_meter_server.faults import Faults
from schemas.headend import (
    CREDIT_STATUS_PATH,
    CREDITS_PATH,
    LOAD_PATH,
    RELAY_PATH,
    STATUS_PATH,
    CreditReply,
    ErrorReply,
    LoadReply,
    MeterStatusReply,
    RelayReply,
)

T0 = dt.datetime(2025, 2, 8, 0, 31, tzinfo=dt.UTC)


class StepClock:
    """A clock tests move by hand."""

    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> dt.datetime:
        return self.at


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
async def headend(aiohttp_client: Any, clock: StepClock) -> TestClient:
    return await aiohttp_client(create_app(clock=clock, seed=7))


async def call(
    client: TestClient,
    method: str,
    path: str,
    body: Any = None,
    status: int = 200,
    schema: Schema | None = None,
) -> dict[str, Any]:
    """One request; asserts the status and, when given, that the reply loads with the schema."""
    async with client.request(method, path, json=body) as response:
        data = await response.json()
        assert response.status == status, data
    if schema is not None:
        schema.load(data)
    elif status >= 400:
        ErrorReply().load(data)
    return data


def relay(meter: str) -> str:
    return RELAY_PATH.format(meter_no=meter)


def credits(meter: str) -> str:
    return CREDITS_PATH.format(meter_no=meter)


async def state(client: TestClient) -> dict[str, Any]:
    return await call(client, "GET", "/control/state")


async def test_new_meter_is_on_and_status_reports_its_loads(headend: TestClient) -> None:
    status = await call(headend, "GET", STATUS_PATH.format(meter_no="999999999"), schema=MeterStatusReply())
    assert status == {
        "meter_no": "999999999",
        "relay": "on",
        "load_dg": "2.00",
        "load_grid": "5.00",
        "reachable": True,
    }


async def test_repeated_command_returns_first_answer_and_does_not_act_again(headend: TestClient) -> None:
    first = await call(headend, "POST", relay("1"), {"command_id": "c1", "state": "off"}, schema=RelayReply())
    assert first == {
        "command_id": "c1",
        "meter_no": "1",
        "result": "applied",
        "relay": "off",
        "changed": True,
        "reason": None,
    }
    await call(headend, "POST", relay("1"), {"command_id": "c2", "state": "on"})
    again = await call(headend, "POST", relay("1"), {"command_id": "c1", "state": "off"})
    assert again == first
    assert (await state(headend))["meters"]["1"]["relay"] == "on"  # c1 did not switch it off again
    same = await call(headend, "POST", relay("1"), {"command_id": "c3", "state": "on"})
    assert same["result"] == "applied" and same["changed"] is False


async def test_command_id_reused_with_other_parameters_is_409(headend: TestClient) -> None:
    await call(headend, "POST", relay("1"), {"command_id": "c1", "state": "off"})
    reply = await call(headend, "POST", relay("1"), {"command_id": "c1", "state": "on"}, status=409)
    assert reply == {"error": "command_id reused with other parameters", "command_id": "c1"}
    await call(headend, "POST", relay("2"), {"command_id": "c1", "state": "off"}, status=409)
    body = {"command_id": "c1", "load_dg": "1.00", "load_grid": "2.00"}
    await call(headend, "POST", LOAD_PATH.format(meter_no="1"), body, status=409)


async def test_load_is_set_and_invalid_values_name_the_field(headend: TestClient) -> None:
    path = LOAD_PATH.format(meter_no="42")
    reply = await call(
        headend, "POST", path, {"command_id": "l1", "load_dg": "2.5", "load_grid": "7.25"}, schema=LoadReply()
    )
    assert reply == {
        "command_id": "l1",
        "meter_no": "42",
        "result": "applied",
        "load_dg": "2.50",
        "load_grid": "7.25",
        "reason": None,
    }
    cases = [
        ({"command_id": "l2", "load_dg": "abc", "load_grid": "1"}, "load_dg"),
        ({"command_id": "l2", "load_dg": "1", "load_grid": 5.5}, "load_grid"),  # a JSON number
        ({"command_id": "l2", "load_dg": "1.234", "load_grid": "1"}, "load_dg"),
        ({"command_id": "l2", "load_dg": "0", "load_grid": "1"}, "load_dg"),
        ({"load_dg": "1", "load_grid": "1"}, "command_id"),
        ({"command_id": "has space", "load_dg": "1", "load_grid": "1"}, "command_id"),
        ({"command_id": "l2", "load_dg": "1", "load_grid": "1", "extra": 1}, "extra"),
    ]
    for body, field in cases:
        error = await call(headend, "POST", path, body, status=400)
        assert field in error["fields"] and field in error["error"], (body, error)
    bad_meter = await call(headend, "POST", relay("no*such"), {"command_id": "x", "state": "on"}, status=400)
    assert "meter_no" in bad_meter["fields"]


async def test_body_that_is_not_a_json_object_is_400(headend: TestClient) -> None:
    async with headend.post(relay("1"), data=b"{not json", headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400 and (await r.json())["error"] == "body is not valid JSON"
    error = await call(headend, "POST", relay("1"), ["on"], status=400)
    assert "_schema" in error["fields"]


async def test_credit_is_applied_once_with_a_20_digit_token(headend: TestClient) -> None:
    body = {"transaction_id": "t1", "amount": "500.00"}
    first = await call(headend, "POST", credits("999999999"), body, schema=CreditReply())
    assert first["state"] == "applied" and first["reason"] is None and first["amount"] == "500.00"
    assert len(first["token"]) == 20 and first["token"].isdigit()
    assert first["requested_at"] == first["applied_at"] == "2025-02-08T00:31:00+00:00"
    assert await call(headend, "POST", credits("999999999"), {"transaction_id": "t1", "amount": "500"}) == first
    assert await call(headend, "GET", CREDIT_STATUS_PATH.format(transaction_id="t1"), schema=CreditReply()) == first
    assert (await state(headend))["meters"]["999999999"]["credited"] == "500.00"
    other = {"transaction_id": "t1", "amount": "600.00"}
    conflict = await call(headend, "POST", credits("999999999"), other, status=409)
    assert conflict["transaction_id"] == "t1"
    second = await call(headend, "POST", credits("999999999"), {"transaction_id": "t2", "amount": "0.50"})
    assert second["token"] != first["token"]


async def test_credits_are_refused_with_a_reason(aiohttp_client: Any, clock: StepClock) -> None:
    faults = Faults(refuse_credits=["666"], max_credit=Decimal("1000.00"))
    client = await aiohttp_client(create_app(faults=faults, clock=clock))
    cases = [
        ("1", "0.00", "amount must be greater than zero"),
        ("1", "-5.00", "amount must be greater than zero"),
        ("1", "1000.01", "amount exceeds the maximum of 1000.00"),
        ("666", "10.00", "meter refuses credits"),
    ]
    for i, (meter, amount, reason) in enumerate(cases):
        body = {"transaction_id": f"r{i}", "amount": amount}
        reply = await call(client, "POST", credits(meter), body, schema=CreditReply())
        assert (reply["state"], reply["token"], reply["reason"]) == ("refused", None, reason)
    assert (await state(client))["meters"]["1"]["credited"] == "0.00"
    error = await call(client, "POST", credits("1"), {"transaction_id": "r9", "amount": 5}, status=400)
    assert "amount" in error["fields"]


async def test_queued_credit_applies_once_its_time_has_come(headend: TestClient, clock: StepClock) -> None:
    await call(headend, "POST", "/control/faults", {"queue_credits_seconds": 30})
    queued = await call(headend, "POST", credits("7"), {"transaction_id": "q1", "amount": "100.00"})
    assert (queued["state"], queued["token"], queued["applied_at"]) == ("queued", None, None)
    path = CREDIT_STATUS_PATH.format(transaction_id="q1")
    clock.at = T0 + dt.timedelta(seconds=29)
    assert (await call(headend, "GET", path))["state"] == "queued"
    assert (await state(headend))["meters"]["7"]["credited"] == "0.00"
    clock.at = T0 + dt.timedelta(seconds=45)
    applied = await call(headend, "GET", path, schema=CreditReply())
    assert applied["state"] == "applied" and len(applied["token"]) == 20
    assert applied["applied_at"] == "2025-02-08T00:31:30+00:00"  # when it was due, not when asked
    assert await call(headend, "POST", credits("7"), {"transaction_id": "q1", "amount": "100.00"}) == applied
    assert (await state(headend))["meters"]["7"]["credited"] == "100.00"


async def test_unknown_transaction_is_404(headend: TestClient) -> None:
    reply = await call(headend, "GET", CREDIT_STATUS_PATH.format(transaction_id="nope"), status=404)
    assert reply == {"error": "unknown transaction", "transaction_id": "nope"}


async def test_unreachable_meter_is_504_and_nothing_is_done(headend: TestClient) -> None:
    await call(headend, "POST", "/control/faults", {"unreachable": ["123", "456"]})
    reply = await call(headend, "POST", relay("123"), {"command_id": "u1", "state": "off"}, status=504)
    assert reply == {"error": "meter unreachable", "meter_no": "123"}
    await call(headend, "POST", credits("456"), {"transaction_id": "u2", "amount": "5.00"}, status=504)
    await call(headend, "GET", STATUS_PATH.format(meter_no="123"), status=504)
    await call(headend, "POST", "/control/faults", {"unreachable": []})
    later = await call(headend, "POST", relay("123"), {"command_id": "u1", "state": "off"})
    assert later["result"] == "applied" and later["changed"] is True  # the first try did nothing
    assert (await state(headend))["counts"]["unreachable"] == 3


async def test_refused_command_keeps_the_meter_as_it_was(headend: TestClient) -> None:
    await call(headend, "POST", "/control/faults", {"refuse_commands": ["9"]})
    reply = await call(headend, "POST", relay("9"), {"command_id": "x1", "state": "off"}, schema=RelayReply())
    assert (reply["result"], reply["relay"], reply["reason"]) == (
        "refused",
        "on",
        "meter rejected the command",
    )
    body = {"command_id": "x2", "load_dg": "9.00", "load_grid": "9.00"}
    load = await call(headend, "POST", LOAD_PATH.format(meter_no="9"), body)
    assert (load["result"], load["load_dg"]) == ("refused", "2.00")


async def test_injected_failures_answer_5xx_before_acting(headend: TestClient) -> None:
    await call(headend, "POST", "/control/faults", {"fail_next": 2})
    for _ in range(2):
        async with headend.post(credits("1"), json={"transaction_id": "f1", "amount": "10.00"}) as r:
            assert r.status in (500, 503)
            assert await r.json() == {"error": "injected head-end failure"}
    ok = await call(headend, "POST", credits("1"), {"transaction_id": "f1", "amount": "10.00"})
    assert ok["state"] == "applied"
    snapshot = await state(headend)
    assert snapshot["meters"]["1"]["credited"] == "10.00" and snapshot["counts"]["failed"] == 2


async def test_dropped_reply_after_acting_then_retry_gets_the_first_answer(headend: TestClient) -> None:
    await call(headend, "POST", "/control/faults", {"drop_next": 1})
    body = {"transaction_id": "d1", "amount": "250.00"}
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with headend.post(credits("5"), json=body):
            pass
    assert (await state(headend))["meters"]["5"]["credited"] == "250.00"  # it was applied
    retry = await call(headend, "POST", credits("5"), body)
    assert retry["state"] == "applied"
    assert (await state(headend))["meters"]["5"]["credited"] == "250.00"  # and only once


async def test_drop_before_acting_does_nothing(headend: TestClient) -> None:
    await call(headend, "POST", "/control/faults", {"drop_next": 1, "drop_when": "before"})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with headend.post(relay("5"), json={"command_id": "d2", "state": "off"}):
            pass
    assert (await state(headend))["commands"] == 0
    assert (await call(headend, "POST", relay("5"), {"command_id": "d2", "state": "off"}))["changed"] is True


async def test_latency_delays_every_headend_answer(headend: TestClient) -> None:
    await call(headend, "POST", "/control/faults", {"latency_ms": 150})
    began = time.perf_counter()
    await call(headend, "GET", STATUS_PATH.format(meter_no="1"))
    assert time.perf_counter() - began >= 0.15
    began = time.perf_counter()
    await call(headend, "GET", "/control/faults")
    assert time.perf_counter() - began < 0.15  # control calls are never delayed


async def test_concurrent_duplicates_credit_once(headend: TestClient) -> None:
    await call(headend, "POST", "/control/faults", {"latency_ms": 30})
    body = {"transaction_id": "same", "amount": "75.00"}
    replies = await asyncio.gather(*(call(headend, "POST", credits("3"), body) for _ in range(20)))
    assert all(reply == replies[0] for reply in replies)
    assert (await state(headend))["meters"]["3"]["credited"] == "75.00"


async def test_failure_rate_fails_the_same_calls_for_the_same_seed(aiohttp_client: Any) -> None:
    async def pattern() -> list[int]:
        client = await aiohttp_client(create_app(faults=Faults(failure_rate=0.5), seed=11))
        statuses = []
        for i in range(16):
            async with client.get(STATUS_PATH.format(meter_no=str(i))) as r:
                statuses.append(r.status)
        return statuses

    first = await pattern()
    assert first == await pattern()
    assert 200 in first and {500, 503} & set(first)


async def test_bearer_token_guards_headend_and_control_calls(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(token="s3cret"))
    path = STATUS_PATH.format(meter_no="1")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
        for target in (path, "/control/state"):
            async with client.get(target, headers=headers) as r:
                assert r.status == 401 and r.headers["WWW-Authenticate"] == "Bearer"
                assert await r.json() == {"error": "missing or invalid bearer token"}
    async with client.get(path, headers={"Authorization": "Bearer s3cret"}) as r:
        assert r.status == 200
    async with client.get("/healthz") as r:
        assert r.status == 200


async def test_fault_control_validates_and_updates_partially(headend: TestClient) -> None:
    before = await call(headend, "GET", "/control/faults")
    assert before["failure_rate"] == 0 and before["max_credit"] == "100000.00"
    error = await call(headend, "POST", "/control/faults", {"failure_rate": 2, "latency_ms": 5}, status=400)
    assert "failure_rate" in error["fields"]
    assert await call(headend, "GET", "/control/faults") == before  # nothing applied from a bad update
    await call(headend, "POST", "/control/faults", {"bogus": 1}, status=400)
    after = await call(headend, "POST", "/control/faults", {"latency_ms": 5, "refuse_credits": ["1"]})
    assert after == before | {"latency_ms": 5, "refuse_credits": ["1"]}


async def test_reset_forgets_meters_and_restores_startup_faults(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(faults=Faults(unreachable=["9"])))
    await call(client, "POST", relay("1"), {"command_id": "c1", "state": "off"})
    await call(client, "POST", "/control/faults", {"unreachable": [], "latency_ms": 10})
    reply = await call(client, "POST", "/control/reset")
    assert reply["faults"]["unreachable"] == ["9"] and reply["faults"]["latency_ms"] == 0
    snapshot = await state(client)
    assert (snapshot["meters"], snapshot["credits"], snapshot["commands"]) == ({}, {}, 0)


async def test_unknown_path_and_method_answer_json_errors(headend: TestClient) -> None:
    assert (await call(headend, "GET", "/headend/v1/nothing", status=404))["error"] == "Not Found"
    await call(headend, "GET", relay("1"), status=405)
