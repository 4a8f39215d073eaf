"""`POST /meter` and `POST /dg` over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import func, select, update

from gateway.app import create_app
from gateway.app_keys import KEYS, WRITER
from gateway.settings import Settings
from storage.clock import FixedClock
from storage.db.engine import Database
from storage.db.models import Command, DgStatusChange, DieselGenerator, Meter, Reading, ReadingConflict
from storage.ingest import run
from storage.ingest.readings import STORED, NewReading, wh_of
from storage.ingest.run import PostgresExecutor
from storage.registry import dgs, keys, meters, sites
from tests.conftest import _truncate_all

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
M1, M2, M3 = 100000001, 100000002, 100000003
FOREIGN = 200000001


@dataclass
class Env:
    client: TestClient
    db: Database
    clock: FixedClock
    ingest_key: str
    read_key: str
    foreign_key: str
    tokens: dict[int, str]

    def auth(self, secret: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret or self.ingest_key}"}

    async def post(self, body: Any, secret: str | None = None, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        response = await self.client.post("/meter", json=body, headers=self.auth(secret), **kwargs)
        return response.status, await response.json()


async def make_env(aiohttp_client: Any, database_url: str, **overrides: Any) -> Env:
    db = Database(database_url)
    await sites.add_site(
        db,
        site_id="S1",
        name="Green Park",
        region="North",
        tariff_grid=Decimal("8.00"),
        tariff_dg=Decimal("20.00"),
        auto_cut=True,
    )
    await sites.add_site(db, site_id="S2", name="Blue Hills", region="South", auto_cut=False)
    tokens = {}
    for meter_no, site in ((M1, "S1"), (M2, "S1"), (M3, "S1"), (FOREIGN, "S2")):
        created = await meters.add_meter(
            db, meter_no=meter_no, site_id=site, unit_no=f"U{meter_no % 100}", balance=Decimal("100.00")
        )
        tokens[meter_no] = created.token
    await dgs.add_dg(db, site_id="S1", dg_no="DG1")
    ingest = await keys.create_key(db, name="ingest-s1", role="ingest", sites=["S1"])
    read = await keys.create_key(db, name="read-all", role="read", sites=["*"])
    foreign = await keys.create_key(db, name="ingest-s2", role="ingest", sites=["S2"])
    clock = FixedClock(NOW)
    # No background jobs: the dispatcher would carry out (and so change) the cuts these tests inspect.
    settings = Settings(database_url=database_url, **{"scheduler": False, **overrides})
    client = await aiohttp_client(create_app(settings, clock=clock))
    return Env(client, db, clock, ingest.key, read.key, foreign.key, tokens)


@pytest.fixture
async def env(aiohttp_client: Any, database_url: str) -> Any:
    environment = await make_env(aiohttp_client, database_url)
    yield environment
    await environment.db.dispose()


def packet(meter_no: int = M1, at: str = "2026-11-20T00:31:00Z", kwh: Any = 1.25, **extra: Any) -> dict[str, Any]:
    return {"id": meter_no, "timestamp": at, "reading_kWh": kwh, **extra}


async def readings(db: Database) -> list[Reading]:
    async with db.reader() as session:
        return list(
            (await session.execute(select(Reading).order_by(Reading.meter_no, Reading.interval_start))).scalars()
        )


async def meter(db: Database, meter_no: int) -> Meter:
    async with db.reader() as session:
        found = await session.get(Meter, meter_no)
        assert found is not None
        return found


async def test_packet_is_stored_in_its_half_hour_and_debits_the_balance(env: Env) -> None:
    status, body = await env.post(packet(kwh=1.25))
    assert status == 200
    assert body == {
        "status": "success",
        "message": "Reading stored",
        "data": {"id": M1, "interval_start": "2026-11-20T00:00:00Z", "duplicate": False},
    }
    (stored,) = await readings(env.db)
    assert stored.interval_start == dt.datetime(2026, 11, 20, 0, 0, tzinfo=dt.UTC)
    assert stored.kwh == Decimal("1.250") and stored.source == "grid" and stored.charge == Decimal("10.00")
    m = await meter(env.db, M1)
    assert m.grid_kwh == Decimal("1.250") and m.dg_kwh == 0
    assert m.balance == Decimal("90.00")
    assert m.last_reading_at == dt.datetime(2026, 11, 20, 0, 30, tzinfo=dt.UTC)


async def test_debit_rounds_half_up_to_the_paisa(env: Env) -> None:
    await env.post(packet(kwh=0.0006))  # 0.001 kWh after rounding × 8.00 = 0.008 → 0.01
    await env.post(packet(at="2026-11-20T01:01:00Z", kwh=0.0625))  # 0.063 × 8 = 0.504 → 0.50
    assert (await meter(env.db, M1)).balance == Decimal("99.49")


@pytest.mark.parametrize(
    ("at", "start"),
    [
        ("2026-11-20T00:30:00Z", "2026-11-20T00:00:00Z"),
        ("2026-11-20T00:59:59Z", "2026-11-20T00:00:00Z"),
        ("2026-11-20T00:29:59Z", "2026-11-19T23:30:00Z"),
        ("2026-11-20T05:31:00+05:30", "2026-11-19T23:30:00Z"),
    ],
)
async def test_timestamp_maps_to_the_half_hour_before_it(env: Env, at: str, start: str) -> None:
    status, body = await env.post(packet(at=at))
    assert status == 200 and body["data"]["interval_start"] == start


async def test_all_48_intervals_of_a_day_are_accepted(env: Env) -> None:
    day = dt.datetime(2026, 11, 19, 0, 1, tzinfo=dt.UTC)
    batch = [packet(at=(day + dt.timedelta(minutes=30 * (i + 1))).isoformat(), kwh=0.5) for i in range(48)]
    status, body = await env.post(batch)
    assert status == 200 and body["data"] == {"accepted": 48, "duplicates": 0, "rejected": []}
    assert len({r.interval_start for r in await readings(env.db)}) == 48


async def test_replayed_packet_is_counted_once(env: Env) -> None:
    assert (await env.post(packet()))[0] == 200
    status, body = await env.post(packet())
    assert status == 200 and body["message"] == "Duplicate reading" and body["data"]["duplicate"] is True
    assert len(await readings(env.db)) == 1
    m = await meter(env.db, M1)
    assert m.grid_kwh == Decimal("1.250") and m.balance == Decimal("90.00")


async def test_conflicting_value_is_409_keeps_the_first_and_is_recorded(env: Env) -> None:
    await env.post(packet(kwh=1.25))
    status, body = await env.post(packet(kwh=2.0))
    assert status == 409 and body["status"] == "error"
    assert "1.250" in body["errors"]["reading_kWh"][0] and "first value is kept" in body["message"]
    (stored,) = await readings(env.db)
    assert stored.kwh == Decimal("1.250")
    assert (await meter(env.db, M1)).balance == Decimal("90.00")
    async with env.db.reader() as session:
        conflict = (await session.execute(select(ReadingConflict))).scalar_one()
    assert conflict.stored_kwh == Decimal("1.250") and conflict.offered_kwh == Decimal("2.000")


BAD_PACKETS = [
    ({"timestamp": "2026-11-20T00:31:00Z", "reading_kWh": 1}, "id"),
    ({"id": M1, "reading_kWh": 1}, "timestamp"),
    ({"id": M1, "timestamp": "2026-11-20T00:31:00Z"}, "reading_kWh"),
    (packet(meter_no="100000001"), "id"),  # type: ignore[arg-type]
    (packet(meter_no=True), "id"),  # type: ignore[arg-type]
    (packet(meter_no=1.5), "id"),  # type: ignore[arg-type]
    (packet(meter_no=-5), "id"),
    (packet(at=1732060260), "timestamp"),  # type: ignore[arg-type]
    (packet(at="2026-11-20T00:31:00"), "timestamp"),  # naive
    (packet(at="yesterday"), "timestamp"),
    (packet(at="2026-11-20T12:06:00Z"), "timestamp"),  # > 5 minutes ahead
    (packet(at="2026-10-01T00:31:00Z"), "timestamp"),  # > 35 days old
    (packet(kwh="1.5"), "reading_kWh"),
    (packet(kwh=True), "reading_kWh"),
    (packet(kwh=-0.1), "reading_kWh"),
    (packet(kwh=500.01), "reading_kWh"),
    (packet(kwh=1e308), "reading_kWh"),
    (packet(source="solar"), "source"),
    ({**packet(), "extra": 1}, "extra"),
]


@pytest.mark.parametrize(("body", "field"), BAD_PACKETS)
async def test_bad_packet_is_400_naming_the_field_and_stores_nothing(env: Env, body: dict, field: str) -> None:
    status, reply = await env.post(body)
    assert status == 400, reply
    assert reply["status"] == "error" and field in reply["errors"] and field in reply["message"]
    assert await readings(env.db) == []
    assert (await meter(env.db, M1)).balance == Decimal("100.00")


@pytest.mark.parametrize("raw", [b"{not json", b"", b"NaN", b'{"id": 1e400}', b'"a string"', b"42"])
async def test_malformed_body_is_400_and_stores_nothing(env: Env, raw: bytes) -> None:
    response = await env.client.post("/meter", data=raw, headers=env.auth())
    assert response.status == 400
    body = await response.json()
    assert body["status"] == "error" and body["message"]
    assert await readings(env.db) == []


async def test_unknown_meter_is_404(env: Env) -> None:
    status, body = await env.post(packet(meter_no=999))
    assert status == 404 and body["errors"] == {"id": ["Unknown meter 999."]}


async def test_retired_meter_is_409_and_stores_nothing(env: Env) -> None:
    async with env.db.transaction() as session:
        await session.execute(update(Meter).where(Meter.meter_no == M2).values(active=False))  # type: ignore[arg-type]
    status, body = await env.post(packet(meter_no=M2))
    assert status == 409 and "retired" in body["message"]
    assert await readings(env.db) == []


async def test_missing_or_bad_credentials_are_401(env: Env) -> None:
    response = await env.client.post("/meter", json=packet())
    assert response.status == 401 and "Bearer" in (await response.json())["message"]
    status, body = await env.post(packet(), secret="mtr_not-a-real-token")
    assert status == 401 and body["message"] == "Invalid or revoked token"
    status, _ = await env.post(packet(), secret="mgk_not-a-real-key")
    assert status == 401
    assert await readings(env.db) == []


async def test_device_token_posts_only_its_own_meter(env: Env) -> None:
    status, _ = await env.post(packet(meter_no=M1), secret=env.tokens[M1])
    assert status == 200
    status, body = await env.post(packet(meter_no=M2), secret=env.tokens[M1])
    assert status == 403 and f"belongs to meter {M1}" in body["message"]
    status, body = await env.post(
        [packet(meter_no=M1, at="2026-11-20T01:01:00Z"), packet(meter_no=M2)], secret=env.tokens[M1]
    )
    assert status == 207
    assert body["data"]["accepted"] == 1
    assert body["data"]["rejected"] == [
        {
            "index": 1,
            "id": M2,
            "errors": {"id": [f"This device token belongs to meter {M1}; it may post only its own readings."]},
        }
    ]
    assert {r.meter_no for r in await readings(env.db)} == {M1}


async def test_key_without_ingest_role_is_403_and_foreign_site_is_404(env: Env) -> None:
    status, body = await env.post(packet(), secret=env.read_key)
    assert status == 403 and "'ingest'" in body["message"]
    status, body = await env.post(packet(meter_no=FOREIGN))
    assert status == 404
    status, body = await env.post(packet(meter_no=M1), secret=env.foreign_key)
    assert status == 404
    assert await readings(env.db) == []


async def test_revoked_ingest_key_stops_working(env: Env) -> None:
    assert (await env.post(packet()))[0] == 200
    await keys.revoke_key(env.db, name="ingest-s1")
    env.client.app[KEYS].clear()  # what the admin API does
    status, _ = await env.post(packet(at="2026-11-20T01:01:00Z"))
    assert status == 401


async def test_body_over_the_size_limit_is_413(aiohttp_client: Any, database_url: str) -> None:
    env = await make_env(aiohttp_client, database_url, max_body_bytes=2048)
    batch = [packet(at=f"2026-11-20T{h:02d}:31:00Z") for h in range(11)] * 5
    status, body = await env.post(batch)
    assert status == 413 and body["status"] == "error" and "too large" in body["message"]
    assert await readings(env.db) == []
    await env.db.dispose()


async def test_batch_over_the_packet_limit_is_413(aiohttp_client: Any, database_url: str) -> None:
    env = await make_env(aiohttp_client, database_url, max_batch=3)
    status, body = await env.post([packet(at=f"2026-11-20T0{h}:31:00Z") for h in range(4)])
    assert status == 413 and "limit of 3" in body["message"]
    assert await readings(env.db) == []
    await env.db.dispose()


async def test_batch_answers_per_item_and_stores_the_good_ones(env: Env) -> None:
    await env.post(packet(meter_no=M2, kwh=1.0))
    batch = [
        packet(meter_no=M1),
        packet(meter_no=M1, kwh="x"),
        packet(meter_no=M2, kwh=1.0),  # duplicate of the stored one
        packet(meter_no=M2, kwh=3.0, at="2026-11-20T00:45:00Z"),  # conflict: same interval
        packet(meter_no=999),
        "not an object",
        packet(meter_no=M3),
        packet(meter_no=M3),  # the same packet twice in one batch
    ]
    status, body = await env.post(batch)
    assert status == 207 and body["status"] == "partial"
    data = body["data"]
    assert data["accepted"] == 2 and data["duplicates"] == 2
    assert [(r["index"], sorted(r["errors"])) for r in data["rejected"]] == [
        (1, ["reading_kWh"]),
        (3, ["reading_kWh"]),
        (4, ["id"]),
        (5, ["_schema"]),
    ]
    assert data["rejected"][2] == {"index": 4, "id": 999, "errors": {"id": ["Unknown meter 999."]}}
    assert len(await readings(env.db)) == 3


async def test_batch_with_every_item_bad_is_400_and_empty_batch_is_400(env: Env) -> None:
    status, body = await env.post([packet(kwh=-1), packet(meter_no=999)])
    assert status == 400 and body["status"] == "error" and len(body["data"]["rejected"]) == 2
    status, body = await env.post([])
    assert status == 400 and "Empty batch" in body["message"]
    assert await readings(env.db) == []


async def post_dg(env: Env, body: dict[str, Any], secret: str | None = None) -> tuple[int, dict[str, Any]]:
    response = await env.client.post("/dg", json=body, headers=env.auth(secret))
    return response.status, await response.json()


async def test_energy_goes_to_dg_while_a_dg_is_on(env: Env) -> None:
    status, body = await post_dg(
        env,
        {
            "site_id": "S1",
            "dg_number": "DG1",
            "timestamp": "2026-11-20T10:10:00Z",
            "status": "ON",
            "fuel_litres": 80.5,
            "reading_kWh": "1200.5",
        },
    )
    assert status == 200 and body["data"]["status_changed"] is True
    await post_dg(env, {"site_id": "S1", "dg_number": "DG1", "timestamp": "2026-11-20T11:05:00Z", "status": "OFF"})
    batch = [
        packet(at="2026-11-20T10:01:00Z", kwh=1.0),  # 09:30–10:00: before the DG came on → grid
        packet(at="2026-11-20T10:31:00Z", kwh=1.0),  # 10:00–10:30: ON from 10:10, 20 of 30 minutes → 0.667 DG
        packet(at="2026-11-20T11:01:00Z", kwh=1.0),  # 10:30–11:00: on throughout → dg
        packet(at="2026-11-20T11:31:00Z", kwh=1.0),  # 11:00–11:30: on until 11:05, 5 minutes → 0.167 DG
        packet(at="2026-11-20T12:01:00Z", kwh=1.0),  # 11:30–12:00: off → grid
        packet(at="2026-11-20T09:31:00Z", kwh=1.0, source="dg"),  # the packet says so
    ]
    status, _ = await env.post(batch)
    assert status == 200
    stored = [(r.source, r.dg_kwh, r.charge, r.dg_charge) for r in await readings(env.db)]
    assert stored == [
        ("dg", Decimal("1.000"), Decimal("20.00"), Decimal("20.00")),
        ("grid", Decimal("0.000"), Decimal("8.00"), Decimal("0.00")),
        ("mix", Decimal("0.667"), Decimal("16.00"), Decimal("13.34")),  # 0.333 × 8.00 = 2.66 + 0.667 × 20.00
        ("dg", Decimal("1.000"), Decimal("20.00"), Decimal("20.00")),
        ("mix", Decimal("0.167"), Decimal("10.00"), Decimal("3.34")),  # 0.833 × 8.00 = 6.66 + 0.167 × 20.00
        ("grid", Decimal("0.000"), Decimal("8.00"), Decimal("0.00")),
    ]
    m = await meter(env.db, M1)
    assert m.dg_kwh == Decimal("2.834") and m.grid_kwh == Decimal("3.166")
    assert m.balance == Decimal("100.00") - Decimal("82.00")


async def test_a_dg_that_ran_13_minutes_of_a_half_hour_carries_13_30_of_its_energy(env: Env) -> None:
    base = {"site_id": "S1", "dg_number": "DG1"}
    await post_dg(env, {**base, "timestamp": "2026-11-20T10:17:00Z", "status": "ON"})
    await post_dg(env, {**base, "timestamp": "2026-11-20T10:30:00Z", "status": "OFF"})
    status, _ = await env.post([packet(at="2026-11-20T10:31:00Z", kwh=3.0)])  # 10:00–10:30
    assert status == 200
    [reading] = await readings(env.db)
    assert (reading.kwh, reading.dg_kwh) == (Decimal("3.000"), Decimal("1.300"))  # 13/30 of 3 kWh
    # 1.700 kWh × 8.00 + 1.300 kWh × 20.00
    assert (reading.charge, reading.dg_charge) == (Decimal("39.60"), Decimal("26.00"))
    m = await meter(env.db, M1)
    assert (m.grid_kwh, m.dg_kwh) == (Decimal("1.700"), Decimal("1.300"))


async def test_dg_post_keeps_latest_state_and_full_history(env: Env) -> None:
    base = {"site_id": "S1", "dg_number": "DG1"}
    for at, state in (("10:00", "ON"), ("10:30", "ON"), ("11:00", "OFF"), ("10:15", "OFF")):
        status, _ = await post_dg(env, {**base, "timestamp": f"2026-11-20T{at}:00Z", "status": state})
        assert status == 200
    async with env.db.reader() as session:
        dg = await session.get(DieselGenerator, ("S1", "DG1"))
        history = (
            await session.execute(select(DgStatusChange.at, DgStatusChange.status).order_by(DgStatusChange.at))
        ).all()
    assert dg is not None and dg.status == "OFF" and dg.status_at == dt.datetime(2026, 11, 20, 11, tzinfo=dt.UTC)
    assert [(at.strftime("%H:%M"), s) for at, s in history] == [
        ("10:00", "ON"),
        ("10:15", "OFF"),
        ("11:00", "OFF"),
    ]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"dg_number": "DG1", "timestamp": "2026-11-20T10:00:00Z"}, 400, "site_id"),
        ({"site_id": "S1", "timestamp": "2026-11-20T10:00:00Z"}, 400, "dg_number"),
        ({"site_id": "S1", "dg_number": "DG1"}, 400, "timestamp"),
        (
            {"site_id": "S1", "dg_number": "DG1", "timestamp": "2026-11-20T10:00:00Z", "status": "on"},
            400,
            "status",
        ),
        (
            {"site_id": "S1", "dg_number": "DG1", "timestamp": "2026-11-20T10:00:00Z", "fuel_litres": -1},
            400,
            "fuel_litres",
        ),
        (
            {"site_id": "S1", "dg_number": "DG1", "timestamp": "2026-11-20T10:00:00Z", "reading_kWh": "NaN"},
            400,
            "reading_kWh",
        ),
        ({"site_id": "S1", "dg_number": "DG1", "timestamp": "2026-11-20T10:00:00"}, 400, "timestamp"),
        ({"site_id": "S1", "dg_number": "DG1", "timestamp": "2026-12-20T10:00:00Z"}, 400, "timestamp"),
        ({"site_id": "S1", "dg_number": "DG9", "timestamp": "2026-11-20T10:00:00Z"}, 404, "dg_number"),
        ({"site_id": "S2", "dg_number": "DG1", "timestamp": "2026-11-20T10:00:00Z"}, 404, "dg_number"),
    ],
)
async def test_bad_dg_post_is_refused_and_changes_nothing(env: Env, body: dict, status: int, field: str) -> None:
    got, reply = await post_dg(env, body)
    assert got == status and field in reply["errors"], reply
    async with env.db.reader() as session:
        dg = await session.get(DieselGenerator, ("S1", "DG1"))
        changes = (await session.execute(select(func.count()).select_from(DgStatusChange))).scalar_one()
    assert dg is not None and dg.status == "OFF" and dg.fuel_litres is None and changes == 0


async def test_dg_register_cannot_go_backwards_and_device_tokens_cannot_post_dg(env: Env) -> None:
    base = {"site_id": "S1", "dg_number": "DG1"}
    assert (await post_dg(env, {**base, "timestamp": "2026-11-20T10:00:00Z", "reading_kWh": 100}))[0] == 200
    status, body = await post_dg(env, {**base, "timestamp": "2026-11-20T11:00:00Z", "reading_kWh": 99})
    assert status == 400 and "backwards" in body["errors"]["reading_kWh"][0]
    status, _ = await post_dg(env, {**base, "timestamp": "2026-11-20T11:00:00Z"}, secret=env.tokens[M1])
    assert status == 403


async def test_zero_balance_on_auto_cut_site_queues_one_cut(env: Env) -> None:
    status, _ = await env.post(packet(kwh=12.5))  # 100.00 - 100.00 = 0.00
    assert status == 200
    await env.post(packet(at="2026-11-20T01:01:00Z", kwh=1.0))
    await env.post(packet(meter_no=FOREIGN, kwh=20.0), secret=env.foreign_key)  # S2 has no auto-cut
    async with env.db.reader() as session:
        cuts = (await session.execute(select(Command))).scalars().all()
    assert [(c.meter_no, c.action, c.reason, c.state) for c in cuts] == [(M1, "cut", "zero balance", "requested")]
    assert (await meter(env.db, M1)).balance == Decimal("-8.00")


async def test_concurrent_posts_are_each_stored_exactly_once(env: Env) -> None:
    """Several hundred concurrent requests: every 2xx is stored once, balances add up exactly."""
    start = dt.datetime(2026, 11, 17, 0, 1, tzinfo=dt.UTC)
    bodies = []
    for i in range(300):
        meter_no = (M1, M2, M3)[i % 3]
        at = (start + dt.timedelta(minutes=30 * (i // 3))).isoformat()
        bodies.append(packet(meter_no=meter_no, at=at, kwh=round(0.1 + (i % 17) * 0.37, 3)))
    bodies += bodies[:60]  # replays, racing their originals
    results = await asyncio.gather(*(env.post(b) for b in bodies))
    assert all(status == 200 for status, _ in results)
    assert sum(1 for _, body in results if body["data"]["duplicate"]) == 60
    stored = await readings(env.db)
    assert len(stored) == 300
    for meter_no in (M1, M2, M3):
        mine = [r for r in stored if r.meter_no == meter_no]
        m = await meter(env.db, meter_no)
        assert m.balance == Decimal("100.00") - sum(r.charge for r in mine)
        assert m.grid_kwh == sum(r.kwh for r in mine)


async def test_full_writer_queue_answers_503_and_never_drops_an_acknowledged_reading(
    aiohttp_client: Any, database_url: str
) -> None:
    env = await make_env(aiohttp_client, database_url, writer_queue_packets=2, writer_batch_packets=2)
    start = dt.datetime(2026, 11, 19, 0, 1, tzinfo=dt.UTC)
    bodies = [packet(at=(start + dt.timedelta(minutes=30 * i)).isoformat()) for i in range(40)]
    responses = await asyncio.gather(*(env.client.post("/meter", json=b, headers=env.auth()) for b in bodies))
    statuses = [r.status for r in responses]
    assert set(statuses) <= {200, 503} and 503 in statuses and 200 in statuses
    assert all(r.headers["Retry-After"] == "1" for r in responses if r.status == 503)
    stored = {r.interval_start for r in await readings(env.db)}
    acknowledged = {
        dt.datetime.fromisoformat((await r.json())["data"]["interval_start"]) for r in responses if r.status == 200
    }
    assert stored == acknowledged
    await env.db.dispose()


async def test_acknowledged_readings_survive_a_restart(aiohttp_client: Any, sqlite_url: str) -> None:
    env = await make_env(aiohttp_client, sqlite_url)
    assert (await env.post(packet()))[0] == 200
    await env.client.close()
    again = await aiohttp_client(create_app(Settings(database_url=sqlite_url), clock=env.clock))
    response = await again.post("/meter", json=packet(), headers=env.auth())
    assert (await response.json())["message"] == "Duplicate reading"
    assert len(await readings(env.db)) == 1
    await env.db.dispose()


async def test_ingest_metrics_count_outcomes(env: Env) -> None:
    await env.post(packet())
    await env.post(packet())
    await env.post(packet(kwh=-1))
    text = await (await env.client.get("/metrics")).text()
    for line in (
        'gateway_ingest_packets_total{outcome="stored",reason=""}',
        'gateway_ingest_packets_total{outcome="duplicate",reason=""}',
        'gateway_ingest_packets_total{outcome="rejected",reason="invalid"}',
        "gateway_writer_commit_readings_bucket",
        "gateway_ingest_seconds_bucket",
        "gateway_writer_queue_readings",
    ):
        assert line in text


def commits() -> tuple[float, float]:
    """(group commits, requests committed) so far, from the writer's metrics."""
    count = REGISTRY.get_sample_value("gateway_writer_commit_requests_count") or 0.0
    return count, REGISTRY.get_sample_value("gateway_writer_commit_requests_sum") or 0.0


async def test_requests_that_reach_the_writer_a_few_loop_turns_apart_share_one_commit(env: Env) -> None:
    # Under load, requests whose bytes have arrived reach `submit` within a few turns of the event
    # loop of each other: they go into one group rather than one commit each.
    writer = env.client.app[WRITER]
    start = dt.datetime(2026, 11, 20, 11, 0, tzinfo=dt.UTC)

    async def submit_after(turns: int, meter_no: int) -> Any:
        for _ in range(turns):
            await asyncio.sleep(0)
        return await writer.submit([NewReading(meter_no, start, 500, None, frozenset({"S1"}))])

    before = commits()
    results = await asyncio.gather(*(submit_after(turns, m) for turns, m in ((0, M1), (1, M2), (2, M3))))
    after = commits()
    assert results == [[STORED]] * 3
    assert (after[0] - before[0], after[1] - before[1]) == (1, 3)
    assert len(await readings(env.db)) == 3


@pytest.mark.parametrize(
    ("kwh", "wh"),
    [
        (0.0, 0),
        (0.51, 510),
        (5.5, 5500),
        (1.0005, 1001),
        (0.0625, 63),
        (0.0004999, 0),
        (0.0005, 1),
        (499.9995, 500000),
        (123.456, 123456),
        (2.675, 2675),
        (1e-7, 0),
        (0.1 + 0.2, 300),
    ],
)
def test_watt_hours_are_the_decimal_value_rounded_half_up(kwh: float, wh: int) -> None:
    assert wh_of(kwh) == wh
    assert wh_of(kwh) == int(Decimal(repr(kwh)).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP).scaleb(3))


async def _working_table_pages(executor: PostgresExecutor) -> int:
    """Pages of the writer connection's `ingest_work` temp table (only that connection sees it)."""
    conn = executor._conn
    assert conn is not None
    pages: int = await executor._in_thread(conn.fetchval("SELECT pg_relation_size('ingest_work') / 8192"))
    return pages


async def test_postgres_writer_prepares_its_statements_and_vacuums_its_working_tables(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group's statements run prepared, planned once per connection. Each group deletes the
    last group's working rows, and a temp table's dead rows go only with a vacuum: unvacuumed,
    the tables grow with every group, and the planner, which sizes them by their pages,
    misjudged them (it walked every meter to update a group's few)."""
    await _truncate_all(postgres_url)
    db = Database(postgres_url)
    await sites.add_site(db, site_id="S1", name="Green Park", region="North")
    for n in range(50):
        await meters.add_meter(db, meter_no=M1 + n, site_id="S1", unit_no=f"U{n}")
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    recorded = 0

    async def largest_table_over_40_groups(vacuum_after: int) -> int:
        nonlocal recorded
        monkeypatch.setattr(run, "VACUUM_AFTER_READINGS", vacuum_after)
        executor = PostgresExecutor(db)
        largest = 0
        try:
            for _ in range(40):
                group = [
                    NewReading(M1 + n % 50, start + (n // 50) * dt.timedelta(minutes=30), 100, None, None)
                    for n in range(recorded, recorded + 100)
                ]
                recorded += len(group)
                assert await executor.record(group, NOW) == [STORED] * len(group)
                largest = max(largest, await _working_table_pages(executor))
            # The group's statements ran prepared, each planned once (a generic plan, reused).
            assert executor._conn is not None
            query = "SELECT name, generic_plans FROM pg_prepared_statements WHERE name LIKE 'ingest_%'"
            plans = await executor._in_thread(executor._conn.fetch(query))
            assert {row["name"] for row in plans} == set(run.prepared_names(executor._statements).values())
            assert sum(row["generic_plans"] for row in plans) >= 40 * 6  # lock, classify, 4 of the record steps
        finally:
            await executor.close()
        return largest

    try:
        vacuumed = await largest_table_over_40_groups(vacuum_after=200)
        never = await largest_table_over_40_groups(vacuum_after=10**9)
        assert never > 4 * vacuumed, (vacuumed, never)
        async with db.reader() as session:
            assert await session.scalar(select(func.count()).select_from(Reading)) == recorded == 8000
    finally:
        await db.dispose()
