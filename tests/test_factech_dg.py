"""Factech calls 10, 12, 13 (DG reading, status, fuel) over real HTTP, from the `dg` table's state."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from aiohttp.test_utils import TestClient

from storage.db.engine import Database
from tests.api_setup import add_dg, add_key, add_site, headers

NOT_FOUND = {"status": "Error", "message": "Not Found", "data": None}
CALLS = ["/api/v1/dg/reading", "/api/v1/dg/status", "/api/v1/dg/fuel"]


@pytest.fixture
async def read_key(db: Database) -> str:
    """S1 has DG1 (ON, with fuel and energy posted) and DG2 (never posted); S2 has DG9."""
    await add_site(db, "S1")
    await add_site(db, "S2")
    await add_dg(
        db,
        "S1",
        "DG1",
        meter_no="DGM-1",
        status="ON",
        status_at=dt.datetime(2025, 2, 8, 4, 0, tzinfo=dt.UTC),
        fuel_litres=Decimal("152.5"),
        fuel_at=dt.datetime(2025, 2, 8, 4, 15, tzinfo=dt.UTC),
        reading_kwh=Decimal("10234.567"),
        reading_at=dt.datetime(2025, 2, 8, 4, 30, tzinfo=dt.UTC),
    )
    await add_dg(db, "S1", "DG2")
    await add_dg(db, "S2", "DG9", status="ON")
    return await add_key(db, "read", "S1")


async def get(client: TestClient, path: str, key: str, **params: str) -> tuple[int, dict]:
    response = await client.get(path, params=params, headers=headers(key))
    return response.status, await response.json()


async def test_dg_reading_as_documented(client: TestClient, read_key: str) -> None:
    assert await get(client, "/api/v1/dg/reading", read_key, site_id="S1", dg_number="DG1") == (
        200,
        {
            "status": "success",
            "message": "DG Readings",
            "data": {
                "dg_no": "DG1",
                "meter_no": "DGM-1",
                "reading": "10234.57",
                "date_time": "2025-02-08 10:00:00",
            },
        },
    )


async def test_dg_status_as_documented(client: TestClient, read_key: str) -> None:
    assert await get(client, "/api/v1/dg/status", read_key, site_id="S1", dg_number="DG1") == (
        200,
        {"status": "success", "message": "DG Status", "data": {"dg_no": "DG1", "status": "ON"}},
    )


async def test_dg_fuel_uses_the_documents_datetime_key(client: TestClient, read_key: str) -> None:
    assert await get(client, "/api/v1/dg/fuel", read_key, site_id="S1", dg_number="DG1") == (
        200,
        {
            "status": "success",
            "message": "DG Status",
            "data": {"dg_no": "DG1", "fuel_balance": "152.50", "datetime": "2025-02-08 09:45:00"},
        },
    )


async def test_dg_never_posted_answers_empty_values(client: TestClient, read_key: str) -> None:
    _, reading = await get(client, "/api/v1/dg/reading", read_key, site_id="S1", dg_number="DG2")
    _, status = await get(client, "/api/v1/dg/status", read_key, site_id="S1", dg_number="DG2")
    _, fuel = await get(client, "/api/v1/dg/fuel", read_key, site_id="S1", dg_number="DG2")
    assert reading["data"] == {"dg_no": "DG2", "meter_no": "", "reading": "", "date_time": ""}
    assert status["data"] == {"dg_no": "DG2", "status": "OFF"}
    assert fuel["data"] == {"dg_no": "DG2", "fuel_balance": "", "datetime": ""}


@pytest.mark.parametrize("path", CALLS)
@pytest.mark.parametrize(
    "params",
    [
        {"site_id": "S1", "dg_number": "NOPE"},  # unknown DG
        {"site_id": "NOPE", "dg_number": "DG1"},  # unknown site
        {"site_id": "S2", "dg_number": "DG9"},  # DG of a site outside the key
    ],
)
async def test_unknown_or_foreign_dg_is_not_found(client: TestClient, read_key: str, path: str, params: dict) -> None:
    assert await get(client, path, read_key, **params) == (404, NOT_FOUND)


@pytest.mark.parametrize("path", CALLS)
@pytest.mark.parametrize(
    ("params", "remarks"),
    [
        ({"site_id": "S1"}, "dg_number: Missing data for required field."),
        ({"dg_number": "DG1"}, "site_id: Missing data for required field."),
        ({"site_id": "S1", "dg_number": ""}, "dg_number: Must not be empty."),
    ],
)
async def test_dg_bad_input_names_the_parameter(
    client: TestClient, read_key: str, path: str, params: dict, remarks: str
) -> None:
    assert await get(client, path, read_key, **params) == (
        400,
        {"status": "Error", "message": "Invalid input", "data": None, "remarks": remarks},
    )


@pytest.mark.parametrize("path", CALLS)
async def test_dg_calls_refuse_ingest_keys_and_missing_keys(
    client: TestClient, db: Database, read_key: str, path: str
) -> None:
    ingest_key = await add_key(db, "ingest", "S1")
    params = {"site_id": "S1", "dg_number": "DG1"}
    status, body = await get(client, path, ingest_key, **params)
    assert status == 403 and body["message"] == "Forbidden" and body["status"] == "Error"
    response = await client.get(path, params=params)
    assert response.status == 401 and (await response.json())["message"] == "Unauthorized"
