"""Fixtures for the head-end calls (a pytest plugin, loaded by conftest): the mock meter server
on 127.0.0.1 with its control calls, a gateway wired to it, and a small world of sites, meters
and keys registered through the store (so every balance is in the ledger).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import update

from gateway.app import create_app
from gateway.settings import Settings
from mock_meter_server.app import create_app as create_mock
from storage.clock import FixedClock
from storage.db.engine import Database
from storage.db.models import Meter
from storage.registry import keys as key_registry
from storage.registry import meters
from storage.registry import sites as site_registry

MOCK_TOKEN = "t0k"
NOW = dt.datetime(2025, 2, 8, 6, 0, tzinfo=dt.UTC)  # 11:30 in Asia/Kolkata


class MockHeadEnd:
    """The mock meter server under test and its control calls."""

    def __init__(self, server: TestServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.url = str(server.make_url(""))
        self._session = session

    async def faults(self, **changes: Any) -> None:
        """Change fault settings (`POST /control/faults`)."""
        async with self._session.post(self.url + "/control/faults", json=changes) as response:
            assert response.status == 200, await response.text()

    async def set_relay(self, meter_no: int, *, on: bool) -> None:
        """Put a meter's relay where a test needs it, through the head-end API itself."""
        body = {"command_id": f"setup-{meter_no}-{on}", "state": "on" if on else "off"}
        async with self._session.post(f"{self.url}/headend/v1/meters/{meter_no}/relay", json=body) as response:
            assert response.status == 200, await response.text()

    async def state(self) -> dict[str, Any]:
        """Meters, credits, command count and fault counters."""
        async with self._session.get(self.url + "/control/state") as response:
            return await response.json()


class StepClock:
    """The mock's clock, moved by hand."""

    def __init__(self) -> None:
        self.at = NOW

    def __call__(self) -> dt.datetime:
        return self.at


@pytest.fixture
def mock_clock() -> StepClock:
    return StepClock()


@pytest.fixture
async def mock(aiohttp_server: Any, mock_clock: StepClock) -> AsyncIterator[MockHeadEnd]:
    """The mock meter server (bearer token `t0k`) on 127.0.0.1."""
    server = await aiohttp_server(create_mock(seed=3, clock=mock_clock, token=MOCK_TOKEN))
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {MOCK_TOKEN}"}) as session:
        yield MockHeadEnd(server, session)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


def gateway_settings(database_url: str, headend_url: str | None, **overrides: Any) -> Settings:
    """Settings for a gateway under test: no background jobs (tests run them), short deadlines."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "headend_url": headend_url,
        "headend_token": MOCK_TOKEN if headend_url else None,
        "scheduler": False,
        "headend_attempt_seconds": 0.5,
        "headend_deadline_seconds": 1.0,
        "recharge_max": Decimal("5000.00"),
    }
    return Settings(**{**values, **overrides})


@pytest.fixture
async def gateway(aiohttp_client: Any, database_url: str, mock: MockHeadEnd, clock: FixedClock) -> TestClient:
    """The gateway with its HTTP head-end client pointed at the mock."""
    return await aiohttp_client(create_app(gateway_settings(database_url, mock.url), clock=clock))


@pytest.fixture
async def simulated(aiohttp_client: Any, database_url: str, clock: FixedClock) -> TestClient:
    """The gateway with the in-process head-end simulator (no GATEWAY_HEADEND_URL)."""
    return await aiohttp_client(create_app(gateway_settings(database_url, None), clock=clock))


@dataclass(frozen=True)
class World:
    """Keys by name; device tokens by meter number."""

    keys: dict[str, str]
    tokens: dict[int, str]

    def headers(self, key: str, **extra: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[key], **extra}


@pytest.fixture
async def world(db: Database) -> World:
    """S1 (Asia/Kolkata, auto-cut): 101 on with 100.00, 102 stopped, 103 retired; S2: 201.

    Keys: operate/read/admin/ingest for S1, operate for S2, operate for every site.
    """
    await site_registry.add_site(db, site_id="S1", name="Society S1", region="North", tariff_grid=Decimal("10.00"))
    await site_registry.add_site(db, site_id="S2", name="Society S2", region="South")
    tokens = {}
    for meter_no, site, unit, balance in (
        (101, "S1", "A-101", "100.00"),
        (102, "S1", "A-102", "50.00"),
        (103, "S1", "A-103", "0.00"),
        (201, "S2", "B-201", "10.00"),
    ):
        created = await meters.add_meter(db, meter_no=meter_no, site_id=site, unit_no=unit, balance=Decimal(balance))
        tokens[meter_no] = created.token
    async with db.transaction() as session:
        await session.execute(update(Meter).where(Meter.meter_no == 102).values(relay_on=False))  # type: ignore[arg-type]
        await session.execute(update(Meter).where(Meter.meter_no == 103).values(active=False, retired_at=NOW))  # type: ignore[arg-type]
    keys = {}
    for name, role, sites in (
        ("operate", "operate", ["S1"]),
        ("read", "read", ["S1"]),
        ("admin", "admin", ["S1"]),
        ("ingest", "ingest", ["S1"]),
        ("operate-s2", "operate", ["S2"]),
        ("operate-all", "operate", ["*"]),
    ):
        keys[name] = (await key_registry.create_key(db, name=name, role=role, sites=sites)).key
    return World(keys, tokens)
