"""Calls 6, 7, 8, 9 over real HTTP through the HTTP head-end client and the mock meter server:
every success and error envelope asserted whole, the command log, auth and tenancy.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from storage.db.engine import Database
from storage.db.models import Meter
from storage.money import command_log
from tests.command_setup import NOW, MockHeadEnd, World

S1_101 = {"site_id": "S1", "meter_no": "101"}
S1_102 = {"site_id": "S1", "meter_no": "102"}
LOAD = {**S1_101, "load_dg": "2.50", "load_grid": "6"}


def remarks_error(remarks: str, message: str = "Operation Not Successful") -> dict[str, str]:
    """The error envelope of calls 6, 7, 9."""
    return {"status": "Error", "message": message, "Remarks": remarks}


def status_error(message: str, remarks: str | None = None) -> dict[str, Any]:
    """The error envelope of call 8."""
    body: dict[str, Any] = {"status": "error", "message": message, "data": None}
    if remarks is not None:
        body["remarks"] = remarks
    return body


async def meter(db: Database, meter_no: int) -> Meter:
    async with db.reader() as session:
        found = await session.get(Meter, meter_no)
    assert found is not None
    return found


async def post(client: TestClient, path: str, data: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
    response = await client.post(path, json=data, headers=headers)
    return response.status, await response.json()


# Call 6 and 7


async def test_start_connects_a_stopped_meter_and_logs_the_command(
    gateway: TestClient, world: World, mock: MockHeadEnd, db: Database
) -> None:
    await mock.set_relay(102, on=False)
    status, body = await post(gateway, "/api/v1/meter/start", S1_102, world.headers("operate"))
    assert (status, body) == (
        200,
        {
            "status": "success",
            "message": "Meter Started",
            "data": {"unit_no": "A-102", "meter_no": "102", "status": "STARTED"},
        },
    )
    assert (await meter(db, 102)).relay_on is True
    assert (await mock.state())["meters"]["102"]["relay"] == "on"
    [logged] = await command_log.list_commands(db, meter_no=102)
    assert (logged.action, logged.state, logged.reason) == ("start", "done", "call 6 by operate")
    assert logged.command_id and logged.command_id.startswith("gw-")
    assert logged.created_at == logged.sent_at == logged.finished_at == NOW
    assert logged.result == "applied" and logged.answer is not None and logged.answer["relay"] == "on"


async def test_stop_cuts_the_supply_as_a_form_post(
    gateway: TestClient, world: World, mock: MockHeadEnd, db: Database
) -> None:
    response = await gateway.post("/api/v1/meter/stop", data=S1_101, headers=world.headers("operate"))
    assert response.status == 200
    assert await response.json() == {
        "status": "success",
        "message": "Meter Stopped",
        "data": {"unit_no": "A-101", "meter_no": "101", "status": "STOPPED"},
    }
    assert (await meter(db, 101)).relay_on is False
    assert (await mock.state())["meters"]["101"]["relay"] == "off"


@pytest.mark.parametrize(
    ("path", "data", "remarks"),
    [
        ("/api/v1/meter/start", S1_101, "Meter was already STARTED"),
        ("/api/v1/meter/stop", S1_102, "Meter was already STOPPED"),
    ],
)
async def test_a_meter_already_in_that_state_is_409_without_asking_the_head_end(
    gateway: TestClient, world: World, mock: MockHeadEnd, db: Database, path: str, data: dict[str, str], remarks: str
) -> None:
    assert await post(gateway, path, data, world.headers("operate")) == (409, remarks_error(remarks))
    assert (await mock.state())["commands"] == 0
    assert await command_log.list_commands(db) == []


async def test_the_head_end_saying_already_started_is_409_and_corrects_the_record(
    gateway: TestClient, world: World, db: Database
) -> None:
    # Our record says 102 is stopped; the head-end (which has it on) knows better.
    status, body = await post(gateway, "/api/v1/meter/start", S1_102, world.headers("operate"))
    assert (status, body) == (409, remarks_error("Meter was already STARTED"))
    assert (await meter(db, 102)).relay_on is True
    [logged] = await command_log.list_commands(db, meter_no=102)
    assert logged.state == "done" and logged.answer is not None and logged.answer["changed"] is False


@pytest.mark.parametrize(
    ("faults", "status", "result"),
    [
        ({"unreachable": ["101"]}, 504, "unreachable: meter unreachable"),
        ({"failure_rate": 1.0}, 502, "failed: no answer within the 1 s deadline"),
    ],
)
async def test_a_head_end_failure_is_meter_not_accessible(
    gateway: TestClient, world: World, mock: MockHeadEnd, db: Database, faults: dict, status: int, result: str
) -> None:
    await mock.faults(**faults)
    assert await post(gateway, "/api/v1/meter/stop", S1_101, world.headers("operate")) == (
        status,
        remarks_error("Meter not Accessible"),
    )
    assert (await meter(db, 101)).relay_on is True
    [logged] = await command_log.list_commands(db)
    assert logged.state == "failed"
    assert logged.result == result or logged.result.startswith("failed: gave up retrying")


async def test_a_refused_start_is_422(gateway: TestClient, world: World, mock: MockHeadEnd, db: Database) -> None:
    await mock.faults(refuse_commands=["101"])
    assert await post(gateway, "/api/v1/meter/stop", S1_101, world.headers("operate")) == (
        422,
        remarks_error("Meter was not STOPPED"),
    )
    [logged] = await command_log.list_commands(db)
    assert (logged.state, logged.result) == ("failed", "refused: meter rejected the command")


async def test_a_retired_meter_takes_no_commands(gateway: TestClient, world: World) -> None:
    data = {"site_id": "S1", "meter_no": "103"}
    assert await post(gateway, "/api/v1/meter/start", data, world.headers("operate")) == (
        409,
        remarks_error("Meter is retired"),
    )


# Call 9


async def test_load_update_sets_both_loads(gateway: TestClient, world: World, mock: MockHeadEnd, db: Database) -> None:
    assert await post(gateway, "/api/v1/meter/load", LOAD, world.headers("operate")) == (
        200,
        {
            "status": "success",
            "message": "Meter load updated",
            "data": {"unit_no": "A-101", "meter_no": "101", "status": "Load Updated"},
        },
    )
    stored = await meter(db, 101)
    assert (stored.load_dg, stored.load_grid) == (Decimal("2.50"), Decimal("6.00"))
    assert (await mock.state())["meters"]["101"] | {"credited": None} == {
        "relay": "on",
        "load_dg": "2.50",
        "load_grid": "6.00",
        "credited": None,
    }
    [logged] = await command_log.list_commands(db)
    assert logged.params == {"load_dg": "2.50", "load_grid": "6"}


async def test_a_refused_load_is_meter_load_was_not_updated(
    gateway: TestClient, world: World, mock: MockHeadEnd, db: Database
) -> None:
    await mock.faults(refuse_commands=["101"])
    assert await post(gateway, "/api/v1/meter/load", LOAD, world.headers("operate")) == (
        422,
        remarks_error("Meter Load was not updated"),
    )
    assert (await meter(db, 101)).load_dg is None


@pytest.mark.parametrize(
    ("change", "remarks"),
    [
        ({"load_dg": "0"}, "load_dg: Must be greater than or equal to 0.01 and less than or equal to 1000."),
        ({"load_grid": "-1"}, "load_grid: Must be greater than or equal to 0.01 and less than or equal to 1000."),
        ({"load_dg": "1.234"}, "load_dg: At most 2 decimals."),
        ({"load_grid": "1000.01"}, "load_grid: Must be greater than or equal to 0.01 and less than or equal to 1000."),
        ({"load_dg": "lots"}, "load_dg: Not a valid number."),
        ({"load_grid": None}, "load_grid: Field may not be null."),
        ({"meter_no": "x"}, "meter_no: Not a valid meter number: expected a positive whole number."),
        ({"site_id": " "}, "site_id: Must not be empty."),
    ],
)
async def test_load_bad_input_names_the_parameter(
    gateway: TestClient, world: World, change: dict, remarks: str
) -> None:
    assert await post(gateway, "/api/v1/meter/load", {**LOAD, **change}, world.headers("operate")) == (
        400,
        remarks_error(remarks, "Invalid input"),
    )


async def test_load_missing_parameters_are_all_named(gateway: TestClient, world: World) -> None:
    assert await post(gateway, "/api/v1/meter/load", {"site_id": "S1"}, world.headers("operate")) == (
        400,
        remarks_error(
            "load_dg: Missing data for required field.; load_grid: Missing data for required field.; "
            "meter_no: Missing data for required field.",
            "Invalid input",
        ),
    )


# Call 8


async def test_meter_status_asks_the_head_end_and_records_the_answer(
    gateway: TestClient, world: World, mock: MockHeadEnd, db: Database
) -> None:
    await mock.set_relay(101, on=False)  # changed behind the gateway's back
    response = await gateway.get("/api/v1/meter/status", params=S1_101, headers=world.headers("read"))
    assert response.status == 200
    assert await response.json() == {
        "status": "success",
        "message": "Meter Status success",
        "data": {"unit_no": "A-101", "meter_no": "101", "status": "OFF", "remarks": ""},
    }
    stored = await meter(db, 101)
    assert stored.relay_on is False and (stored.load_dg, stored.load_grid) == (Decimal("2.00"), Decimal("5.00"))


async def test_meter_status_of_an_unreachable_meter(gateway: TestClient, world: World, mock: MockHeadEnd) -> None:
    await mock.faults(unreachable=["101"])
    response = await gateway.get("/api/v1/meter/status", params=S1_101, headers=world.headers("read"))
    assert response.status == 504
    assert await response.json() == status_error("Not able to connect to Meter", "Meter not Accessible")


async def test_meter_status_bad_input(gateway: TestClient, world: World) -> None:
    response = await gateway.get("/api/v1/meter/status", params={"meter_no": "0"}, headers=world.headers("read"))
    assert response.status == 400
    assert await response.json() == status_error(
        "Invalid input",
        "meter_no: Not a valid meter number: expected a positive whole number.; "
        "site_id: Missing data for required field.",
    )


# Auth and tenancy, for every call of this file

CALLS = [
    ("POST", "/api/v1/meter/start", S1_102),
    ("POST", "/api/v1/meter/stop", S1_101),
    ("POST", "/api/v1/meter/load", LOAD),
    ("GET", "/api/v1/meter/status", S1_101),
]


def expected_error(path: str, status_message: str, remarks: str | None) -> dict[str, Any]:
    if path.endswith("/status"):
        return status_error(status_message, remarks)
    return remarks_error(remarks or status_message, status_message)


async def call(gateway: TestClient, method: str, path: str, data: dict, headers: dict) -> tuple[int, Any]:
    if method == "GET":
        response = await gateway.get(path, params=data, headers=headers)
    else:
        response = await gateway.post(path, json=data, headers=headers)
    return response.status, await response.json()


@pytest.mark.parametrize(("method", "path", "data"), CALLS)
async def test_no_key_is_401(gateway: TestClient, world: World, method: str, path: str, data: dict) -> None:
    assert await call(gateway, method, path, data, {}) == (
        401,
        expected_error(path, "Unauthorized", "Missing API key: send it in the X-API-Key header"),
    )
    assert await call(gateway, method, path, data, {"X-API-Key": "mgk_nope"}) == (
        401,
        expected_error(path, "Unauthorized", "Invalid or revoked API key"),
    )


@pytest.mark.parametrize(("method", "path", "data"), CALLS[:3])
@pytest.mark.parametrize("key", ["read", "ingest"])
async def test_commands_need_the_operate_role(
    gateway: TestClient, world: World, method: str, path: str, data: dict, key: str
) -> None:
    status, body = await call(gateway, method, path, data, world.headers(key))
    assert status == 403
    assert body == remarks_error(f"API key '{key}' has role '{key}'; this call needs 'operate'", "Forbidden")


async def test_meter_status_refuses_an_ingest_key(gateway: TestClient, world: World) -> None:
    status, body = await call(gateway, "GET", "/api/v1/meter/status", S1_101, world.headers("ingest"))
    assert (status, body) == (
        403,
        status_error("Forbidden", "API key 'ingest' has role 'ingest'; this call needs 'read'"),
    )


@pytest.mark.parametrize(("method", "path", "data"), CALLS)
@pytest.mark.parametrize(
    ("key", "where"),
    [
        ("operate-s2", {}),  # a site outside the key's
        ("operate", {"meter_no": "201"}),  # another site's meter named under this site
        ("operate-all", {"meter_no": "201"}),  # ... even by a key for every site
        ("operate", {"meter_no": "999"}),  # no such meter
        ("operate", {"site_id": "S9"}),  # no such site
    ],
)
async def test_other_sites_meters_answer_as_unknown_ones(
    gateway: TestClient, world: World, mock: MockHeadEnd, method: str, path: str, data: dict, key: str, where: dict
) -> None:
    status, body = await call(gateway, method, path, {**data, **where}, world.headers(key))
    not_found = "No such record found" if path.endswith("/status") else "Operation Not Successful"
    assert (status, body) == (
        404,
        expected_error(path, not_found, None if path.endswith("/status") else "Meter not Found"),
    )
    assert (await mock.state())["counts"] == {}
