"""Registering bulk meters (the grid incomer, a DG's energy meter): the admin API and
`gateway meter add --role`, with a clear 400 for each bad role, and nothing stored then. Both
databases. (That they are read but never billed: tests/test_energy_audit.py and the property
test of tests/test_ingest_paths.py.)"""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestClient

from gateway.cli import main
from storage.db.engine import Database
from storage.db.models import Meter
from storage.registry import dgs
from tests.api_setup import add_key, add_meter, add_site, headers


@pytest.fixture
async def key(db: Database) -> str:
    """Sites S1 (DG1, flat 101) and S2 (DG2); an admin key for S1."""
    await add_site(db, "S1")
    await add_site(db, "S2")
    await dgs.add_dg(db, site_id="S1", dg_no="DG1")
    await dgs.add_dg(db, site_id="S2", dg_no="DG2")
    await add_meter(db, 101, "S1", "A-101")
    return await add_key(db, "admin", "S1")


async def call(client: TestClient, method: str, path: str, key: str, body: object) -> tuple[int, dict]:
    response = await client.request(method, f"/api/v1/admin{path}", json=body, headers=headers(key))
    return response.status, await response.json()


async def test_an_incomer_and_a_dg_meter_are_registered(client: TestClient, key: str) -> None:
    status, incomer = await call(
        client, "POST", "/sites/S1/meters", key, {"meter_no": 900, "unit_no": "Incomer", "role": "incomer"}
    )
    assert status == 201 and (incomer["data"]["role"], incomer["data"]["dg_no"]) == ("incomer", None)
    body = {"meter_no": 901, "unit_no": "DG1 meter", "role": "dg", "dg_no": "DG1"}
    status, dg = await call(client, "POST", "/sites/S1/meters", key, body)
    assert status == 201 and (dg["data"]["role"], dg["data"]["dg_no"]) == ("dg", "DG1")
    # A flat becomes the incomer and back; a DG meter that stops measuring a DG forgets it.
    status, edited = await call(client, "PATCH", "/meters/901", key, {"role": "incomer"})
    assert status == 200 and (edited["data"]["role"], edited["data"]["dg_no"]) == ("incomer", None)
    status, edited = await call(client, "PATCH", "/meters/901", key, {"role": "dg", "dg_no": "DG1"})
    assert status == 200 and edited["data"]["dg_no"] == "DG1" and edited["data"]["resident_unlinked"] is False


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"role": "meter"}, "role", "Invalid input: role"),  # errors: "Unknown role; one of flat, incomer, dg."
        ({"role": "dg"}, "dg_no", "a DG's meter (role dg) needs dg_no"),
        ({"role": "dg", "dg_no": "DG9"}, "dg_no", "unknown DG 'DG9' on site 'S1'"),
        ({"role": "dg", "dg_no": "DG2"}, "dg_no", "unknown DG 'DG2' on site 'S1'"),  # another site's
        ({"role": "incomer", "dg_no": "DG1"}, "dg_no", "dg_no is for role dg only, not 'incomer'"),
    ],
)
async def test_bad_roles_are_refused_and_nothing_is_stored(
    client: TestClient, db: Database, key: str, body: dict, field: str, message: str
) -> None:
    status, reply = await call(client, "POST", "/sites/S1/meters", key, {"meter_no": 5, "unit_no": "X", **body})
    assert (status, list(reply["errors"]), reply["message"]) == (400, [field], message)
    assert field != "role" or reply["errors"] == {"role": ["Unknown role; one of flat, incomer, dg."]}
    status, reply = await call(client, "PATCH", "/meters/101", key, body)
    assert (status, list(reply["errors"]), reply["message"]) == (400, [field], message)
    async with db.reader() as session:
        assert await session.get(Meter, 5) is None
        flat = await session.get(Meter, 101)
        assert flat is not None and (flat.role, flat.dg_no) == ("flat", None)


async def test_a_bulk_meter_has_no_balance(client: TestClient, db: Database, key: str) -> None:
    body = {"meter_no": 5, "unit_no": "X", "role": "incomer", "balance": "10.00"}
    status, reply = await call(client, "POST", "/sites/S1/meters", key, body)
    assert (status, reply["message"]) == (400, "a bulk meter (incomer) is never billed: no balance")
    await add_meter(db, 102, "S1", "A-102", balance=5)
    status, reply = await call(client, "PATCH", "/meters/102", key, {"role": "incomer"})
    assert (status, reply["errors"]) == (400, {"balance": ["Must be 0 for a bulk meter."]})
    status, reply = await call(client, "PATCH", "/meters/101", key, {"dg_no": "DG1"})  # a flat measures no DG
    assert (status, reply["errors"]) == (400, {"dg_no": ["Only for role dg."]})
    async with db.reader() as session:
        assert await session.get(Meter, 5) is None
        assert [(m.role, m.dg_no) for m in (await session.get(Meter, 101), await session.get(Meter, 102))] == [
            ("flat", None),
            ("flat", None),
        ]


def test_gateway_meter_add_takes_a_role(capsys: pytest.CaptureFixture[str], database_url: str) -> None:
    def run(*argv: str) -> tuple[int, str, str]:
        code = main([*argv, "--database-url", database_url])
        out, err = capsys.readouterr()
        return code, out, err

    assert run("site", "add", "S1", "--name", "n", "--region", "r")[0] == 0
    assert run("dg", "add", "DG1", "--site", "S1")[0] == 0
    code, out, _ = run(
        "meter", "add", "901", "--site", "S1", "--unit", "DG", "--role", "dg", "--dg-no", "DG1", "--json"
    )
    assert code == 0 and {k: json.loads(out)[k] for k in ("role", "dg_no")} == {"role": "dg", "dg_no": "DG1"}
    for argv, message in (
        (("--role", "bulk"), "unknown meter role 'bulk'; one of flat, incomer, dg"),
        (("--role", "dg"), "a DG's meter (role dg) needs dg_no"),
        (("--role", "dg", "--dg-no", "DG7"), "unknown DG 'DG7' on site 'S1'"),
    ):
        code, out, err = run("meter", "add", "902", "--site", "S1", "--unit", "X", *argv)
        assert (code, out) == (1, "") and message in err, err
    code, out, err = run("meter", "add", "902", "--site", "S1", "--unit", "X", "--role", "incomer", "--json")
    assert code == 0 and json.loads(out)["role"] == "incomer"
