"""The audit trail (issue #18, item 9): every state change by a key or a person, with who, when,
what and from where; append-only; listed per site by the admin API and `gateway audit`.

On SQLite and PostgreSQL, through the real app with the in-process head-end simulator.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy.exc
from aiohttp.test_utils import TestClient
from sqlalchemy import delete, func, select, update

from gateway.cli import main
from storage import audit
from storage.db.engine import Database
from storage.db.event_models import AuditEvent
from storage.registry import keys
from tests.command_setup import NOW, World

AUDIT = "/api/v1/admin/audit"


async def listing(client: TestClient, key: str, **params: str) -> tuple[int, dict[str, Any]]:
    response = await client.get(AUDIT, params=params, headers={"X-API-Key": key})
    return response.status, await response.json()


async def count(db: Database) -> int:
    async with db.reader() as session:
        return (await session.execute(select(func.count()).select_from(AuditEvent))).scalar_one()


async def test_every_change_is_written_with_who_when_what_and_where(
    simulated: TestClient, world: World, db: Database
) -> None:
    operate, admin = world.headers("operate"), world.headers("admin")
    calls = [
        ("POST", "/api/v1/meter/recharge", operate, {"site_id": "S1", "meter_no": "101", "amount": "50.00"}),
        ("POST", "/api/v1/meter/stop", operate, {"site_id": "S1", "meter_no": "101"}),
        ("POST", "/api/v1/meter/start", operate, {"site_id": "S1", "meter_no": "101"}),
        (
            "POST",
            "/api/v1/meter/load",
            operate,
            {"site_id": "S1", "meter_no": "101", "load_dg": "2", "load_grid": "5"},
        ),
        ("PATCH", "/api/v1/admin/sites/S1", admin, {"tariff_grid": "9.50", "auto_cut": False}),
        ("POST", "/api/v1/admin/meters/101/adjustments", admin, {"amount": "-5.00", "reason": "meter test"}),
        ("POST", "/api/v1/admin/keys", admin, {"name": "new-read", "role": "read", "sites": ["S1"]}),
        ("POST", "/api/v1/admin/keys/new-read/rotate", admin, None),
        ("POST", "/api/v1/admin/keys/new-read/revoke", admin, None),
        (
            "POST",
            "/api/v1/admin/meter-changes",
            admin,
            {"site_id": "S1", "old_meter_no": "102", "new_meter_no": "104", "meter_change_date": "2025-02-07"},
        ),
    ]
    for method, path, headers, body in calls:
        response = await simulated.request(method, path, json=body, headers=headers)
        assert response.status < 300, (path, await response.text())
    status, reply = await listing(simulated, world.keys["admin"], site_id="S1")
    assert status == 200 and reply["count"] == len(calls)
    events = reply["data"]
    assert [e["action"] for e in events] == [
        "meter.recharge",
        "meter.stop",
        "meter.start",
        "meter.load",
        "site.edit",
        "meter.adjust",
        "key.create",
        "key.rotate",
        "key.revoke",
        "meter.replace",
    ]
    recharge = events[0]
    assert recharge["actor"] == "key:operate" and recharge["address"] == "127.0.0.1"
    assert recharge["at"] == NOW.isoformat() and recharge["site_id"] == "S1" and recharge["target"] == "101"
    assert recharge["details"]["amount"] == "50.00" and recharge["details"]["transaction_id"].startswith("TXN")
    assert events[4]["details"] == {"tariff_grid": "9.50", "auto_cut": False} and events[4]["actor"] == "key:admin"
    assert events[6]["target"] == "new-read" and "mgk_" not in json.dumps(reply)  # never a secret
    first, second = events[0]["id"], events[1]["id"]
    status, page = await listing(simulated, world.keys["admin"], site_id="S1", after=str(first))
    assert [e["id"] for e in page["data"]][:1] == [second] and page["count"] == len(calls) - 1


async def test_refused_requests_write_nothing(simulated: TestClient, world: World, db: Database) -> None:
    for body in ({"site_id": "S1", "meter_no": "101", "amount": "1e2"}, {"site_id": "S2", "meter_no": "201"}):
        response = await simulated.post("/api/v1/meter/recharge", json=body, headers=world.headers("operate"))
        assert response.status in (400, 404)
    assert await count(db) == 0


async def test_a_key_sees_the_trail_of_its_own_sites_only(simulated: TestClient, world: World, db: Database) -> None:
    body = {"site_id": "S2", "meter_no": "201", "amount": "5"}
    assert (await simulated.post("/api/v1/meter/recharge", json=body, headers=world.headers("operate-s2"))).status
    admin_s2 = (await keys.create_key(db, name="admin-s2", role="admin", sites=["S2"])).key
    root = (await keys.create_key(db, name="root", role="admin", sites=["*"])).key
    assert (await listing(simulated, world.keys["admin"]))[1]["data"] == []
    status, reply = await listing(simulated, world.keys["admin"], site_id="S2")
    assert status == 404 and "S2" not in json.dumps(reply.get("data"))
    assert [e["site_id"] for e in (await listing(simulated, admin_s2))[1]["data"]] == ["S2"]
    assert (await listing(simulated, root, site_id="S2"))[1]["count"] == 1
    assert (await listing(simulated, world.keys["operate"]))[0] == 403
    assert (await listing(simulated, root, after="yesterday"))[0] == 400
    assert (await listing(simulated, root, after="2025-02-08T05:00:00Z"))[1]["count"] == 1
    assert (await listing(simulated, root, after="2025-02-08T06:00:00Z"))[1]["count"] == 0


async def test_the_trail_is_append_only(db: Database) -> None:
    await audit.record(db, actor="key:k", action="meter.recharge", at=NOW, site_id="S1", target="101")
    for statement in (update(AuditEvent).values(actor="key:someone-else"), delete(AuditEvent)):
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"):
            async with db.transaction() as session:
                await session.execute(statement)
    assert await count(db) == 1


def test_cli_changes_are_written_and_listed(capsys: pytest.CaptureFixture[str], database_url: str) -> None:
    for argv in (
        ["site", "add", "S9", "--name", "N", "--region", "R"],
        ["key", "create", "--name", "k9", "--role", "read", "--site", "S9"],
        ["key", "revoke", "k9"],
    ):
        assert main([*argv, "--database-url", database_url]) == 0
    capsys.readouterr()
    assert main(["audit", "--site", "S9", "--json", "--database-url", database_url]) == 0
    events = json.loads(capsys.readouterr().out)["events"]
    assert [(e["action"], e["target"], e["address"]) for e in events] == [
        ("site.create", "S9", "local"),
        ("key.create", "k9", "local"),
        ("key.revoke", "k9", "local"),
    ]
    assert all(e["actor"].startswith("cli:") for e in events)
    assert main(["audit", "--database-url", database_url]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3


@pytest.mark.parametrize("after", ["yesterday", "2025-02-08T05:00:00", "1" * 41, "-5"])
async def test_a_bad_after_is_refused_naming_it(simulated: TestClient, world: World, after: str) -> None:
    status, reply = await listing(simulated, world.keys["admin"], after=after)
    assert status == 400 and list(reply["errors"]) == ["after"]


def test_the_cli_refuses_a_bad_after_naming_the_flag(capsys: pytest.CaptureFixture[str], database_url: str) -> None:
    assert main(["audit", "--after", "2025-02-08T05:00:00", "--database-url", database_url]) == 1
    assert capsys.readouterr().err.startswith("error: --after: Give an event id or a date-time with its zone")
