"""Factech calls 1 and 2 over real HTTP: envelopes asserted whole, every error case, auth and tenancy."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from aiohttp.test_utils import TestClient

from storage.db.engine import Database
from tests.api_setup import add_key, add_meter, add_site, headers

NOT_FOUND_1 = {"status": "error", "message": "Not Found", "count": "0", "data": None}
NOT_FOUND_2 = {"status": "Error", "message": "Not Found", "count": "0", "data": None}


@pytest.fixture
async def read_key(db: Database) -> str:
    """S1 (Asia/Kolkata): a meter read once, one never read and cut, one retired; S2 elsewhere."""
    await add_site(db, "S1")
    await add_site(db, "S2", timezone="Europe/London")
    await add_meter(
        db,
        101,
        "S1",
        "A-101",
        grid_kwh=Decimal("1234.567"),
        dg_kwh=Decimal("12.344"),
        balance=Decimal("500.50"),
        last_reading_at=dt.datetime(2025, 2, 8, 0, 30, tzinfo=dt.UTC),
    )
    await add_meter(db, 102, "S1", "A-102", relay_on=False, balance=Decimal("-3.20"))
    await add_meter(db, 103, "S1", "A-103", active=False, retired_at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    await add_meter(db, 201, "S2", "B-1", last_reading_at=dt.datetime(2025, 7, 1, 12, 0, tzinfo=dt.UTC))
    return await add_key(db, "read", "S1")


async def test_site_readings_lists_active_meters_as_documented(client: TestClient, read_key: str) -> None:
    response = await client.get("/api/v1/site/readings", params={"site_id": "S1"}, headers=headers(read_key))
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == {
        "status": "success",
        "message": "Meter Readings and Balances",
        "count": "2",
        "data": [
            {
                "unit_no": "A-101",
                "meter_no": "101",
                "dg": "12.34",
                "grid": "1234.57",
                "date_time": "2025-02-08 06:00:00",  # 00:30 UTC in Asia/Kolkata
                "balance": "500.50",
                "status": "On",
            },
            {
                "unit_no": "A-102",
                "meter_no": "102",
                "dg": "0.00",
                "grid": "0.00",
                "date_time": "",
                "balance": "-3.20",
                "status": "Off",
            },
        ],
    }


async def test_meter_reading_answers_one_meter_as_documented(client: TestClient, read_key: str) -> None:
    response = await client.get("/api/v1/meter/reading", params={"meter_no": "101"}, headers=headers(read_key))
    assert response.status == 200
    assert await response.json() == {
        "status": "success",
        "message": "Meter Readings and Balance",
        "data": {
            "unit_no": "A-101",
            "meter_no": "101",
            "dg": "12.34",
            "grid": "1234.57",
            "date_time": "2025-02-08 06:00:00",
            "balance": "500.50",
            "status": "On",
        },
    }


async def test_date_time_uses_the_site_timezone(client: TestClient, db: Database, read_key: str) -> None:
    key = await add_key(db, "read", "S2")
    body = await (await client.get("/api/v1/meter/reading?meter_no=201", headers=headers(key))).json()
    assert body["data"]["date_time"] == "2025-07-01 13:00:00"  # London summer time


async def test_retired_meter_keeps_its_last_state_but_reads_off(client: TestClient, read_key: str) -> None:
    response = await client.get("/api/v1/meter/reading?meter_no=103", headers=headers(read_key))
    assert response.status == 200
    assert (await response.json())["data"]["status"] == "Off"


async def test_unknown_query_parameters_are_ignored(client: TestClient, read_key: str) -> None:
    response = await client.get("/api/v1/site/readings?site_id=S1&page=2&x=", headers=headers(read_key))
    assert response.status == 200


@pytest.mark.parametrize(
    ("query", "remarks"),
    [
        ("", "site_id: Missing data for required field."),
        ("?site_id=", "site_id: Must not be empty."),
        ("?site_id=%20%20", "site_id: Must not be empty."),
        ("?site_id=" + "x" * 65, "site_id: Longer than maximum length 64."),
    ],
)
async def test_site_readings_bad_input_names_the_parameter(
    client: TestClient, read_key: str, query: str, remarks: str
) -> None:
    response = await client.get(f"/api/v1/site/readings{query}", headers=headers(read_key))
    assert response.status == 400
    assert await response.json() == {
        "status": "error",
        "message": "Invalid input",
        "count": "0",
        "data": None,
        "remarks": remarks,
    }


@pytest.mark.parametrize("query", ["", "?meter_no=", "?meter_no=abc", "?meter_no=-5", "?meter_no=0", "?meter_no=1.5"])
async def test_meter_reading_bad_input_names_the_parameter(client: TestClient, read_key: str, query: str) -> None:
    response = await client.get(f"/api/v1/meter/reading{query}", headers=headers(read_key))
    assert response.status == 400
    body = await response.json()
    assert body.pop("remarks").startswith("meter_no: ")
    assert body == {"status": "Error", "message": "Invalid input", "count": "0", "data": None}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1/site/readings?site_id=NOPE", NOT_FOUND_1),  # unknown site
        ("/api/v1/site/readings?site_id=S2", NOT_FOUND_1),  # another key's site looks unknown
        ("/api/v1/meter/reading?meter_no=999", NOT_FOUND_2),  # unknown meter
        ("/api/v1/meter/reading?meter_no=201", NOT_FOUND_2),  # meter of another site
    ],
)
async def test_unknown_and_foreign_objects_are_not_found(
    client: TestClient, read_key: str, path: str, expected: dict
) -> None:
    response = await client.get(path, headers=headers(read_key))
    assert response.status == 404
    assert await response.json() == expected


async def test_site_without_active_meters_is_not_found(client: TestClient, db: Database) -> None:
    await add_site(db, "EMPTY")
    await add_meter(db, 7, "EMPTY", "U7", active=False)
    key = await add_key(db, "read", "EMPTY")
    response = await client.get("/api/v1/site/readings?site_id=EMPTY", headers=headers(key))
    assert response.status == 404
    assert await response.json() == NOT_FOUND_1


@pytest.mark.parametrize("role", ["read", "operate", "admin"])
async def test_every_api_role_may_read(client: TestClient, db: Database, read_key: str, role: str) -> None:
    key = read_key if role == "read" else await add_key(db, role, "*")
    response = await client.get("/api/v1/site/readings?site_id=S1", headers=headers(key))
    assert response.status == 200


@pytest.mark.parametrize(
    ("path", "word"),
    [("/api/v1/site/readings?site_id=S1", "error"), ("/api/v1/meter/reading?meter_no=101", "Error")],
)
async def test_auth_failures_use_the_call_envelope(
    client: TestClient, db: Database, read_key: str, path: str, word: str
) -> None:
    ingest_key = await add_key(db, "ingest", "S1")
    meter_token = await add_meter(db, 104, "S1", "A-104")
    cases = [
        ({}, 401, "Unauthorized"),
        (headers("mgk_not-a-key"), 401, "Unauthorized"),
        (headers(meter_token), 401, "Unauthorized"),  # a device token is not an API key
        (headers(ingest_key), 403, "Forbidden"),  # ingest keys are for devices only
    ]
    for sent, status, message in cases:
        response = await client.get(path, headers=sent)
        assert response.status == status, sent
        body = await response.json()
        assert body.pop("remarks")  # the reason, in words
        assert body == {"status": word, "message": message, "count": "0", "data": None}


async def test_auth_is_checked_before_input(client: TestClient) -> None:
    response = await client.get("/api/v1/site/readings")  # no key and no site_id
    assert response.status == 401
