"""Issue 18: portal accounts' life cycle through the admin API (`/api/v1/admin/users…`) and
`gateway user list|disable|enable|remove|reset-password`, scoped to the key's sites."""

from __future__ import annotations

import asyncio
import io
import json

import pytest
from aiohttp.test_utils import TestClient

from gateway.cli import main
from schemas.fields import parse_login
from storage.db.engine import Database
from storage.errors import Unauthorized
from storage.portal import portal_users
from tests.api_setup import add_key, headers
from tests.portaldata import NOW, PASSWORD, RESIDENT, STAFF, add_accounts, make_world


@pytest.fixture
async def keys(db: Database) -> dict[str, str]:
    """The portal world (S1 with RESIDENT's account, S2; a staff account for '*') and admin keys."""
    await make_world(db)
    await add_accounts(db)
    return {
        "root": await add_key(db, "admin", "*"),
        "s1": await add_key(db, "admin", "S1"),
        "s2": await add_key(db, "admin", "S2"),
        "read": await add_key(db, "read", "*"),
    }


async def call(client: TestClient, method: str, path: str, key: str, body: object = None) -> tuple[int, dict]:
    response = await client.request(method, f"/api/v1/admin{path}", json=body, headers=headers(key))
    return response.status, await response.json()


async def can_log_in(db: Database, login: str, password: str) -> bool:
    try:
        await portal_users.log_in(db, login=parse_login(login), password=password, now=NOW)
        return True
    except Unauthorized:
        return False


async def test_listing_shows_the_accounts_within_the_keys_sites(client: TestClient, keys: dict[str, str]) -> None:
    status, reply = await call(client, "GET", "/users", keys["root"])
    assert status == 200
    assert [(a["kind"], a["login"], a["sites"]) for a in reply["data"]] == [
        ("staff", STAFF, ["*"]),
        ("resident", str(RESIDENT), ["S1"]),
    ]
    assert "password" not in json.dumps(reply)
    assert [a["login"] for a in (await call(client, "GET", "/users", keys["s1"]))[1]["data"]] == [str(RESIDENT)]
    assert (await call(client, "GET", "/users", keys["s2"]))[1]["data"] == []
    assert (await call(client, "GET", "/users", keys["read"]))[0] == 403


async def test_disable_enable_reset_and_remove_over_the_api(
    client: TestClient, keys: dict[str, str], db: Database
) -> None:
    key = keys["s1"]
    status, reply = await call(client, "POST", f"/users/{RESIDENT}/disable", key)
    assert status == 200 and reply["data"]["disabled"] is True
    with pytest.raises(Unauthorized, match="disabled"):
        await portal_users.log_in(db, login=RESIDENT, password=PASSWORD, now=NOW)
    assert (await call(client, "POST", f"/users/{RESIDENT}/enable", key))[1]["data"]["disabled"] is False
    status, reply = await call(client, "POST", f"/users/{RESIDENT}/reset-password", key)
    assert status == 200 and len(reply["data"]["password"]) >= 16
    assert await can_log_in(db, str(RESIDENT), reply["data"]["password"])
    assert not await can_log_in(db, str(RESIDENT), PASSWORD)
    status, reply = await call(client, "POST", f"/users/{RESIDENT}/reset-password", key, {"password": "short"})
    assert status == 400 and "at least 10 characters" in json.dumps(reply)
    assert (await call(client, "DELETE", f"/users/{RESIDENT}", key))[0] == 200
    assert (await call(client, "GET", f"/users/{RESIDENT}", key))[0] == 404


async def test_accounts_of_other_sites_answer_as_unknown(client: TestClient, keys: dict[str, str]) -> None:
    for path in (f"/users/{RESIDENT}/disable", f"/users/{STAFF}/disable", "/users/nobody/disable"):
        status, reply = await call(client, "POST", path, keys["s2"])
        assert status == 404 and reply["errors"] == {"account": ["No such account."]}, path
    assert (await call(client, "POST", f"/users/{STAFF}/disable", keys["s1"]))[0] == 404  # '*' staff need a '*' key


async def test_staff_accounts_are_created_for_the_keys_sites_only(
    client: TestClient, keys: dict[str, str], db: Database
) -> None:
    status, reply = await call(client, "POST", "/users", keys["s1"], {"username": "ops-s1", "sites": ["S1"]})
    assert status == 201 and reply["data"]["sites"] == ["S1"] and reply["data"]["kind"] == "staff"
    assert await can_log_in(db, "ops-s1", reply["data"]["password"])
    assert (await call(client, "POST", "/users", keys["s1"], {"username": "x", "sites": ["*"]}))[0] == 403
    assert (await call(client, "POST", "/users", keys["s1"], {"username": "x", "sites": ["S2"]}))[0] == 404
    given = {"username": "ops-all", "sites": ["*"], "password": "a long staff password"}
    status, reply = await call(client, "POST", "/users", keys["root"], given)
    assert status == 201 and "password" not in reply["data"]
    assert (await call(client, "POST", "/users", keys["root"], given))[0] == 409


async def test_unlinking_a_meter_and_changing_its_fin_remove_the_resident(
    client: TestClient, keys: dict[str, str]
) -> None:
    status, reply = await call(client, "PATCH", f"/meters/{RESIDENT}", keys["s1"], {"consumer_name": "Resident 999"})
    assert status == 200 and reply["data"]["resident_unlinked"] is False  # the same name: no new resident
    status, reply = await call(client, "PATCH", f"/meters/{RESIDENT}", keys["s1"], {"fin_no": "Z9999999Z"})
    assert status == 200 and reply["data"]["resident_unlinked"] is True
    assert (await call(client, "GET", f"/users/{RESIDENT}", keys["s1"]))[0] == 404
    assert (await call(client, "POST", f"/meters/{RESIDENT}/unlink", keys["s1"]))[0] == 404  # nobody to unlink


async def test_unlink_over_the_api(client: TestClient, keys: dict[str, str]) -> None:
    assert (await call(client, "POST", f"/meters/{RESIDENT}/unlink", keys["s2"]))[0] == 404  # another site's
    status, reply = await call(client, "POST", f"/meters/{RESIDENT}/unlink", keys["s1"])
    assert status == 200 and reply["message"] == "Resident unlinked" and reply["data"]["login"] == str(RESIDENT)


def user_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str, *argv: str, stdin: str = ""
):  # type: ignore[no-untyped-def]
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(["user", *argv, "--database-url", url, "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else err)


async def test_the_user_commands(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database_url: str, keys: dict[str, str]
) -> None:
    def run(*argv: str, stdin: str = ""):  # type: ignore[no-untyped-def]
        return user_cli(monkeypatch, capsys, database_url, *argv, stdin=stdin)

    # The CLI runs its own event loop: in a thread, off this test's.
    async def cli(*argv: str, stdin: str = ""):  # type: ignore[no-untyped-def]
        return await asyncio.to_thread(run, *argv, stdin=stdin)

    code, listed = await cli("list")
    assert code == 0 and [u["login"] for u in listed["users"]] == [STAFF, str(RESIDENT)]
    assert [u["login"] for u in (await cli("list", "--site", "S2"))[1]["users"]] == []
    assert (await cli("disable", STAFF))[1]["disabled"] is True
    assert (await cli("enable", STAFF))[1]["disabled"] is False
    code, reset = await cli("reset-password", "999-999-999")
    assert code == 0 and reset["login"] == str(RESIDENT) and len(reset["password"]) >= 16
    code, given = await cli("reset-password", STAFF, "--password-stdin", stdin="another long password\n")
    assert code == 0 and "password" not in given
    assert (await cli("remove", str(RESIDENT)))[0] == 0
    code, error = await cli("disable", str(RESIDENT))
    assert code == 1 and "unknown account" in error
