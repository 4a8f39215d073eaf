"""Legacy ingest is a per-meter flag set by staff, not a global switch (issue #18, item 1).

A request without credentials may post only for meters flagged `legacy_ingest`; any token or
key that is sent is checked as always; `POST /dg` always needs an ingest key; the gateway
warns at start while a flagged meter exists. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from gateway.app import warn_of_legacy_meters
from gateway.cli import main
from storage.registry import keys
from tests.test_ingest import FOREIGN, M1, M2, Env, make_env, packet, readings


@pytest.fixture
async def env(aiohttp_client: Any, database_url: str) -> Any:
    environment = await make_env(aiohttp_client, database_url)
    admin = await keys.create_key(environment.db, name="admin-s1", role="admin", sites=["S1"])
    environment.admin_key = admin.key  # type: ignore[attr-defined]
    yield environment
    await environment.db.dispose()


async def set_legacy(env: Env, meter_no: int, allowed: bool) -> dict[str, Any]:
    response = await env.client.patch(
        f"/api/v1/admin/meters/{meter_no}",
        json={"legacy_ingest": allowed},
        headers={"X-API-Key": env.admin_key},  # type: ignore[attr-defined]
    )
    assert response.status == 200, await response.text()
    return (await response.json())["data"]


async def post_bare(env: Env, body: Any) -> tuple[int, dict[str, Any]]:
    response = await env.client.post("/meter", json=body)
    return response.status, await response.json()


async def test_only_flagged_meters_post_without_a_token(env: Env) -> None:
    assert (await post_bare(env, packet()))[0] == 401  # nothing flagged: as before
    assert (await set_legacy(env, M1, True))["legacy_ingest"] is True
    status, body = await post_bare(env, packet())
    assert status == 200 and body["data"]["id"] == M1
    status, body = await post_bare(env, packet(meter_no=M2))
    assert status == 401 and "Missing credentials" in body["message"]
    status, _ = await post_bare(env, packet(meter_no=999))  # unknown: the same 401, no 404 oracle
    assert status == 401
    status, body = await post_bare(env, [packet(at="2026-11-20T01:01:00Z"), packet(meter_no=M2)])
    assert status == 207
    assert [(r["index"], r["id"]) for r in body["data"]["rejected"]] == [(1, M2)]
    assert [r.meter_no for r in await readings(env.db)] == [M1, M1]


async def test_a_token_that_is_sent_is_checked_even_for_a_legacy_meter(env: Env) -> None:
    await set_legacy(env, M1, True)
    assert (await env.post(packet(), secret="mtr_not-a-real-token"))[0] == 401
    assert (await env.post(packet(), secret="mgk_not-a-real-key"))[0] == 401
    assert (await env.post(packet(), secret=env.foreign_key))[0] == 404  # another site's key keeps its scope
    assert (await env.post(packet(), secret=env.tokens[M2]))[0] == 403  # another meter's token
    assert await readings(env.db) == []


async def test_dg_posts_always_need_an_ingest_key(env: Env) -> None:
    await set_legacy(env, M1, True)
    body = {"site_id": "S1", "dg_number": "DG1", "timestamp": "2026-11-20T10:10:00Z", "status": "ON"}
    response = await env.client.post("/dg", json=body)
    assert response.status == 401
    assert (await env.client.post("/dg", json=body, headers=env.auth())).status == 200


async def test_turning_the_flag_off_stops_bare_posts_at_once(env: Env) -> None:
    await set_legacy(env, M1, True)
    assert (await post_bare(env, packet()))[0] == 200
    await set_legacy(env, M1, False)
    assert (await post_bare(env, packet(at="2026-11-20T01:01:00Z")))[0] == 401


async def test_the_gateway_warns_at_start_while_a_legacy_meter_exists(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway"):
        await warn_of_legacy_meters(env.db)
    assert not caplog.records
    await set_legacy(env, M1, True)
    with caplog.at_level(logging.WARNING, logger="gateway"):
        await warn_of_legacy_meters(env.db)
    [record] = caplog.records
    assert "WITHOUT A TOKEN" in record.getMessage() and str(M1) in record.getMessage()


def test_staff_set_the_flag_from_the_command_line(capsys: pytest.CaptureFixture[str], database_url: str) -> None:
    for argv in (
        ["site", "add", "S9", "--name", "N", "--region", "R"],
        ["meter", "add", str(FOREIGN), "--site", "S9", "--unit", "A1"],
    ):
        assert main([*argv, "--database-url", database_url]) == 0
    capsys.readouterr()
    assert main(["meter", "legacy-ingest", str(FOREIGN), "on", "--json", "--database-url", database_url]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"meter_no": str(FOREIGN), "site_id": "S9", "legacy_ingest": True}
    assert main(["meter", "legacy-ingest", "12x", "on", "--database-url", database_url]) == 1
