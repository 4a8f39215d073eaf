"""Replies built as plain dicts (the ingest hot path, the error envelope) load with the reply
schemas the spec is generated from (`schemas.replies`): same keys, same words, nothing more."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from marshmallow import Schema, ValidationError

from schemas.replies import BatchReply, DgStoredReply, ErrorReply, Health, ReadingStoredReply
from tests.test_ingest import M1, M2, NOW, Env, make_env

STAMP = (NOW - dt.timedelta(minutes=29)).isoformat()


@pytest.fixture
async def env(aiohttp_client: Any, sqlite_url: str) -> Any:
    environment = await make_env(aiohttp_client, sqlite_url)
    yield environment
    await environment.db.dispose()


def loads(schema: type[Schema], body: Any) -> dict[str, Any]:
    """The reply loaded with its schema (ValidationError, naming the key, if it does not fit)."""
    return schema().load(body)


async def test_meter_replies_load_with_their_schemas(env: Env) -> None:
    packet = {"id": M1, "timestamp": STAMP, "reading_kWh": 1.25}
    status, body = await env.post(packet)
    assert status == 200 and loads(ReadingStoredReply, body)["message"] == "Reading stored"
    status, body = await env.post(packet)
    assert status == 200 and loads(ReadingStoredReply, body)["data"]["duplicate"] is True

    batch = [{"id": M2, "timestamp": STAMP, "reading_kWh": 2.0}, packet]
    status, body = await env.post(batch)
    assert status == 200 and loads(BatchReply, body)["data"]["duplicates"] == 1
    status, body = await env.post([packet, {"id": M2, "reading_kWh": 1}])
    assert status == 207 and loads(BatchReply, body)["data"]["rejected"][0]["index"] == 1
    status, body = await env.post([{"timestamp": STAMP}, "not a packet"])
    assert status == 400 and loads(BatchReply, body)["status"] == "error"


async def test_error_envelopes_load_with_the_error_schema(env: Env) -> None:
    status, body = await env.post({"id": M1, "timestamp": "yesterday", "reading_kWh": 1})
    assert status == 400 and "timestamp" in loads(ErrorReply, body)["errors"]
    response = await env.client.post("/meter", json={"id": M1, "timestamp": STAMP, "reading_kWh": 1})
    assert response.status == 401 and loads(ErrorReply, await response.json())["message"]
    response = await env.client.get("/no-such-path")
    assert response.status == 404 and loads(ErrorReply, await response.json())


async def test_dg_and_health_replies_load_with_their_schemas(env: Env) -> None:
    dg = {"site_id": "S1", "dg_number": "DG1", "timestamp": STAMP, "status": "ON", "fuel_litres": 50}
    response = await env.client.post("/dg", json=dg, headers=env.auth())
    assert response.status == 200 and loads(DgStoredReply, await response.json())["data"]["status_changed"] is True
    response = await env.client.get("/healthz")
    assert response.status == 200 and loads(Health, await response.json())["status"] == "ok"


def test_a_reply_that_drifts_from_its_schema_is_refused() -> None:
    """What the checks above rely on: an extra key, a missing one or another word does not load."""
    good = {"status": "success", "message": "Reading stored",
            "data": {"id": 1, "interval_start": "2025-02-08T00:30:00Z", "duplicate": False}}  # fmt: skip
    loads(ReadingStoredReply, good)
    for drifted in (
        {**good, "extra": 1},
        {**good, "status": "ok"},
        {key: value for key, value in good.items() if key != "data"},
        {**good, "data": {**good["data"], "id": "1"}},
    ):
        with pytest.raises(ValidationError):
            loads(ReadingStoredReply, drifted)
