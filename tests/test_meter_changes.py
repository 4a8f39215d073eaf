"""Meter replacement (admin API, CLI, store) and Factech call 5, meters changed between dates."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from decimal import Decimal

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import update

from gateway.cli import main
from storage.db.engine import Database
from storage.db.models import Meter
from storage.errors import Conflict
from storage.registry import keys, meters
from storage.registry.meter_changes import list_meter_changes, replace_meter
from tests.api_setup import add_key, add_meter, add_site, headers

NOT_DETAILS = {"status": "Error", "message": "Not Details", "count": "0", "data": None}


@pytest.fixture
async def admin_key(db: Database) -> str:
    """S1 with meter 101 (unit A-101, registers advanced, balance 250.75, consumer details); S2 with 201."""
    await add_site(db, "S1")
    await add_site(db, "S2")
    await meters.add_meter(
        db,
        meter_no=101,
        site_id="S1",
        unit_no="A-101",
        consumer_name="Aashima",
        fin_no="A3389127I",
        start_grid=Decimal("100.000"),
        start_dg=Decimal("5.000"),
    )
    async with db.transaction() as session:  # as if readings had come in since
        await session.execute(
            update(Meter)
            .where(Meter.meter_no == 101)  # type: ignore[arg-type]
            .values(grid_kwh=Decimal("180.456"), dg_kwh=Decimal("9.125"), balance=Decimal("250.75"))
        )
    await add_meter(db, 102, "S1", "A-102")
    await add_meter(db, 201, "S2", "B-1")
    return await add_key(db, "admin", "S1")


async def replace(client: TestClient, key: str, **body: object) -> tuple[int, dict]:
    response = await client.post("/api/v1/admin/meter-changes", json=body, headers=headers(key))
    return response.status, await response.json()


async def test_replacement_moves_unit_balance_and_consumer_to_the_new_meter(
    client: TestClient, db: Database, admin_key: str
) -> None:
    status, body = await replace(
        client,
        admin_key,
        site_id="S1",
        old_meter_no="101",
        new_meter_no=111,
        meter_change_date="2025-02-10",
        reading_start_date="2025-02-11",
        new_start_dg="1.5",
        new_start_grid="2.25",
    )
    assert status == 201, body
    token = body["data"].pop("token")
    assert token.startswith("mtr_")
    assert body == {
        "status": "success",
        "message": "Meter replaced",
        "data": {
            "site_id": "S1",
            "unit_no": "A-101",
            "old_meter_no": "101",
            "new_meter_no": "111",
            "old_start_grid": "100.000",
            "old_start_dg": "5.000",
            "old_end_grid": "180.456",
            "old_end_dg": "9.125",
            "new_start_grid": "2.250",
            "new_start_dg": "1.500",
            "balance_moved": "250.75",
            "meter_change_date": "2025-02-10",
            "reading_start_date": "2025-02-11",
        },
    }
    async with db.reader() as session:
        old, new = await session.get(Meter, 101), await session.get(Meter, 111)
    assert old is not None and new is not None
    assert (old.active, old.balance, old.grid_kwh) == (False, Decimal("0.00"), Decimal("180.456"))
    assert old.retired_at is not None
    assert (new.active, new.relay_on, new.site_id, new.unit_no) == (True, True, "S1", "A-101")
    assert (new.consumer_name, new.fin_no, new.balance) == ("Aashima", "A3389127I", Decimal("250.75"))
    assert (new.grid_kwh, new.dg_kwh, new.start_grid) == (
        Decimal("2.250"),
        Decimal("1.500"),
        Decimal("2.250"),
    )
    assert new.token_hash == keys.hash_secret(token)
    # The device token is for POST /meter only: it opens nothing on the API.
    response = await client.get("/api/v1/meter/reading?meter_no=111", headers=headers(token))
    assert response.status == 401


async def test_site_readings_show_the_new_meter_not_the_retired_one(
    client: TestClient, db: Database, admin_key: str
) -> None:
    await replace(client, admin_key, site_id="S1", old_meter_no=101, new_meter_no=111, meter_change_date="2025-02-10")
    body = await (await client.get("/api/v1/site/readings?site_id=S1", headers=headers(admin_key))).json()
    assert [(m["meter_no"], m["unit_no"], m["balance"]) for m in body["data"]] == [
        ("111", "A-101", "250.75"),
        ("102", "A-102", "0.00"),
    ]


@pytest.mark.parametrize(
    ("change", "status", "errors"),
    [
        ({"old_meter_no": 999}, 404, {"old_meter_no": ["Unknown meter."]}),
        ({"old_meter_no": 201}, 404, {"old_meter_no": ["Unknown meter."]}),  # on another site
        ({"new_meter_no": 102}, 409, {"new_meter_no": ["Already exists."]}),
        ({"new_meter_no": 101}, 409, {"new_meter_no": ["Already exists."]}),
        ({"meter_change_date": "2999-01-01"}, 400, {"meter_change_date": ["Must not be in the future."]}),
        (
            {"meter_change_date": "2025-2-10"},
            400,
            {"meter_change_date": ["Not a valid date: expected YYYY-MM-DD."]},
        ),
        (
            {"reading_start_date": "2025-02-09"},
            400,
            {"reading_start_date": ["Must not be before meter_change_date."]},
        ),
        ({"new_start_grid": "-1"}, 400, {"new_start_grid": ["Must be at least 0."]}),
        ({"new_start_dg": "1.2345"}, 400, {"new_start_dg": ["At most 3 decimals."]}),
        (
            {"new_meter_no": "12a"},
            400,
            {"new_meter_no": ["Not a valid meter number: expected a positive whole number."]},
        ),
        ({"old_meter_no": None}, 400, {"old_meter_no": ["Field may not be null."]}),
        ({"colour": "red"}, 400, {"colour": ["Unknown field."]}),
    ],
)
async def test_bad_replacements_are_refused_and_change_nothing(
    client: TestClient, db: Database, admin_key: str, change: dict, status: int, errors: dict
) -> None:
    body = {
        "site_id": "S1",
        "old_meter_no": 101,
        "new_meter_no": 111,
        "meter_change_date": "2025-02-10",
        **change,
    }
    assert (await replace(client, admin_key, **body))[0] == status
    response = await client.post("/api/v1/admin/meter-changes", json=body, headers=headers(admin_key))
    reply = await response.json()
    assert reply["status"] == "error" and reply["errors"] == errors
    async with db.reader() as session:
        assert (await session.get(Meter, 101)).active is True  # type: ignore[union-attr]
        assert await session.get(Meter, 111) is None


async def test_a_retired_meter_cannot_be_replaced_again(client: TestClient, admin_key: str) -> None:
    first = {"site_id": "S1", "old_meter_no": 101, "new_meter_no": 111, "meter_change_date": "2025-02-10"}
    assert (await replace(client, admin_key, **first))[0] == 201
    status, body = await replace(client, admin_key, **{**first, "new_meter_no": 112})
    assert status == 409 and body["message"] == "meter 101 is already retired"


async def test_replacement_on_a_foreign_site_is_not_found(client: TestClient, db: Database, admin_key: str) -> None:
    status, foreign = await replace(
        client, admin_key, site_id="S2", old_meter_no=201, new_meter_no=211, meter_change_date="2025-02-10"
    )
    assert (status, foreign["message"]) == (404, "unknown site 'S2'")
    unknown = await replace(
        client, admin_key, site_id="NOPE", old_meter_no=201, new_meter_no=211, meter_change_date="2025-02-10"
    )
    assert unknown[1] == {
        "status": "error",
        "message": "unknown site 'NOPE'",
        "errors": {"site_id": ["Unknown site."]},
    }
    async with db.reader() as session:
        assert (await session.get(Meter, 201)).active is True  # type: ignore[union-attr]
        assert await session.get(Meter, 211) is None


async def test_replacement_needs_the_admin_role(client: TestClient, db: Database, admin_key: str) -> None:
    key = await add_key(db, "operate", "S1")
    status, body = await replace(
        client, key, site_id="S1", old_meter_no=101, new_meter_no=111, meter_change_date="2025-02-10"
    )
    assert (status, body["status"]) == (403, "error")


async def test_changed_meters_lists_changes_between_dates_inclusive(client: TestClient, admin_key: str) -> None:
    await replace(
        client,
        admin_key,
        site_id="S1",
        old_meter_no=101,
        new_meter_no=111,
        meter_change_date="2025-02-10",
        reading_start_date="2025-02-11",
        new_start_dg="1.5",
    )
    await replace(client, admin_key, site_id="S1", old_meter_no=102, new_meter_no=112, meter_change_date="2025-03-01")
    response = await client.get(
        "/api/v1/meter/changes",
        params={"site_id": "S1", "from_date": "2025-02-10", "to_date": "2025-02-28"},
        headers=headers(admin_key),
    )
    assert response.status == 200
    assert await response.json() == {
        "status": "success",
        "message": "Meter Changed Details",
        "count": "1",
        "data": [
            {
                "unit_no": "A-101",
                "old_meter_no": "101",
                "old_start_dg": "5.00",
                "old_end_dg": "9.13",
                "old_start_grid": "100.00",
                "old_end_grid": "180.46",
                "new_meter_no": "111",
                "new_start_dg": "1.50",
                "new_start_grid": "0.00",
                "meter_change_date": "2025-02-10",
                "reading_start_date": "2025-02-11",
            }
        ],
    }
    both = await client.get(
        "/api/v1/meter/changes?site_id=S1&from_date=2025-02-10&to_date=2025-03-01", headers=headers(admin_key)
    )
    assert [c["new_meter_no"] for c in (await both.json())["data"]] == ["111", "112"]


@pytest.mark.parametrize(
    "params",
    [
        {"site_id": "S1", "from_date": "2024-01-01", "to_date": "2024-12-31"},  # nothing changed then
        {"site_id": "S2", "from_date": "2025-01-01", "to_date": "2025-12-31"},  # site outside the key
        {"site_id": "NOPE", "from_date": "2025-01-01", "to_date": "2025-12-31"},
    ],
)
async def test_no_changes_is_not_details(client: TestClient, admin_key: str, params: dict) -> None:
    await replace(client, admin_key, site_id="S1", old_meter_no=101, new_meter_no=111, meter_change_date="2025-02-10")
    response = await client.get("/api/v1/meter/changes", params=params, headers=headers(admin_key))
    assert response.status == 404
    assert await response.json() == NOT_DETAILS


@pytest.mark.parametrize(
    ("params", "remarks"),
    [
        ({"from_date": "2025-01-01", "to_date": "2025-01-31"}, "site_id: Missing data for required field."),
        ({"site_id": "S1", "to_date": "2025-01-31"}, "from_date: Missing data for required field."),
        ({"site_id": "S1", "from_date": "2025-01-01"}, "to_date: Missing data for required field."),
        (
            {"site_id": "S1", "from_date": "2025-02-30", "to_date": "2025-03-01"},
            "from_date: Not a valid date.",
        ),
        (
            {"site_id": "S1", "from_date": "20250101", "to_date": "2025-03-01"},
            "from_date: Not a valid date: expected YYYY-MM-DD.",
        ),
        (
            {"site_id": "S1", "from_date": "2025-01-01", "to_date": "01/03/2025"},
            "to_date: Not a valid date: expected YYYY-MM-DD.",
        ),
        (
            {"site_id": "S1", "from_date": "2025-03-02", "to_date": "2025-03-01"},
            "from_date: Must not be after to_date.",
        ),
    ],
)
async def test_changed_meters_bad_dates_are_invalid_input(
    client: TestClient, admin_key: str, params: dict, remarks: str
) -> None:
    response = await client.get("/api/v1/meter/changes", params=params, headers=headers(admin_key))
    assert response.status == 400
    assert await response.json() == {
        "status": "Error",
        "message": "Invalid input",
        "count": "0",
        "data": None,
        "remarks": remarks,
    }


def test_cli_meter_replace_prints_the_new_token(capsys: pytest.CaptureFixture[str], database_url: str) -> None:
    def run(*argv: str) -> tuple[int, str, str]:
        code = main([*argv, "--database-url", database_url])
        out, err = capsys.readouterr()
        return code, out, err

    assert run("site", "add", "S1", "--name", "n", "--region", "r")[0] == 0
    assert run("meter", "add", "1", "--site", "S1", "--unit", "U1", "--balance", "42.50")[0] == 0
    argv = ["meter", "replace", "1", "2", "--site", "S1", "--date", "2025-02-10"]
    code, out, err = run(*argv, "--reading-start", "2025-02-12", "--new-start-grid", "3.5", "--json")
    assert code == 0, err
    printed = json.loads(out)
    assert printed["token"].startswith("mtr_") and printed["balance_moved"] == "42.50"
    assert (printed["new_meter_no"], printed["reading_start_date"], printed["new_start_grid"]) == (
        "2",
        "2025-02-12",
        "3.500",
    )
    code, out, err = run(*argv)  # meter 1 is retired now
    assert (code, out) == (1, "") and err == "error: meter 1 is already retired\n"
    code, _, err = run("meter", "replace", "2", "3", "--site", "S1", "--date", "10/02/2025")
    assert code == 1 and err == "error: meter_change_date: Not a valid date: expected YYYY-MM-DD.\n"


async def test_store_refuses_to_replace_twice_concurrently_leaving_one_change(db: Database) -> None:
    await add_site(db, "S1")
    await add_meter(db, 1, "S1", "U1")
    day = dt.date(2025, 2, 10)
    results = await asyncio.gather(
        replace_meter(db, site_id="S1", old_meter_no=1, new_meter_no=2, meter_change_date=day),
        replace_meter(db, site_id="S1", old_meter_no=1, new_meter_no=3, meter_change_date=day),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["Conflict", "Replacement"]
    assert next(r for r in results if isinstance(r, Conflict)).message == "meter 1 is already retired"
    assert len(await list_meter_changes(db, site_id="S1", from_date=day, to_date=day)) == 1


async def test_replacement_moves_the_residents_portal_account(db: Database, admin_key: str) -> None:
    from storage.portal import portal_users

    async with db.transaction() as session:
        await session.execute(update(Meter).where(Meter.meter_no == 101).values(fin_no="A3389127I"))  # type: ignore[arg-type]
    await portal_users.register_resident(db, meter_no=101, fin_no="A3389127I", password="correct horse battery")
    await replace_meter(db, site_id="S1", old_meter_no=101, new_meter_no=121, meter_change_date=dt.date(2025, 2, 10))
    account = await portal_users.log_in(
        db, login=121, password="correct horse battery", now=dt.datetime(2025, 2, 11, tzinfo=dt.UTC)
    )
    assert account.meter_no == 121
