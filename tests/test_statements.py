"""Monthly statements over real HTTP, against hand-computed expectations, on both databases.

One unit through February 2025 (Asia/Kolkata), with the gateway's clock moved by hand:

    Jan 25 10:00  adjustment +100.00 ("opening credit")
    Jan 31 23:00  1 kWh grid at 8.00                      = 8.00   → February opens at 92.00
    Feb 01 09:00  a tariff row from Feb 02 00:00 adds a fixed 1.00 per day (grid 8.00, DG 20.00)
    Feb 01 10:00  2 kWh grid at 8.00                      = 16.00
    Feb 02 12:00  1 kWh grid at 8.00                      = 8.00
    Feb 10 10:00  grid tariff to 10.00 (mid-month, mid-day; the fixed charge stays)
    Feb 10 10:00  3 kWh grid at 10.00                     = 30.00
    Feb 10 10:30  1 kWh DG at 20.00                       = 20.00
    Feb 14 20:00  2.5 kWh grid at 10.00                   = 25.00  → −7.00: a cut, deferred by 18:00-08:00
    Feb 14 21:00  recharge 50.00 (cancels the deferred cut) → 43.00
    Feb 20 12:00  meter 1 replaced by meter 2; after 18 fixed charges (Feb 02-19) 25.00 moves
    Feb 25 10:00  meter 2: 1 kWh grid at 10.00            = 10.00
    Mar 01 00:20  rolled: meter 2 paid fixed charges for Feb 20-28 (9.00) → 6.00

Meter 1: 92.00 + 50.00 − 117.00 (16 + 8 + 30 + 20 + 25 + 18 fixed) − 25.00 moved = 0.00.
Meter 2: 0.00 + 0.00 − 19.00 (10 + 9 fixed) + 25.00 moved in = 6.00.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import update

from gateway.app import create_app
from gateway.app_keys import CLOCK, DISPATCHER
from schemas.admin_replies import StatementReply
from storage import days
from storage.clock import FixedClock
from storage.db.engine import Database
from storage.db.models import LedgerEntry, Meter, Site
from storage.money import ledger
from storage.reads.statements import Month, Statement, StatementDay
from storage.registry import keys as key_registry
from storage.registry import meters, sites
from tests.command_setup import MockHeadEnd
from tests.portaldata import NOW as PORTAL_NOW
from tests.portaldata import RESIDENT, log_in, portal_settings, seed_world

IST = ZoneInfo("Asia/Kolkata")
ADMIN = "/api/v1/admin"


def ist(text: str) -> dt.datetime:
    """A Kolkata wall-clock time 'YYYY-MM-DD HH:MM' as an aware UTC instant."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=IST).astimezone(dt.UTC)


class Unit:
    """The society S1, its keys and meter tokens, and the gateway's clock."""

    def __init__(self, client: TestClient, keys: dict[str, str], tokens: dict[int, str]) -> None:
        self.client, self.keys, self.tokens = client, keys, tokens
        self.clock: FixedClock = client.app[CLOCK]  # type: ignore[assignment]
        self.transaction_id = ""  # the month's recharge

    async def call(self, method: str, path: str, body: Any = None, key: str = "admin") -> Any:
        response = await self.client.request(method, path, json=body, headers={"X-API-Key": self.keys[key]})
        assert response.status in (200, 201), await response.text()
        return await response.json()

    async def reading(self, meter_no: int, start: str, kwh: str, source: str | None = None) -> None:
        """The half hour from local `start`, posted just after it ends."""
        end = ist(start) + dt.timedelta(minutes=30)
        self.clock.set(end + dt.timedelta(minutes=1))
        packet: dict[str, Any] = {
            "id": meter_no,
            "timestamp": (end + dt.timedelta(minutes=1)).isoformat().replace("+00:00", "Z"),
            "reading_kWh": float(kwh),
        }
        if source:
            packet["source"] = source
        response = await self.client.post(
            "/meter", json=packet, headers={"Authorization": f"Bearer {self.tokens[meter_no]}"}
        )
        assert response.status == 200, await response.text()

    async def statement(self, meter_no: int, month: str) -> dict[str, Any]:
        body = await self.call("GET", f"{ADMIN}/meters/{meter_no}/statement?month={month}")
        StatementReply().load(body)  # the reply is what the spec says
        return body["data"]


async def february(gateway: TestClient, db: Database) -> Unit:
    """Play the month of the module docstring; returns the unit with its two meters' tokens."""
    clock: FixedClock = gateway.app[CLOCK]  # type: ignore[assignment]
    clock.set(ist("2025-01-20 09:00"))
    await sites.add_site(db, site_id="S1", name="Society S1", region="North")  # grid 8.00, DG 20.00
    created = await meters.add_meter(db, meter_no=1, site_id="S1", unit_no="A-1", consumer_name="Asha")
    async with db.transaction() as session:  # registered on the injected clock's day, not today
        await session.execute(update(Meter).where(Meter.meter_no == 1).values(created_at=clock.now()))  # type: ignore[arg-type]
        await session.execute(update(LedgerEntry).values(created_at=clock.now()))
        await session.execute(update(Site).values(created_at=clock.now()))
    keys = {
        role: (await key_registry.create_key(db, name=role, role=role, sites=["S1"])).key
        for role in ("admin", "operate")
    }
    unit = Unit(gateway, keys, {1: created.token})
    clock.set(ist("2025-01-25 10:00"))
    await unit.call("POST", f"{ADMIN}/meters/1/adjustments", {"amount": "100.00", "reason": "opening credit"})
    await unit.reading(1, "2025-01-31 23:00", "1")
    clock.set(ist("2025-02-01 09:00"))
    fixed = {"grid": "8.00", "dg": "20.00", "fixed_daily": "1.00", "effective_from": "2025-02-02 00:00:00"}
    await unit.call("POST", f"{ADMIN}/sites/S1/tariffs", fixed)
    await unit.reading(1, "2025-02-01 10:00", "2")
    await unit.reading(1, "2025-02-02 12:00", "1")
    await days.roll_up_due(db, now=ist("2025-02-10 00:20"))  # fixed charges for Feb 02-09
    clock.set(ist("2025-02-10 10:00"))
    await unit.call("PATCH", f"{ADMIN}/sites/S1", {"tariff_grid": "10.00"})
    await unit.reading(1, "2025-02-10 10:00", "3")
    await unit.reading(1, "2025-02-10 10:30", "1", source="dg")
    clock.set(ist("2025-02-14 12:00"))
    await unit.call("PATCH", f"{ADMIN}/sites/S1", {"no_cut_hours": "18:00-08:00"})
    await days.roll_up_due(db, now=ist("2025-02-14 00:20"))  # Feb 10-13
    await unit.reading(1, "2025-02-14 20:00", "2.5")  # −7.00: a cut falls due inside the window
    assert await gateway.app[DISPATCHER].run() == []  # deferred to 08:00
    clock.set(ist("2025-02-14 21:00"))
    recharge = await unit.call(
        "POST", "/api/v1/meter/recharge", {"site_id": "S1", "meter_no": "1", "amount": "50.00"}, key="operate"
    )
    unit.transaction_id = recharge["data"]["transaction_id"]
    await days.roll_up_due(db, now=ist("2025-02-20 00:20"))  # Feb 14-19
    clock.set(ist("2025-02-20 12:00"))
    change = {"site_id": "S1", "old_meter_no": "1", "new_meter_no": "2", "meter_change_date": "2025-02-20"}
    replaced = await unit.call("POST", f"{ADMIN}/meter-changes", change)
    unit.tokens[2] = replaced["data"]["token"]
    await unit.reading(2, "2025-02-25 10:00", "1")
    clock.set(ist("2025-03-01 00:20"))
    await days.roll_up_due(db, now=clock.now())  # Feb 20-28
    return unit


def day(date: str, grid: str = "0.000", grid_amount: str = "0.00", *, rate: str = "8.00", fixed: str = "1.00",
        dg: str = "0.000", dg_amount: str = "0.00", intervals: int = 0) -> dict[str, Any]:  # fmt: skip
    return {
        "day": date, "grid_kwh": grid, "grid_rate": rate, "grid_amount": grid_amount, "dg_kwh": dg,
        "dg_rate": "20.00", "dg_amount": dg_amount, "fixed_charge": fixed, "intervals": intervals,
    }  # fmt: skip


async def test_statements_of_a_month_with_a_tariff_change_a_deferred_cut_and_a_replacement(
    gateway: TestClient, mock: MockHeadEnd, db: Database
) -> None:
    unit = await february(gateway, db)

    january = await unit.statement(1, "2025-01")
    assert (january["opening_balance"], january["closing_balance"]) == ("0.00", "92.00")
    assert [(a["amount"], a["reason"]) for a in january["adjustments"]] == [("100.00", "opening credit")]
    assert [d for d in january["days"] if d["intervals"]] == [
        day("2025-01-31", "1.000", "8.00", fixed="0.00", intervals=1)
    ]

    one = await unit.statement(1, "2025-02")
    assert (one["opening_balance"], one["closing_balance"]) == ("92.00", "0.00")
    expected_days = [day("2025-02-01", "2.000", "16.00", fixed="0.00", intervals=1)]
    expected_days.append(day("2025-02-02", "1.000", "8.00", intervals=1))
    expected_days += [day(f"2025-02-{d:02}") for d in range(3, 10)]
    expected_days.append(
        day("2025-02-10", "3.000", "30.00", rate="10.00", dg="1.000", dg_amount="20.00", intervals=2)
    )  # only the tariff that priced the day's readings: 10.00 from 10:00
    expected_days += [day(f"2025-02-{d:02}", rate="10.00") for d in range(11, 14)]
    expected_days.append(day("2025-02-14", "2.500", "25.00", rate="10.00", intervals=1))
    expected_days += [day(f"2025-02-{d:02}", rate="10.00") for d in range(15, 20)]
    expected_days.append(day("2025-02-20", rate="10.00", fixed="0.00"))  # replaced at noon: no fixed charge
    assert one["days"] == expected_days
    assert one["recharges"] == [
        {"at": "2025-02-14T15:30:00+00:00", "amount": "50.00", "transaction_id": unit.transaction_id,
         "reason": one["recharges"][0]["reason"]}
    ]  # fmt: skip
    assert [(a["amount"], a["reason"]) for a in one["adjustments"]] == [("-25.00", "moved to meter 2")]
    assert [(s["at"], s["what"]) for s in one["supply"]] == [("2025-02-14T15:01:00+00:00", "cut deferred")]
    assert "2025-02-15T02:30:00Z" in one["supply"][0]["reason"]  # 08:00 IST
    assert one["notes"] == ["replaced by meter 2 on 2025-02-20"]
    assert one["totals"] == {
        "grid_kwh": "8.500", "dg_kwh": "1.000", "grid_amount": "79.00", "dg_amount": "20.00",
        "fixed_charges": "18.00", "debits": "117.00", "credits": "50.00", "adjustments": "-25.00",
    }  # fmt: skip
    assert one["check"] == {
        "computed_closing": "0.00",
        "balanced": True,
        "line": "92.00 + 50.00 − 117.00 − 25.00 = 0.00 (ok)",
    }

    two = await unit.statement(2, "2025-02")
    assert (two["opening_balance"], two["closing_balance"]) == ("0.00", "6.00")
    assert two["check"]["balanced"] and two["totals"]["debits"] == "19.00"
    assert [(a["amount"], a["reason"]) for a in two["adjustments"]] == [("25.00", "moved from meter 1")]
    assert [d["day"] for d in two["days"]] == [f"2025-02-{d}" for d in range(20, 29)]
    assert two["days"][5] == day("2025-02-25", "1.000", "10.00", rate="10.00", intervals=1)
    assert two["notes"] == ["replaces meter 1 from 2025-02-20"]
    # The statement's closing balance is the meter's balance once the month is over and rolled.
    for meter_no, closing in ((1, "0.00"), (2, "6.00")):
        check = await ledger.check_ledger(db, meter_no=meter_no)
        assert check.ok and check.balance == Decimal(closing)


async def test_the_statement_as_csv_ends_with_its_check_line(
    gateway: TestClient, mock: MockHeadEnd, db: Database
) -> None:
    unit = await february(gateway, db)
    response = await gateway.get(
        f"{ADMIN}/meters/1/statement?month=2025-02&format=csv", headers={"X-API-Key": unit.keys["admin"]}
    )
    assert response.status == 200 and response.content_type == "text/csv"
    rows = list(csv.reader(io.StringIO(await response.text())))
    assert rows[0] == ["statement", "1", "2025-02"]
    assert ["opening_balance", "92.00"] in rows
    assert ["2025-02-10", "3.000", "10.00", "30.00", "1.000", "20.00", "20.00", "1.00", "2"] in rows
    assert ["total", "8.500", "", "79.00", "1.000", "", "20.00", "18.00", "5"] in rows
    assert ["2025-02-14 21:00", "50.00", unit.transaction_id] == rows[
        rows.index(["recharge_at", "amount", "transaction_id", "reason"]) + 1
    ][:3]
    assert rows[-2:] == [["closing_balance", "0.00"], ["check", "92.00 + 50.00 − 117.00 − 25.00 = 0.00 (ok)"]]


async def test_bad_months_and_other_sites_meters_are_refused(gateway: TestClient, db: Database) -> None:
    await sites.add_site(db, site_id="S1", name="S1", region="North")
    await sites.add_site(db, site_id="S2", name="S2", region="North")
    await meters.add_meter(db, meter_no=7, site_id="S2", unit_no="B-7")
    await meters.add_meter(db, meter_no=1, site_id="S1", unit_no="A-1")
    key = (await key_registry.create_key(db, name="admin", role="admin", sites=["S1"])).key
    for query, field in (("month=2025-13", "month"), ("month=25-01", "month"), ("", "month"),
                         ("month=2025-01&format=pdf", "format"), ("month=2025-03", "month")):  # fmt: skip
        response = await gateway.get(f"{ADMIN}/meters/1/statement?{query}", headers={"X-API-Key": key})
        body = await response.json()
        assert response.status == 400 and list(body["errors"]) == [field], (query, body)
    response = await gateway.get(f"{ADMIN}/meters/7/statement?month=2025-01", headers={"X-API-Key": key})
    assert response.status == 404


# --- The portal ---------------------------------------------------------------------------------


@pytest.fixture
async def resident(aiohttp_client, database_url: str) -> TestClient:  # type: ignore[no-untyped-def]
    """The portal's world (tests/portaldata.py), logged in as the resident of 999-999-999."""
    await seed_world(database_url)
    client = await aiohttp_client(create_app(portal_settings(database_url), clock=FixedClock(PORTAL_NOW)))
    assert (await log_in(client)).status == 303
    return client


async def test_the_resident_reads_and_downloads_their_own_statement_only(resident: TestClient) -> None:
    page = await resident.get("/profile/999-999-999/statement")  # the site's current month
    html = await page.text()
    assert page.status == 200 and "Statement for February 2025" in html
    assert re.search(r'<p class="check ok" id="check">Check: [^<]*\(ok\)</p>', html)
    assert '<link rel="stylesheet" href="/portal/static/statement.css">' in html
    download = await resident.get("/profile/999-999-999/statement?month=2025-02&format=csv")
    assert download.status == 200 and download.content_type == "text/csv"
    rows = list(csv.reader(io.StringIO(await download.text())))
    assert rows[0] == ["statement", str(RESIDENT), "2025-02"] and rows[-1][1].endswith("(ok)")
    css = await resident.get("/portal/static/statement.css")
    assert css.status == 200 and "@media print" in await css.text()
    assert (await resident.get("/profile/555-555-555/statement")).status == 404  # a neighbour's
    for month in ("2025-13", "Feb", "2025-03"):  # not a month; after the current one
        assert (await resident.get(f"/profile/999-999-999/statement?month={month}")).status == 400
    assert (await resident.get("/profile/999-999-999/statement?format=pdf")).status == 400


def test_the_check_line_says_when_the_lines_do_not_account_for_the_closing_balance() -> None:
    month = Month.of(2025, 2, "Asia/Kolkata")
    lines = {"meter_no": 1, "site_id": "S1", "unit_no": "A-1", "consumer_name": "", "timezone": "Asia/Kolkata"}
    statement = Statement(**lines, month=month, opening_balance=Decimal("10.00"), closing_balance=Decimal("4.00"))
    statement.days.append(
        StatementDay(dt.date(2025, 2, 1), Decimal("8.00"), Decimal("20.00"), grid_amount=Decimal("5.00"))
    )
    assert not statement.balanced
    assert statement.check_line == "10.00 + 0.00 − 5.00 + 0.00 = 5.00 (MISMATCH: closing balance is 4.00)"
    assert month.start == ist("2025-02-01 00:00") and month.end == ist("2025-03-01 00:00")
