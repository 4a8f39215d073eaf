"""The app skeleton over real HTTP: health, metrics, the JSON error path, settings."""

from __future__ import annotations

from decimal import Decimal

import pytest
from aiohttp.test_utils import TestClient

from gateway import __version__
from gateway.settings import Settings


async def test_healthz_reports_database_and_version(client: TestClient) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ok" and body["version"] == __version__
    assert body["database"] in ("sqlite", "postgresql")


async def test_metrics_are_prometheus_text(client: TestClient) -> None:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    assert "python_info" in await response.text()


async def test_unknown_route_answers_json_error(client: TestClient) -> None:
    response = await client.get("/no/such/path")
    assert response.status == 404
    assert await response.json() == {"status": "error", "message": "Not Found"}


async def test_wrong_method_answers_json_error(client: TestClient) -> None:
    response = await client.post("/healthz")
    assert response.status == 405
    assert (await response.json())["status"] == "error"


def test_settings_come_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_DATABASE_URL", "sqlite+aiosqlite:///x.db")
    monkeypatch.setenv("GATEWAY_MAX_INTERVAL_KWH", "250.5")
    settings = Settings()
    assert settings.database_url == "sqlite+aiosqlite:///x.db"
    assert settings.max_interval_kwh == Decimal("250.5")
    assert settings.with_overrides(port=9000, host=None).port == 9000


def test_the_global_ingest_auth_switch_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_INGEST_AUTH", "off")
    with pytest.raises(ValueError, match="no longer supported: allow legacy meters one by one"):
        Settings()
    monkeypatch.setenv("GATEWAY_INGEST_AUTH", "on")  # what it always meant: harmless
    assert Settings().model_dump().get("ingest_auth") is None


def test_settings_refuse_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PORT", "not-a-port")
    with pytest.raises(ValueError, match="port"):
        Settings()
