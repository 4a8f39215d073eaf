"""Calls 3 and 4 over real HTTP: money-safe recharges through the mock head-end (and the
simulator), idempotency, every error envelope, concurrency, and the balance equation.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from gateway.app import create_app
from gateway.app_keys import DISPATCHER
from storage.clock import FixedClock
from storage.db.engine import Database
from storage.db.models import Meter, Recharge
from storage.money import command_log, ledger
from storage.money.recharge import settle_recharge
from tests.command_setup import NOW, MockHeadEnd, World, gateway_settings

RECHARGE = "/api/v1/meter/recharge"
STATUS = "/api/v1/meter/recharge-status"
ORDER = {"site_id": "S1", "meter_no": "101", "amount": "250.50"}


def recharge_error(remarks: str | None, message: str = "Not Recharged") -> dict[str, Any]:
    """Call 3's error envelope."""
    body: dict[str, Any] = {"status": "Error", "message": message, "count": "0", "data": None}
    if remarks is not None:
        body["remarks"] = remarks
    return body


def status_error(message: str, remarks: str | None = None) -> dict[str, Any]:
    """Call 4's error envelope."""
    body: dict[str, Any] = {"status": "error", "message": message, "data": None}
    if remarks is not None:
        body["remarks"] = remarks
    return body


FORM = "application/x-www-form-urlencoded"


async def recharge(
    client: TestClient, world: World, data: dict[str, Any] = ORDER, key: str = "operate", **headers: str
) -> tuple[int, Any]:
    response = await client.post(RECHARGE, json=data, headers=world.headers(key, **headers))
    return response.status, await response.json()


async def recharge_status(
    client: TestClient, world: World, params: dict[str, str], key: str = "read"
) -> tuple[int, Any]:
    response = await client.get(STATUS, params=params, headers=world.headers(key))
    return response.status, await response.json()


async def recharges(db: Database) -> list[Recharge]:
    async with db.reader() as session:
        return list((await session.execute(select(Recharge).order_by(Recharge.id))).scalars())  # type: ignore[arg-type]


async def balance(db: Database, meter_no: int = 101) -> Decimal:
    async with db.reader() as session:
        meter = await session.get(Meter, meter_no)
    assert meter is not None
    return meter.balance


async def post_reading(client: TestClient, world: World, meter_no: int, kwh: float, minutes_ago: int = 29) -> None:
    """A half hour's reading from the meter itself (debits kWh × the site's tariff, 10.00 on S1)."""
    at = (NOW - dt.timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")
    response = await client.post(
        "/meter",
        json={"id": meter_no, "timestamp": at, "reading_kWh": kwh},
        headers={"Authorization": f"Bearer {world.tokens[meter_no]}"},
    )
    assert response.status == 200, await response.text()


# Call 3


async def test_an_applied_recharge_answers_token_and_balance(
    gateway: TestClient, world: World, mock: MockHeadEnd, db: Database
) -> None:
    status, body = await recharge(gateway, world, **{"Idempotency-Key": "order-1"})
    assert status == 200
    [stored] = await recharges(db)
    token = (await mock.state())["credits"][stored.transaction_id]["token"]
    assert body == {
        "status": "success",
        "message": "Meter Recharged",
        "data": {
            "unit_no": "A-101",
            "meter_no": "101",
            "amount": "250.50",
            "transaction_id": stored.transaction_id,
            "token": token,
            "date_time": "2025-02-08 11:30:00",  # applied at NOW by the mock's clock, in Asia/Kolkata
            "balance": "350.50",
            "remarks": "",
        },
    }
    assert (stored.state, stored.headend_state, stored.client, stored.idempotency_key) == (
        "success",
        "applied",
        "operate",
        "order-1",
    )
    entries = await ledger.list_ledger(db, meter_no=101)
    assert [(e.kind, e.amount, e.balance_after, e.transaction_id) for e in entries] == [
        ("opening", Decimal("100.00"), Decimal("100.00"), None),
        ("credit", Decimal("250.50"), Decimal("350.50"), stored.transaction_id),
    ]


async def test_the_simulator_applies_credits_at_once_with_a_20_digit_token(
    simulated: TestClient, world: World, db: Database
) -> None:
    status, body = await recharge(simulated, world, {**ORDER, "amount": 99})
    assert status == 200
    data = body["data"]
    assert len(data["token"]) == 20 and data["token"].isdigit()
    assert (data["amount"], data["balance"], data["date_time"]) == ("99.00", "199.00", "2025-02-08 11:30:00")
    assert (await ledger.check_ledger(db, meter_no=101)).ok


async def test_a_retried_key_answers_the_first_answer_and_credits_once(
    gateway: TestClient, world: World, mock: MockHeadEnd, db: Database
) -> None:
    first = await recharge(gateway, world, **{"Idempotency-Key": "order-1"})
    again = await recharge(gateway, world, **{"Idempotency-Key": "order-1"})
    assert again == first and first[0] == 200
    assert len(await recharges(db)) == 1
    assert (await mock.state())["meters"]["101"]["credited"] == "250.50"
    assert await balance(db) == Decimal("350.50")


async def test_without_a_key_each_call_is_a_new_recharge(gateway: TestClient, world: World, db: Database) -> None:
    assert (await recharge(gateway, world))[0] == 200
    assert (await recharge(gateway, world))[0] == 200
    assert await balance(db) == Decimal("601.00")


@pytest.mark.parametrize("change", [{"amount": "250.51"}, {"meter_no": "102"}])
async def test_a_key_reused_with_other_parameters_is_409(
    gateway: TestClient, world: World, db: Database, change: dict
) -> None:
    await recharge(gateway, world, **{"Idempotency-Key": "order-1"})
    assert await recharge(gateway, world, {**ORDER, **change}, **{"Idempotency-Key": "order-1"}) == (
        409,
        recharge_error("Idempotency-Key was already used with other parameters"),
    )
    assert len(await recharges(db)) == 1


async def test_keys_belong_to_their_client(gateway: TestClient, world: World, db: Database) -> None:
    await recharge(gateway, world, **{"Idempotency-Key": "order-1"})
    status, _ = await recharge(gateway, world, key="operate-all", **{"Idempotency-Key": "order-1"})
    assert status == 200 and len(await recharges(db)) == 2


async def test_a_refused_credit_is_422_and_changes_nothing(
    gateway: TestClient, world: World, mock: MockHeadEnd, db: Database
) -> None:
    await mock.faults(refuse_credits=["101"])
    assert await recharge(gateway, world, **{"Idempotency-Key": "k"}) == (422, recharge_error("meter refuses credits"))
    assert await recharge(gateway, world, **{"Idempotency-Key": "k"}) == (422, recharge_error("meter refuses credits"))
    [stored] = await recharges(db)
    assert (stored.state, stored.reason) == ("error", "meter refuses credits")
    assert await balance(db) == Decimal("100.00")
    assert await recharge_status(gateway, world, {"site_id": "S1", "transaction_id": stored.transaction_id}) == (
        200,
        status_error("Recharge was not successful due to meter refuses credits"),
    )


@pytest.mark.parametrize(
    ("faults", "headend_state", "remarks"),
    [
        ({"queue_credits_seconds": 60}, "queued", "queued by the head-end"),
        ({"unreachable": ["101"]}, "unreachable", "the head-end did not confirm it yet"),
        ({"failure_rate": 1.0}, "failed", "the head-end did not confirm it yet"),
        ({"drop_rate": 1.0}, "failed", "the head-end did not confirm it yet"),
    ],
)
async def test_an_unconfirmed_credit_is_waiting_until_settled(
    gateway: TestClient,
    world: World,
    mock: MockHeadEnd,
    db: Database,
    faults: dict,
    headend_state: str,
    remarks: str,
) -> None:
    await mock.faults(**faults)
    status, body = await recharge(gateway, world)
    [stored] = await recharges(db)
    assert (status, body) == (
        202,
        {
            "status": "waiting",
            "message": "Recharge request is pending",
            "data": {
                "unit_no": "A-101",
                "meter_no": "101",
                "amount": "250.50",
                "transaction_id": stored.transaction_id,
                "token": "",
                "date_time": "",
                "balance": "100.00",  # not credited yet
                "remarks": remarks,
            },
        },
    )
    assert (stored.state, stored.headend_state) == ("waiting", headend_state)
    query = {"site_id": "S1", "transaction_id": stored.transaction_id}
    assert await recharge_status(gateway, world, query) == (
        202,
        {
            "status": "waiting",
            "message": "Recharge request is pending",
            "data": {
                "unit_no": "A-101",
                "meter_no": "101",
                "transaction_id": stored.transaction_id,
                "remarks": remarks,
            },
        },
    )
    # What the reconciliation job will do: settle from the head-end's later answer, once.
    for _ in range(2):
        await settle_recharge(
            db,
            transaction_id=stored.transaction_id,
            outcome="applied",
            token="1" * 20,
            now=NOW + dt.timedelta(minutes=2),
        )
    assert await balance(db) == Decimal("350.50")
    assert await recharge_status(gateway, world, query) == (
        200,
        {
            "status": "success",
            "message": "Recharge success",
            "data": {"unit_no": "A-101", "meter_no": "101", "transaction_id": stored.transaction_id, "remarks": ""},
        },
    )
    assert (await ledger.check_ledger(db, meter_no=101)).ok


@pytest.mark.parametrize(
    ("change", "remarks"),
    [
        ({"amount": "0"}, "amount: Must be greater than zero."),
        ({"amount": "-5"}, "amount: Must be greater than zero."),
        ({"amount": "10.001"}, "amount: At most 2 decimals."),
        ({"amount": "5000.01"}, "amount: Must not exceed 5000.00."),
        ({"amount": "ten"}, "amount: Not a valid number."),
        ({"amount": "NaN"}, "amount: Special numeric values (nan or infinity) are not permitted."),
        ({"amount": True}, "amount: Not a valid number."),
        ({"amount": None}, "amount: Field may not be null."),
        ({"meter_no": "-1"}, "meter_no: Not a valid meter number: expected a positive whole number."),
        ({"site_id": ""}, "site_id: Must not be empty."),
    ],
)
async def test_recharge_bad_input_names_the_parameter(
    gateway: TestClient, world: World, db: Database, change: dict, remarks: str
) -> None:
    assert await recharge(gateway, world, {**ORDER, **change}) == (400, recharge_error(remarks, "Invalid input"))
    assert await recharges(db) == []


EXPONENT = "amount: Exponents are not accepted: write a plain decimal such as 100 or 100.50."


@pytest.mark.parametrize("written", ["1e2", "1E-2", "1.5E+1", "-1e2"])
async def test_an_amount_with_an_exponent_is_refused_however_it_is_sent(
    gateway: TestClient, world: World, db: Database, written: str
) -> None:
    """Money is a plain decimal: "1e2" is not ₹100 and "1E-2" not ₹0.01 (JSON number, JSON string, form)."""
    as_number = f'{{"site_id": "S1", "meter_no": "101", "amount": {written}}}'.encode()
    as_string = f'{{"site_id": "S1", "meter_no": "101", "amount": "{written}"}}'.encode()
    as_form = f"site_id=S1&meter_no=101&amount={written.replace('+', '%2B')}".encode()
    for body, content_type in ((as_number, "application/json"), (as_string, "application/json"), (as_form, FORM)):
        response = await gateway.post(
            RECHARGE, data=body, headers=world.headers("operate", **{"Content-Type": content_type})
        )
        assert (response.status, await response.json()) == (400, recharge_error(EXPONENT, "Invalid input")), body
    response = await gateway.post(
        f"{RECHARGE}?site_id=S1&meter_no=101&amount={written}", headers=world.headers("operate")
    )
    assert response.status == 400
    assert await recharges(db) == []
    assert await balance(db) == Decimal("100.00")


async def test_recharge_missing_parameters_and_a_bad_key_header(gateway: TestClient, world: World) -> None:
    assert await recharge(gateway, world, {}) == (
        400,
        recharge_error(
            "amount: Missing data for required field.; meter_no: Missing data for required field.; "
            "site_id: Missing data for required field.",
            "Invalid input",
        ),
    )
    for bad in ("x" * 129, "naïve"):
        response = await gateway.post(
            RECHARGE, json=ORDER, headers={**world.headers("operate"), "Idempotency-Key": bad}
        )
        assert response.status == 400
        assert await response.json() == recharge_error(
            "Idempotency-Key: Must be 1 to 128 visible ASCII characters.", "Invalid input"
        )


async def test_recharge_auth_and_tenancy(gateway: TestClient, world: World, mock: MockHeadEnd, db: Database) -> None:
    no_key = await gateway.post(RECHARGE, json=ORDER)
    assert no_key.status == 401
    assert await no_key.json() == recharge_error("Missing API key: send it in the X-API-Key header", "Unauthorized")
    assert await recharge(gateway, world, key="read") == (
        403,
        recharge_error("API key 'read' has role 'read'; this call needs 'operate'", "Forbidden"),
    )
    not_found = (404, recharge_error(None, "Not Found"))
    assert await recharge(gateway, world, key="operate-s2") == not_found  # another site
    assert await recharge(gateway, world, {**ORDER, "meter_no": "201"}) == not_found  # another site's meter
    assert await recharge(gateway, world, {**ORDER, "meter_no": "201"}, key="operate-all") == not_found
    assert await recharge(gateway, world, {**ORDER, "meter_no": "999"}) == not_found
    assert await recharge(gateway, world, {**ORDER, "meter_no": "103"}) == (409, recharge_error("Meter is retired"))
    assert await recharges(db) == [] and (await mock.state())["counts"] == {}


# Call 4


async def test_recharge_status_of_unknown_and_other_sites_transactions_is_404(
    gateway: TestClient, world: World
) -> None:
    await recharge(gateway, world)
    status, body = await recharge(gateway, world, {"site_id": "S2", "meter_no": "201", "amount": "5"}, key="operate-s2")
    assert status == 200
    foreign = body["data"]["transaction_id"]
    not_found = (404, status_error("No such record found"))
    assert await recharge_status(gateway, world, {"site_id": "S1", "transaction_id": "TXN-NEVER"}) == not_found
    assert await recharge_status(gateway, world, {"site_id": "S1", "transaction_id": foreign}) == not_found
    assert await recharge_status(gateway, world, {"site_id": "S2", "transaction_id": foreign}) == not_found
    assert await recharge_status(gateway, world, {"site_id": "S2", "transaction_id": foreign}, key="operate-s2") == (
        200,
        {
            "status": "success",
            "message": "Recharge success",
            "data": {"unit_no": "B-201", "meter_no": "201", "transaction_id": foreign, "remarks": ""},
        },
    )


async def test_recharge_status_bad_input_and_auth(gateway: TestClient, world: World) -> None:
    assert await recharge_status(gateway, world, {"site_id": "S1"}) == (
        400,
        status_error("Invalid input", "transaction_id: Missing data for required field."),
    )
    no_key = await gateway.get(STATUS, params={"site_id": "S1", "transaction_id": "T"})
    assert no_key.status == 401
    assert await no_key.json() == status_error("Unauthorized", "Missing API key: send it in the X-API-Key header")
    assert await recharge_status(gateway, world, {"site_id": "S1", "transaction_id": "T"}, key="ingest") == (
        403,
        status_error("Forbidden", "API key 'ingest' has role 'ingest'; this call needs 'read'"),
    )


# Zero-balance cuts and restores


async def test_a_recharge_restores_a_zero_balance_cut(
    gateway: TestClient, world: World, mock: MockHeadEnd, db: Database
) -> None:
    await post_reading(gateway, world, 101, 10.5)  # 105.00 against 100.00: a cut is queued
    assert await balance(db) == Decimal("-5.00")
    [cut] = await command_log.list_commands(db)
    assert (cut.action, cut.state, cut.reason) == ("cut", "requested", "zero balance")
    [sent] = await gateway.app[DISPATCHER].run()
    assert (sent.action, sent.state) == ("cut", "done")
    assert (await mock.state())["meters"]["101"]["relay"] == "off"

    assert (await recharge(gateway, world, {**ORDER, "amount": "4.00"}))[0] == 200  # still below zero: stays cut
    assert [c.action for c in await command_log.list_commands(db)] == ["cut"]
    assert (await recharge(gateway, world, {**ORDER, "amount": "20.00"}))[0] == 200
    await gateway.app[DISPATCHER].settle()  # the recharge sent the restore at once, without the scheduler
    restore = (await command_log.list_commands(db))[-1]
    assert (restore.action, restore.state, restore.reason) == ("restore", "done", "balance above the cut threshold")
    assert (await mock.state())["meters"]["101"]["relay"] == "on"
    async with db.reader() as session:
        meter = await session.get(Meter, 101)
    assert meter is not None and meter.relay_on and meter.balance == Decimal("19.00")
    assert (await ledger.check_ledger(db, meter_no=101)).ok


async def test_a_cut_still_queued_is_cancelled_by_a_recharge(gateway: TestClient, world: World, db: Database) -> None:
    await post_reading(gateway, world, 101, 10.5)
    await recharge(gateway, world)
    [cut] = await command_log.list_commands(db)
    assert (cut.state, cut.result) == ("cancelled", "balance above the cut threshold")
    assert await gateway.app[DISPATCHER].run() == []


async def test_a_meter_stopped_by_staff_stays_stopped_after_a_recharge(
    gateway: TestClient, world: World, db: Database
) -> None:
    response = await gateway.post("/api/v1/meter/stop", json=ORDER, headers=world.headers("operate"))
    assert response.status == 200
    await recharge(gateway, world)
    assert [c.action for c in await command_log.list_commands(db)] == ["stop"]


# Concurrency: the balance equation holds exactly, on SQLite and PostgreSQL


@pytest.mark.parametrize("distinct_keys", [False, True], ids=["one-key", "fifty-keys"])
async def test_fifty_parallel_recharges_credit_once_per_key(
    aiohttp_client: Any,
    gateway: TestClient,
    world: World,
    mock: MockHeadEnd,
    db: Database,
    database_url: str,
    clock: FixedClock,
    distinct_keys: bool,
) -> None:
    await post_reading(gateway, world, 101, 2.5)  # a debit of 25.00
    await mock.faults(latency_ms=20)  # requests overlap in flight
    # Two gateways on the same database: what holds must hold across processes, not by a lock.
    # Patient head-end deadlines: fifty credits in flight on a loaded machine can take longer
    # than the fixtures' one second, and a recharge past its deadline is answered 202 and
    # settled later (tested elsewhere); here every one must be settled by its own reply.
    patient = gateway_settings(database_url, mock.url, headend_attempt_seconds=30.0, headend_deadline_seconds=60.0)
    clients = [await aiohttp_client(create_app(patient, clock=clock)) for _ in range(2)]

    async def one(i: int) -> tuple[int, Any]:
        key = f"order-{i}" if distinct_keys else "order-1"
        return await recharge(clients[i % 2], world, {**ORDER, "amount": "10.01"}, **{"Idempotency-Key": key})

    replies = await asyncio.gather(*(one(i) for i in range(50)))
    credits = 50 if distinct_keys else 1
    stored = await recharges(db)
    assert len(stored) == credits and all(r.state == "success" for r in stored)
    assert {status for status, _ in replies} <= {200, 202}
    assert len({body["data"]["transaction_id"] for _, body in replies}) == credits
    assert (await mock.state())["meters"]["101"]["credited"] == str(Decimal("10.01") * credits)
    check = await ledger.check_ledger(db, meter_no=101)
    assert (check.opening, check.credits, check.debits) == (
        Decimal("100.00"),
        Decimal("10.01") * credits,
        Decimal("25.00"),
    )
    assert check.ok and check.balance == Decimal("100.00") + Decimal("10.01") * credits - Decimal("25.00")
    assert len([e for e in await ledger.list_ledger(db, meter_no=101) if e.kind == "credit"]) == credits
