"""The energy audit of a site's month against hand-computed figures, over real HTTP, on both
databases; bulk meters (an incomer, a DG's meter) stored but never billed.

Society AUD (Asia/Kolkata, grid 8.00, DG 20.00, a fixed 1.00 per flat per day from 1 March 2025),
DG1 with its energy meter 901, the grid incomer 900, flats 1, 2 and 3. Each line is a half hour
from its local start:

    Mar 01 10:00  incomer 10.0; flats 3.0 + 2.5 + 4.0 = 9.5 grid             → loss 0.5 (5.00 %)
    Mar 01 19:55  DG1 fuel 50.00, register 1000.0; ON 20:00 to 21:00
    Mar 01 20:00  DG meter 4.0; flat 1 2.0 (DG); incomer 0.0
    Mar 01 20:30  DG meter 4.0; flat 2 1.5 (DG); incomer 0.0                  → DG 8.0 vs 3.5: 4.5 (56.25 %)
    Mar 01 21:05  DG1 fuel 47.50, register 1008.0                              → 2.50 l: 3.20 kWh/l
    Mar 02 09:00  incomer 12.0; flats 4.0 + 3.0 + 3.5 = 10.5 grid             → loss 1.5 (12.50 %)
    Mar 02 10:00  DG1 fuel 97.50 (a refill of 50.00, not negative use)
    Mar 02 17:55  DG1 fuel 97.50, register 1008.0; ON 18:00 to 18:30
    Mar 02 18:00  DG meter 3.5; flat 3 2.0 (DG)                               → DG 3.5 vs 2.0: 1.5 (42.86 %)
    Mar 02 18:35  DG1 fuel 96.00, register 1011.0 (the meter's 3.5 counts)    → 1.50 l: 2.33 kWh/l

Month (now: Mar 02 23:00): incomer 22.0 vs 20.0 → 2.0 (9.09 %); DG 11.5 vs 5.5 → 6.0 (52.17 %);
fuel 4.00 l, refills 50.00 l, 2.88 kWh/l (11.5 / 4 = 2.875, to the even hundredth).
"""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import update

from gateway.app_keys import CLOCK
from schemas.admin_replies import EnergyAuditReply, SiteReport
from storage import days
from storage.clock import FixedClock
from storage.db.engine import Database
from storage.db.models import LedgerEntry, Meter, Reading
from storage.registry import dgs, meters, sites
from storage.registry import keys as key_registry
from tests.test_statements import ADMIN, Unit, ist

BULK = {900: ("incomer", None), 901: ("dg", "DG1")}
MARCH_1 = {
    "day": "2025-03-01", "incomer_kwh": "10.000", "flats_grid_kwh": "9.500", "grid_loss_kwh": "0.500",
    "grid_loss_pct": "5.00", "dg_kwh": "8.000", "flats_dg_kwh": "3.500", "dg_loss_kwh": "4.500",
    "dg_loss_pct": "56.25", "fuel_used_litres": "2.50", "refill_litres": "0.00", "dg_kwh_per_litre": "3.20",
}  # fmt: skip
MARCH_2 = {
    "day": "2025-03-02", "incomer_kwh": "12.000", "flats_grid_kwh": "10.500", "grid_loss_kwh": "1.500",
    "grid_loss_pct": "12.50", "dg_kwh": "3.500", "flats_dg_kwh": "2.000", "dg_loss_kwh": "1.500",
    "dg_loss_pct": "42.86", "fuel_used_litres": "1.50", "refill_litres": "50.00", "dg_kwh_per_litre": "2.33",
}  # fmt: skip
MONTH = {
    "incomer_kwh": "22.000", "flats_grid_kwh": "20.000", "grid_loss_kwh": "2.000", "grid_loss_pct": "9.09",
    "dg_kwh": "11.500", "flats_dg_kwh": "5.500", "dg_loss_kwh": "6.000", "dg_loss_pct": "52.17",
    "fuel_used_litres": "4.00", "refill_litres": "50.00", "dg_kwh_per_litre": "2.88",
}  # fmt: skip


class Society(Unit):
    """Unit's readings, plus the DG controller's posts."""

    async def dg(self, at: str, **fields: Any) -> None:
        self.clock.set(ist(at))
        body = {"site_id": "AUD", "dg_number": "DG1", "timestamp": ist(at).isoformat(), **fields}
        response = await self.client.post("/dg", json=body, headers={"Authorization": f"Bearer {self.keys['ingest']}"})
        assert response.status == 200, await response.text()


async def audited_month(client: TestClient, db: Database) -> Society:
    """Play the two days of the module docstring."""
    clock: FixedClock = client.app[CLOCK]  # type: ignore[assignment]
    clock.set(ist("2025-02-20 09:00"))
    await sites.add_site(db, site_id="AUD", name="Audited", region="North")
    await sites.add_site(db, site_id="OTHER", name="Other", region="North")
    await dgs.add_dg(db, site_id="AUD", dg_no="DG1")
    tokens = {}
    for meter_no in (1, 2, 3, 900, 901):
        role, dg_no = BULK.get(meter_no, ("flat", None))
        created = await meters.add_meter(
            db, meter_no=meter_no, site_id="AUD", unit_no=f"U{meter_no}", role=role, dg_no=dg_no
        )
        tokens[meter_no] = created.token
    async with db.transaction() as session:  # registered on the injected clock's day, not today
        await session.execute(update(Meter).values(created_at=clock.now()))
        await session.execute(update(LedgerEntry).values(created_at=clock.now()))
    roles = ("admin", "operate", "read", "ingest")
    keys = {role: (await key_registry.create_key(db, name=role, role=role, sites=["AUD"])).key for role in roles}
    society = Society(client, keys, tokens)
    fixed = {"grid": "8.00", "dg": "20.00", "fixed_daily": "1.00", "effective_from": "2025-03-01 00:00:00"}
    await society.call("POST", f"{ADMIN}/sites/AUD/tariffs", fixed)
    for meter_no, kwh in ((900, "10"), (1, "3"), (2, "2.5"), (3, "4")):
        await society.reading(meter_no, "2025-03-01 10:00", kwh)
    await society.dg("2025-03-01 19:55", fuel_litres=50, reading_kWh=1000)
    await society.dg("2025-03-01 20:00", status="ON")
    for meter_no, start, kwh in ((900, "20:00", "0"), (1, "20:00", "2"), (901, "20:00", "4"),
                                 (900, "20:30", "0"), (2, "20:30", "1.5"), (901, "20:30", "4")):  # fmt: skip
        await society.reading(meter_no, f"2025-03-01 {start}", kwh)
    await society.dg("2025-03-01 21:00", status="OFF")
    await society.dg("2025-03-01 21:05", fuel_litres=47.5, reading_kWh=1008)
    for meter_no, kwh in ((900, "12"), (1, "4"), (2, "3"), (3, "3.5")):
        await society.reading(meter_no, "2025-03-02 09:00", kwh)
    await society.dg("2025-03-02 10:00", fuel_litres=97.5)
    await society.dg("2025-03-02 17:55", fuel_litres=97.5, reading_kWh=1008)
    await society.dg("2025-03-02 18:00", status="ON")
    await society.reading(901, "2025-03-02 18:00", "3.5")
    await society.reading(3, "2025-03-02 18:00", "2")
    await society.dg("2025-03-02 18:30", status="OFF")
    await society.dg("2025-03-02 18:35", fuel_litres=96, reading_kWh=1011)
    await days.roll_up_due(db, now=ist("2025-03-02 00:20"))  # March 1: the fixed charges
    clock.set(ist("2025-03-02 23:00"))
    return society


async def get(society: Society, path: str, key: str = "admin") -> tuple[int, Any]:
    response = await society.client.get(path, headers={"X-API-Key": society.keys[key]})
    return response.status, await response.json() if response.content_type == "application/json" else None


async def test_the_energy_audit_of_a_month_per_day_and_in_total(simulated: TestClient, db: Database) -> None:
    society = await audited_month(simulated, db)
    status, body = await get(society, f"{ADMIN}/sites/AUD/audit?month=2025-03")
    assert status == 200, body
    EnergyAuditReply().load(body)  # the reply is what the spec says
    data = body["data"]
    assert (data["site_id"], data["month"], data["incomer_meters"], data["dg_sources"]) == (
        "AUD", "2025-03", 1, {"DG1": "meter"}
    )  # fmt: skip
    assert data["days"] == [MARCH_1, MARCH_2]
    assert data["totals"] == MONTH
    metrics = await (await simulated.get("/metrics")).text()
    assert 'gateway_energy_loss_percent{site_id="AUD",source="grid"} 9.09' in metrics
    assert 'gateway_energy_loss_percent{site_id="AUD",source="dg"} 52.17' in metrics

    # The site report carries the month's totals, as JSON and as CSV.
    status, report = await get(society, f"{ADMIN}/sites/AUD/report?month=2025-03")
    SiteReport().load(report)
    assert [line["meter_no"] for line in report["data"]["meters"]] == ["1", "2", "3"]  # the flats only
    assert report["data"]["energy_audit"] == MONTH
    response = await simulated.get(
        f"{ADMIN}/sites/AUD/report?month=2025-03&format=csv", headers={"X-API-Key": society.keys["admin"]}
    )
    table, audit = (await response.text()).split("\n\n")
    assert [line.split(",")[0] for line in table.splitlines()] == ["meter_no", "1", "2", "3", "total"]
    assert audit.splitlines()[:2] == ["energy_audit,month", "incomer_kwh,22.000"]
    assert "grid_loss_pct,9.09" in audit.splitlines()


async def test_bulk_meters_are_read_but_never_billed(simulated: TestClient, db: Database) -> None:
    society = await audited_month(simulated, db)
    async with db.reader() as session:
        for meter_no in BULK:
            meter = await session.get(Meter, meter_no)
            assert meter is not None and (meter.balance, meter.relay_on) == (0, True)
        rows = (await session.execute(Reading.__table__.select())).all()  # type: ignore[attr-defined]
    bulk_rows = [row for row in rows if row.meter_no in BULK]
    assert len(bulk_rows) == 7 and {row.charge for row in bulk_rows} == {0}
    # Flat 1 on March 1: 3 kWh grid at 8.00 and 2 kWh DG at 20.00, and the day's fixed charge.
    _, ledger = await get(society, f"{ADMIN}/meters/1/ledger")
    assert [e["amount"] for e in ledger["data"]["entries"] if e["kind"] == "fixed"] == ["-1.00"]
    _, bulk_ledger = await get(society, f"{ADMIN}/meters/900/ledger")
    assert [e["kind"] for e in bulk_ledger["data"]["entries"]] == ["opening"]
    # iSocietyManager bills every meter of call 1: it sees the flats only.
    _, readings = await get(society, "/api/v1/site/readings?site_id=AUD", key="read")
    assert sorted(m["meter_no"] for m in readings["data"]) == ["1", "2", "3"]
    # Nor is a bulk meter a meter of the other Factech calls: no reading, recharge or switching.
    status, reply = await get(society, "/api/v1/meter/reading?meter_no=900", key="read")
    assert (status, reply["message"]) == (404, "Not Found")
    for path, body in (
        ("/api/v1/meter/recharge", {"site_id": "AUD", "meter_no": "900", "amount": "100.00"}),
        ("/api/v1/meter/stop", {"site_id": "AUD", "meter_no": "901"}),
    ):
        response = await simulated.post(path, json=body, headers={"X-API-Key": society.keys["operate"]})
        assert response.status == 404, path
    response = await simulated.post(
        f"{ADMIN}/meters/900/adjustments",
        json={"amount": "5.00", "reason": "x"},
        headers={"X-API-Key": society.keys["admin"]},
    )
    assert (response.status, (await response.json())["message"]) == (
        400, "meter 900 is a bulk meter (incomer): it is never billed and has no balance"
    )  # fmt: skip
    async with db.reader() as session:
        assert [(await session.get_one(Meter, m)).balance for m in BULK] == [0, 0]
        assert (await session.get_one(Meter, 901)).relay_on


async def test_missing_data_is_unknown_not_zero(simulated: TestClient, db: Database) -> None:
    clock: FixedClock = simulated.app[CLOCK]  # type: ignore[assignment]
    clock.set(ist("2025-03-01 09:00"))
    await sites.add_site(db, site_id="AUD", name="Audited", region="North")
    created = await meters.add_meter(db, meter_no=1, site_id="AUD", unit_no="U1")
    key = (await key_registry.create_key(db, name="admin", role="admin", sites=["AUD"])).key
    society = Society(simulated, {"admin": key}, {1: created.token})
    await society.reading(1, "2025-03-01 10:00", "2")
    status, body = await get(society, f"{ADMIN}/sites/AUD/audit?month=2025-03")
    assert status == 200
    (day,) = body["data"]["days"]
    assert (day["flats_grid_kwh"], day["incomer_kwh"], day["grid_loss_kwh"], day["grid_loss_pct"]) == (
        "2.000", None, None, None
    )  # no incomer: the loss is unknown  # fmt: skip
    assert (day["dg_kwh"], day["fuel_used_litres"], day["dg_kwh_per_litre"]) == (None, None, None)  # no DG
    assert body["data"]["totals"]["incomer_kwh"] is None and body["data"]["incomer_meters"] == 0
    assert 'gateway_energy_loss_percent{site_id="AUD"' not in await (await simulated.get("/metrics")).text()


async def test_flats_energy_counts_on_the_local_day_of_its_half_hour(simulated: TestClient, db: Database) -> None:
    """The half hours either side of local midnight, which are one UTC date (18:30 UTC is
    00:00 IST), count on their own local day; another site's flats and this site's bulk meter
    never count. Both databases, each with its own plan (`_flats_per_day`)."""
    clock: FixedClock = simulated.app[CLOCK]  # type: ignore[assignment]
    clock.set(ist("2025-03-01 09:00"))
    await sites.add_site(db, site_id="AUD", name="Audited", region="North")
    await sites.add_site(db, site_id="OTHER", name="Other", region="North")
    tokens = {
        meter_no: (await meters.add_meter(db, meter_no=meter_no, site_id=site, unit_no=f"U{meter_no}", role=role)).token
        for meter_no, site, role in ((1, "AUD", "flat"), (900, "AUD", "incomer"), (2, "OTHER", "flat"))
    }
    key = (await key_registry.create_key(db, name="admin", role="admin", sites=["AUD"])).key
    society = Society(simulated, {"admin": key}, tokens)
    for meter_no, start, kwh in (
        (1, "2025-03-01 23:00", "1.25"), (1, "2025-03-01 23:30", "2"), (1, "2025-03-02 00:00", "4"),
        (1, "2025-03-02 05:00", "0.5"), (1, "2025-03-02 05:30", "8"),
        (900, "2025-03-01 23:30", "50"), (900, "2025-03-02 00:00", "60"), (2, "2025-03-02 00:00", "70"),
    ):  # fmt: skip
        await society.reading(meter_no, start, kwh)
    clock.set(ist("2025-03-03 12:00"))
    status, body = await get(society, f"{ADMIN}/sites/AUD/audit?month=2025-03")
    assert status == 200, body
    days = {day["day"]: (day["flats_grid_kwh"], day["incomer_kwh"]) for day in body["data"]["days"]}
    assert days == {
        "2025-03-01": ("3.250", "50.000"), "2025-03-02": ("12.500", "60.000"), "2025-03-03": ("0.000", None)
    }  # fmt: skip
    assert body["data"]["totals"]["flats_grid_kwh"] == "15.750"


async def test_bad_energy_audit_requests_are_refused(simulated: TestClient, db: Database) -> None:
    society = await audited_month(simulated, db)
    for query in ("month=2025-3", "", "month=2025-04", "month=March", "month=2025-03&format=csv"):
        status, body = await get(society, f"{ADMIN}/sites/AUD/audit?{query}")
        assert status == 400 and body["status"] == "error" and body["message"], query
    status, body = await get(society, f"{ADMIN}/sites/NOPE/audit?month=2025-03")
    assert status == 404 and "NOPE" in body["message"]
    status, body = await get(society, f"{ADMIN}/sites/OTHER/audit?month=2025-03")  # another site: as unknown
    assert status == 404
    status, _ = await get(society, f"{ADMIN}/sites/AUD/audit?month=2025-03", key="read")
    assert status == 403
