"""Data-quality flags of a site-day over HTTP, on both databases, against hand-made data.

Site S1 (Asia/Kolkata), meters 1-3, 0.5 kWh every half hour for the 14 days before 20 Feb 2025;
on the 20th: meter 1 has a 3.0 kWh half hour at 10:00 (above 4 × its median 0.5) and a
conflicting packet; meter 2 reads zero from 00:00 to 06:00 (12 half hours) while the others
consume; meter 3 misses its last 8 half hours and all its 40 readings came five hours late.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import insert

from gateway.app_keys import CLOCK
from schemas.admin_replies import SiteQuality
from storage.clock import FixedClock
from storage.db.engine import Database
from storage.db.models import Reading, ReadingConflict
from storage.registry import keys
from tests.daydata import add_readings, at, make_site, whole_day

TZ = "Asia/Kolkata"
DAY = "2025-02-20"


def shifted(days: int) -> str:
    return (dt.date.fromisoformat(DAY) + dt.timedelta(days=days)).isoformat()


async def timely(db: Database, readings: dict[tuple[int, dt.datetime], str]) -> None:
    """Readings each received a minute after its half hour ended."""
    rows = [
        {"meter_no": meter_no, "interval_start": start, "kwh": Decimal(kwh), "source": "grid",
         "charge": Decimal("4.00"), "received_at": start + dt.timedelta(minutes=31)}
        for (meter_no, start), kwh in readings.items()
    ]  # fmt: skip
    async with db.transaction() as session:
        await session.execute(insert(Reading), rows)


async def quality_world(db: Database) -> str:
    await make_site(db, meters=(1, 2, 3))
    await make_site(db, "S2", meters=(9,))
    history = [start for back in range(14, 0, -1) for start in whole_day(TZ, shifted(-back))]
    starts = whole_day(TZ, DAY)
    await timely(db, {(m, start): "0.500" for m in (1, 2, 3) for start in history})
    await timely(db, {(1, start): "3.000" if start == starts[20] else "0.500" for start in starts})
    await timely(db, {(2, start): "0.000" if start < starts[12] else "0.500" for start in starts})
    await add_readings(db, 3, starts[:40], received_at=at(TZ, f"{DAY} 20:00") + dt.timedelta(hours=5))
    async with db.transaction() as session:
        conflict = {"stored_kwh": 1, "offered_kwh": 2, "received_at": starts[4]}
        session.add(ReadingConflict(meter_no=1, interval_start=starts[3], **conflict))
    return (await keys.create_key(db, name="admin", role="admin", sites=["S1"])).key


async def get(client: TestClient, key: str, query: str, site: str = "S1") -> tuple[int, Any]:
    response = await client.get(f"/api/v1/admin/sites/{site}/quality?{query}", headers={"X-API-Key": key})
    return response.status, await response.json()


async def test_a_site_days_flags_and_their_counts_in_metrics(simulated: TestClient, db: Database) -> None:
    key = await quality_world(db)
    clock: FixedClock = simulated.app[CLOCK]  # type: ignore[assignment]
    clock.set(at(TZ, "2025-02-21 06:00"))
    status, body = await get(simulated, key, f"day={DAY}")
    assert status == 200, body
    SiteQuality().load(body)
    data = body["data"]
    assert (data["day"], data["meters"]) == (DAY, 3)
    flags = [(f["meter_no"], f["kind"], f["intervals"]) for f in data["flags"]]
    assert flags == [
        ("1", "spike", 1),
        ("1", "conflict", 1),
        ("2", "zero_run", 12),
        ("3", "missing", 8),
        ("3", "late", 40),
    ]
    assert data["flags"][0]["detail"] == "10:00 3.000 kWh (median 0.500)"
    assert data["counts"] == {"missing": 1, "spike": 1, "zero_run": 1, "late": 1, "conflict": 1}
    metrics = await (await simulated.get("/metrics")).text()
    assert 'gateway_quality_flags{kind="zero_run",site_id="S1"} 1.0' in metrics

    earlier = (await get(simulated, key, "day=2025-02-10"))[1]["data"]  # an ordinary day: nothing to flag
    assert earlier["flags"] == [] and earlier["meters"] == 3


async def test_bad_quality_requests_are_refused(simulated: TestClient, db: Database) -> None:
    key = await quality_world(db)
    simulated.app[CLOCK].set(at(TZ, "2025-02-21 06:00"))  # type: ignore[attr-defined]
    for query in ("day=20-02-2025", "", "day=2025-02-22"):
        status, body = await get(simulated, key, query)
        assert status == 400 and list(body["errors"]) == ["day"], (query, body)
    assert (await get(simulated, key, f"day={DAY}", site="S2"))[0] == 404
