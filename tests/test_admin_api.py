"""The admin API over real HTTP: sites, meters, DGs and keys; validation, roles, site scope."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from storage.db.engine import Database
from storage.db.models import Meter, Site
from tests.api_setup import add_key, add_meter, add_site, headers


@pytest.fixture
async def keys(db: Database) -> dict[str, str]:
    """Sites S1 (meter 101) and S2 (meter 201); admin keys for '*' and for S1, and a read key for S1."""
    await add_site(db, "S1")
    await add_site(db, "S2")
    await add_meter(db, 101, "S1", "A-101")
    await add_meter(db, 201, "S2", "B-1")
    return {
        "root": await add_key(db, "admin", "*"),
        "s1": await add_key(db, "admin", "S1"),
        "read": await add_key(db, "read", "S1"),
    }


async def call(client: TestClient, method: str, path: str, key: str, body: object = None) -> tuple[int, dict]:
    response = await client.request(method, f"/api/v1/admin{path}", json=body, headers=headers(key))
    return response.status, await response.json()


async def test_create_site_answers_the_site(client: TestClient, keys: dict[str, str]) -> None:
    body = {
        "site_id": "S3",
        "name": "Green Park",
        "region": "South",
        "tariff_grid": "7.50",
        "auto_cut": False,
    }
    assert await call(client, "POST", "/sites", keys["root"], body) == (
        201,
        {
            "status": "success",
            "message": "Site created",
            "data": {
                "site_id": "S3",
                "name": "Green Park",
                "region": "South",
                "timezone": "Asia/Kolkata",
                "tariff_grid": "7.50",
                "tariff_dg": "20.00",
                "fixed_daily": "0.00",
                "auto_cut": False,
                "grace_amount": "0.00",
                "alert_thresholds": [],
                "no_cut_hours": "",
                "no_cut_weekdays": [],
            },
        },
    )


async def test_creating_sites_needs_an_admin_key_for_every_site(client: TestClient, keys: dict[str, str]) -> None:
    body = {"site_id": "S3", "name": "n", "region": "r"}
    status, reply = await call(client, "POST", "/sites", keys["s1"], body)
    assert (status, reply["message"]) == (403, "creating a site needs an admin key for every site ('*')")
    assert (await call(client, "POST", "/sites", keys["read"], body))[0] == 403


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"name": "n", "region": "r"}, {"site_id": ["Missing data for required field."]}),
        ({"site_id": " ", "name": "n", "region": "r"}, {"site_id": ["Must not be empty."]}),
        ({"site_id": "S3", "region": "r"}, {"name": ["Missing data for required field."]}),
        (
            {"site_id": "S3", "name": "n", "region": "r", "tariff_grid": "abc"},
            {"tariff_grid": ["Not a valid number."]},
        ),
        (
            {"site_id": "S3", "name": "n", "region": "r", "tariff_dg": "1.234"},
            {"tariff_dg": ["At most 2 decimals."]},
        ),
        (
            {"site_id": "S3", "name": "n", "region": "r", "tariff_dg": "-1"},
            {"tariff_dg": ["Must be at least 0."]},
        ),
        (
            {"site_id": "S3", "name": "n", "region": "r", "tariff_dg": "NaN"},
            {"tariff_dg": ["Special numeric values (nan or infinity) are not permitted."]},
        ),
        (
            {"site_id": "S3", "name": "n", "region": "r", "auto_cut": "maybe"},
            {"auto_cut": ["Not a valid boolean."]},
        ),
        (
            {"site_id": "S3", "name": "n", "region": "r", "timezone": "Mars/Base"},
            {"timezone": ["Unknown IANA timezone."]},
        ),
        ({"site_id": "S3", "name": "n", "region": "r", "colour": "red"}, {"colour": ["Unknown field."]}),
    ],
)
async def test_create_site_validation(
    client: TestClient, db: Database, keys: dict[str, str], body: dict, errors: dict
) -> None:
    status, reply = await call(client, "POST", "/sites", keys["root"], body)
    assert status == 400 and reply["status"] == "error" and reply["errors"] == errors
    async with db.reader() as session:
        assert await session.get(Site, "S3") is None


async def test_duplicate_site_is_a_conflict(client: TestClient, keys: dict[str, str]) -> None:
    status, reply = await call(client, "POST", "/sites", keys["root"], {"site_id": "S1", "name": "n", "region": "r"})
    assert (status, reply) == (
        409,
        {
            "status": "error",
            "message": "site 'S1' already exists",
            "errors": {"site_id": ["Already exists."]},
        },
    )


async def test_malformed_body_is_invalid_input(client: TestClient, keys: dict[str, str]) -> None:
    response = await client.post(
        "/api/v1/admin/sites",
        data="{oops",
        headers={**headers(keys["root"]), "Content-Type": "application/json"},
    )
    assert response.status == 400
    assert (await response.json())["errors"] == {"body": ["Malformed JSON."]}


async def test_sites_are_listed_and_read_within_the_keys_scope(client: TestClient, keys: dict[str, str]) -> None:
    _, everything = await call(client, "GET", "/sites", keys["root"])
    _, mine = await call(client, "GET", "/sites", keys["s1"])
    assert [s["site_id"] for s in everything["data"]] == ["S1", "S2"]
    assert [s["site_id"] for s in mine["data"]] == ["S1"]
    assert (await call(client, "GET", "/sites/S1", keys["s1"]))[1]["data"]["name"] == "Society S1"
    assert (await call(client, "GET", "/sites/S2", keys["s1"]))[0] == 404
    assert (await call(client, "GET", "/sites/NOPE", keys["root"]))[0] == 404


async def test_edit_site_changes_only_what_is_given(client: TestClient, keys: dict[str, str]) -> None:
    status, reply = await call(client, "PATCH", "/sites/S1", keys["s1"], {"tariff_grid": "9.25", "auto_cut": False})
    assert status == 200
    assert {k: reply["data"][k] for k in ("tariff_grid", "tariff_dg", "auto_cut", "name")} == {
        "tariff_grid": "9.25",
        "tariff_dg": "20.00",
        "auto_cut": False,
        "name": "Society S1",
    }


@pytest.mark.parametrize(
    ("path", "body", "status", "errors"),
    [
        ("/sites/S1", {"timezone": "UTC"}, 400, {"timezone": ["Unknown field."]}),
        (
            "/sites/S1",
            {},
            400,
            {
                "_schema": [
                    "Give at least one of: name, region, tariff_grid, tariff_dg, auto_cut, grace_amount, "
                    "alert_thresholds, no_cut_hours, no_cut_weekdays."
                ]
            },
        ),
        ("/sites/S1", {"name": ""}, 400, {"name": ["Must not be empty."]}),
        ("/sites/S1", {"tariff_dg": 5}, None, None),  # a JSON number is fine
        ("/sites/S2", {"name": "mine now"}, 404, None),  # another key's site
    ],
)
async def test_edit_site_validation_and_scope(
    client: TestClient,
    db: Database,
    keys: dict[str, str],
    path: str,
    body: dict,
    status: int | None,
    errors: dict,
) -> None:
    got, reply = await call(client, "PATCH", path, keys["s1"], body)
    if status is None:
        assert got == 200 and reply["data"]["tariff_dg"] == "5.00"
        return
    assert got == status
    if errors:
        assert reply["errors"] == errors
    async with db.reader() as session:
        assert (await session.get(Site, "S2")).name == "Society S2"  # type: ignore[union-attr]


async def test_meters_create_list_get_edit_retire(client: TestClient, keys: dict[str, str]) -> None:
    key = keys["s1"]
    body = {
        "meter_no": "102",
        "unit_no": "A-102",
        "consumer_name": "Ravi",
        "balance": "10.5",
        "start_grid": "3.25",
    }
    status, created = await call(client, "POST", "/sites/S1/meters", key, body)
    assert status == 201
    meter = created["data"]
    assert meter.pop("token").startswith("mtr_")
    assert meter == {
        "meter_no": "102",
        "site_id": "S1",
        "unit_no": "A-102",
        "consumer_name": "Ravi",
        "fin_no": "",
        "balance": "10.50",
        "relay_on": True,
        "load_dg": None,
        "load_grid": None,
        "grid_kwh": "3.250",
        "dg_kwh": "0.000",
        "start_grid": "3.250",
        "start_dg": "0.000",
        "last_reading_at": None,
        "active": True,
        "retired_at": None,
        "legacy_ingest": False,
        "role": "flat",
        "dg_no": None,
    }
    _, listed = await call(client, "GET", "/sites/S1/meters", key)
    assert [m["meter_no"] for m in listed["data"]] == ["101", "102"] and "token" not in listed["data"][0]
    _, edited = await call(client, "PATCH", "/meters/102", key, {"consumer_name": "Ravi K", "fin_no": "F1"})
    assert (edited["data"]["consumer_name"], edited["data"]["fin_no"]) == ("Ravi K", "F1")
    assert (await call(client, "GET", "/meters/102", key))[1]["data"]["consumer_name"] == "Ravi K"
    status, retired = await call(client, "POST", "/meters/102/retire", key)
    assert status == 200 and retired["data"]["active"] is False and retired["data"]["retired_at"]
    status, again = await call(client, "POST", "/meters/102/retire", key)
    assert (status, again["message"]) == (409, "meter 102 is already retired")


@pytest.mark.parametrize(
    ("body", "status", "errors"),
    [
        ({"unit_no": "A"}, 400, {"meter_no": ["Missing data for required field."]}),
        (
            {"meter_no": "x1", "unit_no": "A"},
            400,
            {"meter_no": ["Not a valid meter number: expected a positive whole number."]},
        ),
        (
            {"meter_no": True, "unit_no": "A"},
            400,
            {"meter_no": ["Not a valid meter number: expected a positive whole number."]},
        ),
        ({"meter_no": 5}, 400, {"unit_no": ["Missing data for required field."]}),
        ({"meter_no": 5, "unit_no": "A", "balance": "1.001"}, 400, {"balance": ["At most 2 decimals."]}),
        ({"meter_no": 5, "unit_no": "A", "start_dg": "-0.5"}, 400, {"start_dg": ["Must be at least 0."]}),
        ({"meter_no": 101, "unit_no": "A"}, 409, {"meter_no": ["Already exists."]}),
        ({"meter_no": 201, "unit_no": "A"}, 409, {"meter_no": ["Already exists."]}),  # numbers are global
    ],
)
async def test_create_meter_validation(
    client: TestClient, db: Database, keys: dict[str, str], body: dict, status: int, errors: dict
) -> None:
    got, reply = await call(client, "POST", "/sites/S1/meters", keys["s1"], body)
    assert (got, reply["errors"]) == (status, errors)
    async with db.reader() as session:
        assert await session.get(Meter, 5) is None


async def test_meters_of_other_sites_are_not_found_and_unchanged(
    client: TestClient, db: Database, keys: dict[str, str]
) -> None:
    key = keys["s1"]
    assert (await call(client, "GET", "/meters/201", key))[0] == 404
    assert (await call(client, "PATCH", "/meters/201", key, {"consumer_name": "x"}))[0] == 404
    assert (await call(client, "POST", "/meters/201/retire", key))[0] == 404
    assert (await call(client, "GET", "/sites/S2/meters", key))[0] == 404
    assert (await call(client, "POST", "/sites/S2/meters", key, {"meter_no": 6, "unit_no": "A"}))[0] == 404
    assert (await call(client, "GET", "/meters/abc", key))[0] == 400
    async with db.reader() as session:
        meter = await session.get(Meter, 201)
        assert meter is not None and meter.active and meter.consumer_name == ""
        assert await session.get(Meter, 6) is None


async def test_edit_meter_allows_only_consumer_details(client: TestClient, keys: dict[str, str]) -> None:
    status, reply = await call(client, "PATCH", "/meters/101", keys["s1"], {"balance": "1000"})
    assert (status, reply["errors"]) == (400, {"balance": ["Unknown field."]})


async def test_dgs_create_and_list(client: TestClient, keys: dict[str, str]) -> None:
    status, created = await call(client, "POST", "/sites/S1/dgs", keys["s1"], {"dg_number": "DG1", "meter_no": "M9"})
    assert (status, created["data"]) == (
        201,
        {
            "site_id": "S1",
            "dg_number": "DG1",
            "meter_no": "M9",
            "status": "OFF",
            "fuel_litres": None,
            "reading_kwh": None,
        },
    )
    assert (await call(client, "POST", "/sites/S1/dgs", keys["s1"], {"dg_number": "DG1"}))[0] == 409
    assert (await call(client, "POST", "/sites/S1/dgs", keys["s1"], {}))[1]["errors"] == {
        "dg_number": ["Missing data for required field."]
    }
    assert (await call(client, "POST", "/sites/S2/dgs", keys["s1"], {"dg_number": "DG1"}))[0] == 404
    _, listed = await call(client, "GET", "/sites/S1/dgs", keys["s1"])
    assert [d["dg_number"] for d in listed["data"]] == ["DG1"]


async def test_keys_create_list_rotate_revoke(client: TestClient, keys: dict[str, str]) -> None:
    status, created = await call(client, "POST", "/keys", keys["s1"], {"name": "ism", "role": "read", "sites": ["S1"]})
    assert status == 201
    new_key = created["data"].pop("key")
    assert created["data"]["name"] == "ism" and created["data"]["revoked"] is False
    readings = "/api/v1/site/readings?site_id=S1"
    assert (await client.get(readings, headers=headers(new_key))).status == 200  # now cached

    status, rotated = await call(client, "POST", "/keys/ism/rotate", keys["s1"])
    assert status == 200
    rotated_key = rotated["data"]["key"]
    assert (await client.get(readings, headers=headers(new_key))).status == 401  # at once, despite the cache
    assert (await client.get(readings, headers=headers(rotated_key))).status == 200

    status, revoked = await call(client, "POST", "/keys/ism/revoke", keys["s1"])
    assert status == 200 and revoked["data"]["revoked"] is True and "key" not in revoked["data"]
    assert (await client.get(readings, headers=headers(rotated_key))).status == 401
    assert (await call(client, "POST", "/keys/ism/revoke", keys["s1"]))[0] == 409
    assert (await call(client, "POST", "/keys/ism/rotate", keys["s1"]))[0] == 409

    _, mine = await call(client, "GET", "/keys", keys["s1"])
    _, every = await call(client, "GET", "/keys", keys["root"])
    assert sorted(k["name"] for k in mine["data"]) == ["admin-S1", "ism", "read-S1"]  # not the '*' key
    assert sorted(k["name"] for k in every["data"]) == ["admin-S1", "admin-all", "ism", "read-S1"]
    assert all("key" not in k and "key_hash" not in k for k in every["data"])


@pytest.mark.parametrize(
    ("body", "status", "errors"),
    [
        ({"name": "k", "role": "root", "sites": ["S1"]}, 400, {"role": ["Unknown role."]}),
        ({"name": "k", "role": "read", "sites": []}, 400, {"sites": ["Length must be between 1 and 1000."]}),
        ({"name": "k", "role": "read", "sites": "S1"}, 400, {"sites": ["Not a valid list."]}),
        ({"name": "", "role": "read", "sites": ["S1"]}, 400, {"name": ["Must not be empty."]}),
        ({"name": "k", "role": "read", "sites": ["S2"]}, 404, {"sites": ["Unknown site 'S2'."]}),
        ({"name": "k", "role": "read", "sites": ["*"]}, 403, None),
        ({"name": "admin-S1", "role": "read", "sites": ["S1"]}, 409, {"name": ["Already exists."]}),
    ],
)
async def test_create_key_validation_and_scope(
    client: TestClient, keys: dict[str, str], body: dict, status: int, errors: dict | None
) -> None:
    got, reply = await call(client, "POST", "/keys", keys["s1"], body)
    assert got == status and reply.get("errors") == errors
    _, listed = await call(client, "GET", "/keys", keys["root"])
    assert "k" not in [k["name"] for k in listed["data"]]


async def test_keys_of_wider_scope_are_not_found(client: TestClient, keys: dict[str, str]) -> None:
    for action in ("revoke", "rotate"):
        status, reply = await call(client, "POST", f"/keys/admin-all/{action}", keys["s1"])
        assert (status, reply["message"]) == (404, "unknown key 'admin-all'")
    assert (await call(client, "POST", "/keys/ghost/revoke", keys["root"]))[0] == 404
    status, _ = await call(client, "GET", "/sites", keys["root"])
    assert status == 200  # the '*' key still works


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/sites"),
        ("GET", "/sites/S1/meters"),
        ("PATCH", "/meters/101"),
        ("POST", "/keys"),
        ("GET", "/keys"),
        ("POST", "/meter-changes"),
    ],
)
async def test_admin_routes_need_the_admin_role(
    client: TestClient, db: Database, keys: dict[str, str], method: str, path: str
) -> None:
    operate = await add_key(db, "operate", "*")
    ingest = await add_key(db, "ingest", "*")
    for key, status in ((keys["read"], 403), (operate, 403), (ingest, 403), ("mgk_wrong", 401)):
        got, reply = await call(client, method, path, key, {})
        assert (got, reply["status"]) == (status, "error"), key
    response = await client.request(method, f"/api/v1/admin{path}")
    assert response.status == 401
    assert await response.json() == {
        "status": "error",
        "message": "Missing API key: send it in the X-API-Key header",
    }


@pytest.mark.parametrize(
    ("foreign", "unknown"),
    [
        (("GET", "/sites/S2"), ("GET", "/sites/NOPE")),
        (("GET", "/meters/201"), ("GET", "/meters/999")),
        (("POST", "/keys/admin-all/revoke"), ("POST", "/keys/ghost/revoke")),
    ],
)
async def test_foreign_objects_answer_exactly_as_unknown_ones(
    client: TestClient, keys: dict[str, str], foreign: tuple[str, str], unknown: tuple[str, str]
) -> None:
    """A site admin cannot tell another site's objects from ones that do not exist."""
    seen_by_site_admin = await call(client, *foreign, keys["s1"])
    seen_by_root = await call(client, *unknown, keys["root"])
    names = {"S2": "NOPE", "201": "999", "admin-all": "ghost"}
    wording = str(seen_by_site_admin)
    for name, other in names.items():
        wording = wording.replace(name, other)
    assert seen_by_site_admin[0] == 404 and wording == str(seen_by_root)
