"""The manager's prepaid dashboard over real HTTP (issue 22): site selector and search, low and
negative balances, zero-balance cuts and staff stops apart, recharges collected, failed or
pending recharges, DG run hours and fuel, and the drill-down to missing meter-intervals."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import update

from gateway.app import create_app
from storage.clock import FixedClock
from storage.db.engine import Database
from storage.db.models import DieselGenerator, Recharge
from tests.daydata import at
from tests.portaldata import KOLKATA, NOW, STAFF, add_accounts, log_in, make_world, portal_settings
from tests.prepaiddata import add_prepaid_story
from tests.test_portal_prepaid import table_rows

HOME = "/management-dashboard/"


@pytest.fixture
async def staff(aiohttp_client, database_url: str) -> TestClient:  # type: ignore[no-untyped-def]
    db = Database(database_url)
    try:
        await make_world(db)
        await add_accounts(db)
        await add_prepaid_story(db)
        async with db.transaction() as session:
            # The credited recharge was applied this morning; fuel was read at 06:00.
            await session.execute(
                update(Recharge).where(Recharge.state == "success").values(applied_at=at(KOLKATA, "2025-02-12 09:20"))  # type: ignore[arg-type]
            )
            await session.execute(
                update(DieselGenerator).values(fuel_litres=Decimal("120.50"), fuel_at=at(KOLKATA, "2025-02-12 06:00"))
            )
    finally:
        await db.dispose()
    client = await aiohttp_client(create_app(portal_settings(database_url), clock=FixedClock(NOW)))
    assert (await log_in(client, STAFF, staff=True)).status == 303
    return client


def count(html: str, name: str) -> int:
    found = re.search(rf'<span class="count" id="{name}-count">(\d+)</span>', html)
    assert found, f"no count {name}"
    return int(found.group(1))


async def test_money_lists_tell_cuts_from_staff_stops(staff: TestClient) -> None:
    html = await (await staff.get(HOME)).text()
    assert table_rows(html, "zero-cut") == [["111-111-111", "S2", "U111", "−₹5.00", "zero balance"]]
    assert table_rows(html, "stopped") == [["555-555-555", "S1", "U555", "₹80.00", "staff: unpaid dues"]]
    assert table_rows(html, "negative") == [["111-111-111", "S2", "U111", "−₹5.00", "Cut (zero balance)"]]
    # Days left is the one rule of the admin API and the resident's page (storage.money.policy.days_left_of):
    # the last 7 ended local days, 5-11 February IST, charged ₹384 of energy and a ₹5 fixed
    # charge: ₹150 lasts 150 ÷ (389 ÷ 7) = 2.7 days, so they are low.
    assert table_rows(html, "low") == [["999-999-999", "S1", "U999", "₹150.00", "2.7"]]


async def test_collections_stuck_recharges_and_dg_hours(staff: TestClient) -> None:
    html = await (await staff.get(HOME)).text()
    assert table_rows(html, "collected") == [["S1", "₹500.00 (1)", "₹500.00 (1)"], ["S2", "₹0.00 (0)", "₹0.00 (0)"]]
    stuck = table_rows(html, "stuck")
    assert [(r[1], r[3], r[4], r[5]) for r in stuck] == [
        ("999-999-999", "₹100.00", "Failed", "TXN12ERROR"),
        ("999-999-999", "₹200.00", "Pending", "TXN11WAITING"),
    ]
    # 00:00–00:20 and 04:17–05:07 today; the month adds 23:50–24:00 on the 11th.
    assert table_rows(html, "dg-hours") == [["S1", "DG-1", "OFF", "1:10 h", "1:20 h", "120.50 at 2025-02-12 06:00 IST"]]


async def test_site_selector_and_search(staff: TestClient) -> None:
    html = await (await staff.get(f"{HOME}?site=S2")).text()
    assert 'value="S2" selected' in html
    assert count(html, "stopped") == 0 and count(html, "zero-cut") == 1
    assert table_rows(html, "collected") == [["S2", "₹0.00 (0)", "₹0.00 (0)"]]
    for query, meters in (("U555", ["555-555-555"]), ("999-999", ["999-999-999"]), ("resident 1", ["111-111-111"])):
        html = await (await staff.get(HOME, params={"q": query})).text()
        assert [row[0] for row in table_rows(html, "found")] == meters, query
    html = await (await staff.get(HOME, params={"q": "U555", "site": "S2"})).text()
    assert "No meter matches." in html
    assert (await staff.get(f"{HOME}?site=NOPE")).status == 404


async def test_completeness_drills_down_to_missing_intervals(staff: TestClient) -> None:
    html = await (await staff.get(HOME)).text()
    assert 'href="/management-dashboard/missing?site=S1&amp;day=2025-02-11"' in html
    page = await staff.get("/management-dashboard/missing", params={"site": "S1", "day": "2025-02-11"})
    rows = table_rows(await page.text(), "missing")
    # Tuesday: the resident has all 48; the neighbour none.
    assert [r[:3] for r in rows] == [["555-555-555", "U555", "48 of 48"]]
    today = table_rows(
        await (await staff.get("/management-dashboard/missing?site=S1&day=2025-02-12")).text(), "missing"
    )
    assert [r[:3] for r in today] == [["555-555-555", "U555", "11 of 21"]] and today[0][3].startswith("05:00 IST")
    assert (await staff.get("/management-dashboard/missing?site=S1&day=12-02")).status == 400
    for day in ("0001-01-01", "9999-12-31", "20250211", "2025-W07-2"):  # the first two were 500s
        page = await staff.get(f"/management-dashboard/missing?site=S1&day={day}")
        text = await page.text()
        assert page.status == 400 and "day must be a date YYYY-MM-DD from 1970-01-01 to 9998-12-31" in text, day
        assert text.lstrip().startswith("<!"), day  # the portal's HTML error page
    assert (await staff.get("/management-dashboard/missing?site=ZZ")).status == 404


async def test_monthly_trend_of_the_last_12_months(staff: TestClient) -> None:
    html = await (await staff.get(HOME)).text()
    rows = table_rows(html, "trend")
    assert len(rows) == 12 and rows[0][0] == "Mar 2024" and rows[-1][0] == "Feb 2025"
    # January: the resident's 31st (4.8 kWh). February: resident 60.25 (11.5 DG), neighbour 48 + 20, S2 4.8.
    assert rows[-2] == ["Jan 2025", "4.80", "0.00", "4.80"]
    assert rows[-1] == ["Feb 2025", "121.55", "11.50", "133.05"]
    s2 = table_rows(await (await staff.get(f"{HOME}?site=S2")).text(), "trend")
    assert s2[-1] == ["Feb 2025", "4.80", "0.00", "4.80"]
