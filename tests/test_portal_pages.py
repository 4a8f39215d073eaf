"""Portal pages over real HTTP: each period's totals and chart, the CSV of what is shown, the
seed's path form, unknown periods, the Plotly script served from the installed package."""

from __future__ import annotations

import csv
import io
import json
import re
from decimal import Decimal

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import update

from gateway.app import create_app
from storage.calendar import PERIODS
from storage.clock import FixedClock
from storage.db.engine import Database
from storage.db.models import Command, Meter, Site
from tests.portaldata import NOW, RESIDENT, STAFF, log_in, portal_settings, seed_world

CONSUMPTION = f"/profile/{RESIDENT}/consumption"


@pytest.fixture
async def resident(aiohttp_client, database_url: str) -> TestClient:  # type: ignore[no-untyped-def]
    await seed_world(database_url)
    client = await aiohttp_client(create_app(portal_settings(database_url), clock=FixedClock(NOW)))
    assert (await log_in(client)).status == 303
    return client


def chart_of(html: str, chart_id: str) -> dict:
    found = re.search(rf'<script type="application/json" id="{chart_id}-spec">(.*?)</script>', html, re.S)
    assert found, f"no chart {chart_id}"
    return json.loads(found.group(1))


def tile(html: str, name: str) -> str:
    found = re.search(rf'<dd id="{name}">([^<]*)</dd>', html)
    assert found, f"no tile {name}"
    return found.group(1).strip()


async def test_profile_shows_balance_relay_today_and_last_reading(resident: TestClient) -> None:
    html = await (await resident.get("/profile/999-999-999")).text()
    assert tile(html, "balance") == "₹150.00"
    assert "On" in tile(html, "relay")
    assert tile(html, "today") == "6.25 kWh"
    assert tile(html, "last-reading") == "2025-02-12 10:31 IST"
    assert '<p class="muted" id="recharges">No recharges yet.</p>' in html


@pytest.mark.parametrize(
    ("period", "bars", "total", "first_label"),
    [
        ("prev-hr", 2, "1.50", "09:30"),
        ("current-day", 48, "6.25", "00:00"),
        ("current-week", 7, "60.25", "Mon 10"),
        ("current-month", 28, "60.25", "Sat 01"),
        ("prev-month", 31, "4.80", "Wed 01"),
    ],
)
async def test_each_period_has_totals_and_a_stacked_chart(
    resident: TestClient, period: str, bars: int, total: str, first_label: str
) -> None:
    response = await resident.get(f"{CONSUMPTION}?period={period}")
    html = await response.text()
    assert response.status == 200 and tile(html, "total") == f"{total} kWh"
    chart = chart_of(html, "consumption-chart")
    grid, dg = chart["data"]
    assert len(grid["x"]) == bars and grid["x"][0] == first_label
    assert round(sum(v or 0 for v in grid["y"]) + sum(v or 0 for v in dg["y"]), 2) == float(total)
    assert chart["layout"]["barmode"] == "stack" and chart["layout"]["yaxis"]["title"]["text"] == "Energy (kWh)"
    assert dg["marker"]["pattern"]["shape"] == "/"  # DG is hatched: not told apart by colour alone
    assert 'src="/portal/static/plotly.min.js"' in html


async def test_week_csv_has_one_row_per_day(resident: TestClient) -> None:
    response = await resident.get(f"{CONSUMPTION}?period=current-week&format=csv")
    assert response.status == 200 and response.content_type == "text/csv"
    assert 'filename="meter-999999999-current-week-2025-02-10.csv"' in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(await response.text())))
    # Every reading of the test data is charged ₹4.00; Wednesday 12th at 10:47 has 21 half hours
    # ended, Thursday onwards is the future: empty numbers, never 0.
    assert rows[:5] == [
        "day grid_kwh dg_kwh total_kwh intervals expected_intervals grid_inr dg_inr fixed_inr total_inr status".split(),
        ["2025-02-10", "24.000", "0.000", "24.000", "48", "48", "192.00", "0.00", "0.00", "192.00", "ok"],
        ["2025-02-11", "20.000", "10.000", "30.000", "48", "48", "160.00", "32.00", "0.00", "192.00", "ok"],
        ["2025-02-12", "4.750", "1.500", "6.250", "21", "21", "76.00", "8.00", "0.00", "84.00", "ok"],
        ["2025-02-13", "", "", "", "0", "0", "", "", "", "", "future"],
    ]
    assert len(rows) == 8


async def test_hour_csv_has_the_two_intervals_in_local_time(resident: TestClient) -> None:
    text = await (await resident.get(f"{CONSUMPTION}?period=prev-hr&format=csv")).text()
    assert text.splitlines() == [
        "interval_start,interval_end,grid_kwh,dg_kwh,total_kwh,grid_inr,dg_inr,total_inr,status",
        "2025-02-12T09:30:00+05:30,2025-02-12T10:00:00+05:30,0.000,0.750,0.750,0.00,4.00,4.00,ok",
        "2025-02-12T10:00:00+05:30,2025-02-12T10:30:00+05:30,0.000,0.750,0.750,0.00,4.00,4.00,ok",
    ]


async def test_unknown_period_lists_the_valid_ones(resident: TestClient) -> None:
    response = await resident.get(f"{CONSUMPTION}?period=yesterday")
    html = await response.text()
    assert response.status == 400 and response.content_type == "text/html"
    assert "“yesterday” is not a period" in html
    for name in PERIODS:
        assert f'href="{CONSUMPTION}?period={name}"' in html
    assert (await resident.get(f"{CONSUMPTION}?period=current-day&format=xml")).status == 400


@pytest.mark.parametrize(
    ("word", "period"),
    [("today", "current-day"), ("week", "current-week"), ("prev-month", "prev-month"), ("hour", "prev-hr")],
)
async def test_seed_path_form_redirects_to_the_query_form(resident: TestClient, word: str, period: str) -> None:
    response = await resident.get(f"/profile/999-999-999/consumption/{word}", allow_redirects=False)
    assert response.status == 301 and response.headers["Location"] == f"{CONSUMPTION}?period={period}"


async def test_seed_path_form_with_an_unknown_word(resident: TestClient) -> None:
    response = await resident.get(f"{CONSUMPTION}/fortnight")
    assert response.status == 400 and "“fortnight” is not a period" in await response.text()


async def test_no_period_means_today(resident: TestClient) -> None:
    html = await (await resident.get(CONSUMPTION)).text()
    assert 'aria-current="page" class="current">Today<' in html


async def test_plotly_and_the_stylesheet_are_served_by_the_gateway(resident: TestClient) -> None:
    script = await resident.get("/portal/static/plotly.min.js")
    assert script.status == 200 and "plotly" in (await script.text())[:2000].lower()
    assert (await resident.get("/portal/static/portal.css")).status == 200
    assert (await resident.get("/portal/static/portal.js")).status == 200


async def test_pages_carry_security_headers(resident: TestClient) -> None:
    response = await resident.get(f"/profile/{RESIDENT}")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY" and response.headers["Cache-Control"] == "no-store"


async def test_dashboard_for_each_period(aiohttp_client, database_url: str) -> None:  # type: ignore[no-untyped-def]
    await seed_world(database_url)
    client = await aiohttp_client(create_app(portal_settings(database_url), clock=FixedClock(NOW)))
    await log_in(client, STAFF, staff=True)
    for period in PERIODS:
        html = await (await client.get(f"/management-dashboard/?period={period}")).text()
        regions = chart_of(html, "regions-chart")
        assert regions["data"][0]["x"] == ["North", "South"]
        assert chart_of(html, "sites-chart")["data"][0]["x"] == ["Palm Court (S1)", "River View (S2)"]
    week = await (await client.get("/management-dashboard/?period=current-week")).text()
    assert re.search(r'<td>North</td><td class="num">116.75</td><td class="num">11.50</td>', week)
    assert '<span class="count" id="cut-count">1</span>' in week
    assert '<span class="count" id="silent-count">2</span>' in week
    assert (await client.get("/management-dashboard/?period=bogus")).status == 400
    assert (await client.get("/management-dashboard", allow_redirects=False)).headers["Location"] == (
        "/management-dashboard/"
    )


async def test_profile_shows_days_left_and_the_residents_alerts(resident: TestClient, database_url: str) -> None:
    html = await (await resident.get("/profile/999-999-999")).text()
    assert tile(html, "days-left") != "" and 'id="alerts"' not in html  # no alert yet
    db = Database(database_url)
    try:
        await policy_alerts_for_resident(db)
    finally:
        await db.dispose()
    html = await (await resident.get("/profile/999-999-999")).text()
    alerts = re.search(r'<ul class="alerts" id="alerts" role="status">(.*?)</ul>', html, re.S)
    assert alerts is not None
    assert "Low balance: at or below ₹200.00." in alerts.group(1)
    assert "Supply will be cut at 2025-02-12 18:00 IST unless you recharge" in " ".join(alerts.group(1).split())


async def policy_alerts_for_resident(db: Database) -> None:
    """The resident's site warns at 200.00 (their 150.00 crossed it) and a cut waits for 18:00 IST."""
    async with db.transaction() as session:
        await session.execute(update(Site).where(Site.id == "S1").values(alert_thresholds=["200.00"]))  # type: ignore[arg-type]
        await session.execute(update(Meter).where(Meter.meter_no == RESIDENT).values(alert_level=Decimal("200.00")))  # type: ignore[arg-type]
        session.add(
            Command(
                meter_no=RESIDENT,
                action="cut",
                reason="zero balance",
                params={"deferred_until": "2025-02-12T12:30:00+00:00"},
                created_at=NOW,
                updated_at=NOW,
            )
        )
