"""The admin day reports over real HTTP (auth order 401 → 403 → 404), and catch-up on start."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from storage.clock import FixedClock
from storage.db.engine import Database
from storage.registry import keys as key_registry
from tests.daydata import add_readings, at, make_site, totals, whole_day

KOLKATA = "Asia/Kolkata"
ADMIN_CALLS = ["/api/v1/admin/today?site_id=S1", "/api/v1/admin/gaps?site_id=S1&day=2025-02-11"]


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(at(KOLKATA, "2025-02-12 09:00"))


@pytest.fixture
async def app_client(aiohttp_client, database_url: str, clock: FixedClock) -> TestClient:  # type: ignore[no-untyped-def]
    """The gateway on the test clock, without the scheduler (tests run the job themselves)."""
    return await aiohttp_client(create_app(Settings(database_url=database_url, scheduler=False), clock=clock))


async def keys(db: Database) -> dict[str, str]:
    """Site S1 (meters 1, 2, 3), site S2, and a key of each kind the checks need."""
    await make_site(db, "S1", meters=(1, 2, 3), created=at(KOLKATA, "2025-02-11 00:00"))
    await make_site(db, "S2", meters=(), created=at(KOLKATA, "2025-02-11 00:00"))
    made = {
        "read": await key_registry.create_key(db, name="read", role="read", sites=["S1"]),
        "other": await key_registry.create_key(db, name="other", role="admin", sites=["S2"]),
        "admin": await key_registry.create_key(db, name="admin", role="admin", sites=["S1"]),
        "all": await key_registry.create_key(db, name="all", role="admin", sites=["*"]),
    }
    return {name: created.key for name, created in made.items()}


@pytest.mark.parametrize("path", ADMIN_CALLS)
async def test_admin_calls_check_key_then_role_then_site(app_client: TestClient, db: Database, path: str) -> None:
    key = await keys(db)
    cases = [
        ({}, 401, "Missing API key"),
        ({"X-API-Key": "mgk_wrong"}, 401, "Invalid or revoked API key"),
        ({"X-API-Key": key["read"]}, 403, "this call needs 'admin'"),
        ({"X-API-Key": key["other"]}, 404, "unknown site 'S1'"),
    ]
    for headers, status, message in cases:
        response = await app_client.get(path, headers=headers)
        assert response.status == status
        body = await response.json()
        assert body["status"] == "error" and message in body["message"]
    unknown = await app_client.get(path.replace("S1", "S9"), headers={"X-API-Key": key["all"]})
    assert unknown.status == 404 and (await unknown.json())["message"] == "unknown site 'S9'"
    missing = await app_client.get(path.split("?")[0], headers={"X-API-Key": key["admin"]})
    assert missing.status == 400
    assert await missing.json() == {
        "status": "error",
        "message": "site_id is required",
        "errors": {"site_id": ["Missing data for required field."]},
    }


async def test_today_answers_the_seeds_daily_structure(app_client: TestClient, db: Database) -> None:
    key = await keys(db)
    today = whole_day(KOLKATA, "2025-02-12")
    await add_readings(db, 1, today[:2], received_at=at(KOLKATA, "2025-02-12 01:01"), kwh="4.50")
    await add_readings(db, 2, today[2:3], received_at=at(KOLKATA, "2025-02-12 01:31"), kwh="4.35")
    await add_readings(db, 2, whole_day(KOLKATA, "2025-02-11")[-1:], received_at=at(KOLKATA, "2025-02-12 00:01"))
    response = await app_client.get("/api/v1/admin/today?site_id=S1", headers={"X-API-Key": key["admin"]})
    assert response.status == 200
    assert await response.json() == {"1": {"00:31": 4.5, "01:01": 4.5}, "2": {"01:31": 4.35}, "3": {}}


async def test_gaps_lists_meters_with_missing_intervals(
    app_client: TestClient, db: Database, clock: FixedClock
) -> None:
    key = await keys(db)
    day = whole_day(KOLKATA, "2025-02-11")
    await add_readings(db, 1, day, received_at=at(KOLKATA, "2025-02-11 23:59"))
    await add_readings(db, 2, day[:10], received_at=at(KOLKATA, "2025-02-11 23:59"))
    headers = {"X-API-Key": key["admin"]}
    response = await app_client.get("/api/v1/admin/gaps?site_id=S1&day=2025-02-11", headers=headers)
    assert response.status == 200
    assert await response.json() == {
        "site_id": "S1",
        "day": "2025-02-11",
        "timezone": KOLKATA,
        "intervals_expected": 48,
        "rolled_at": (clock.now() - dt.timedelta(minutes=2)).isoformat(),  # rolled on demand
        "meters": [
            {"meter_no": "2", "intervals": 10, "missing": 38},
            {"meter_no": "3", "intervals": 0, "missing": 48},
        ],
    }
    assert (await totals(db, "2025-02-11"))[2][3] == 10


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("day=2025-02-12", "day 2025-02-12 is not over yet at site 'S1' (Asia/Kolkata)"),
        ("day=12-02-2025", "day must be a date YYYY-MM-DD from 1970-01-01 to 9998-12-31, got '12-02-2025'"),
        ("", "day is required"),
    ],
)
async def test_gaps_refuse_a_bad_day(app_client: TestClient, db: Database, query: str, message: str) -> None:
    key = await keys(db)
    response = await app_client.get(f"/api/v1/admin/gaps?site_id=S1&{query}", headers={"X-API-Key": key["admin"]})
    assert response.status == 400
    assert (await response.json())["message"] == message


async def test_the_gateway_catches_up_missed_days_on_start(aiohttp_client, database_url: str, db: Database) -> None:  # type: ignore[no-untyped-def]
    await make_site(db, "S1", meters=(1,), created=at(KOLKATA, "2025-02-08 00:00"))
    for day in ("2025-02-08", "2025-02-09", "2025-02-10"):
        await add_readings(db, 1, whole_day(KOLKATA, day), received_at=at(KOLKATA, f"{day} 23:59"))
    clock = FixedClock(at(KOLKATA, "2025-02-11 08:00"))  # back after three midnights
    await aiohttp_client(create_app(Settings(database_url=database_url), clock=clock))
    for _ in range(200):
        if len(await totals(db, "2025-02-10")) == 1:
            break
        await asyncio.sleep(0.05)
    for day in ("2025-02-08", "2025-02-09", "2025-02-10"):
        assert (await totals(db, day))[1][3] == 48
