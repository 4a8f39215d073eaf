"""The site-month page of the management dashboard over real HTTP, on both databases: the site
report with its totals, the energy audit's table and charts, a day's quality flags; bad months,
days and sites refused with a page that says why, other sites' staff and residents kept out.
(In Chromium: tests/test_site_month_browser.py.)"""

from __future__ import annotations

import json
import re

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from storage.clock import FixedClock
from tests.auditdata import FEB_10, S2_STAFF, add_audit_story, days_of_february
from tests.portaldata import NOW, RESIDENT, STAFF, log_in, portal_settings, seed_world
from tests.test_portal_prepaid import table_rows

PAGE = "/management-dashboard/site-month"


@pytest.fixture
async def world(database_url: str) -> str:
    await seed_world(database_url, add_audit_story)
    return database_url


async def portal(aiohttp_client, url: str, login: str, *, staff: bool = True) -> TestClient:  # type: ignore[no-untyped-def]
    client = await aiohttp_client(create_app(portal_settings(url), clock=FixedClock(NOW)))
    assert (await log_in(client, login, staff=staff)).status == 303
    return client


def chart(html: str, chart_id: str) -> dict:
    found = re.search(rf'<script type="application/json" id="{chart_id}-spec">(.*?)</script>', html, re.S)
    assert found, chart_id
    return json.loads(found.group(1))


async def test_the_site_month_shows_report_audit_and_quality(aiohttp_client, world: str) -> None:  # type: ignore[no-untyped-def]
    client = await portal(aiohttp_client, world, STAFF)
    response = await client.get(f"{PAGE}?site=S1&month=2025-02&day=2025-02-11")
    assert response.status == 200
    html = await response.text()
    audit = table_rows(html, "audit")
    assert len(audit) == 12  # 1-12 February, each site-local day begun
    tenth = audit[9]
    assert tenth[:5] == ["Mon 10", FEB_10["incomer"], FEB_10["flats"], FEB_10["loss"], FEB_10["pct"]]
    assert audit[10][:9] == ["Tue 11", "24.00", "20.00", "4.00", "16.67", "12.00", "10.00", "2.00", "16.67"]
    assert audit[10][9:] == ["4.00", "0.00", "3.00"]
    assert audit[11][9:] == ["0.00", "54.00", "—"]  # the 12th: a refill, no fuel burnt
    assert audit[0][1:2] == ["—"]  # the 1st: no incomer reading, not zero
    # The flats' lines (the incomer is no flat) and the totals, as the site report has them.
    report = table_rows(html, "report")
    assert [(row[0], row[3], row[4]) for row in report] == [
        ("555-555-555", "68.00", "0.00"),
        ("999-999-999", "48.75", "11.50"),
    ]
    total = re.findall(r'<td class="num">([^<]*)</td>', html.split('id="report-total"')[1].split("</tr>")[0])
    assert total[:3] == ["116.75", "11.50", "₹660.00"] and "2 meters" in html
    assert "777-000-001" in html  # ... which is flagged like any meter: its readings came late
    incomer = chart(html, "audit-incomer-chart")
    assert [trace["type"] for trace in incomer["data"]] == ["bar", "scatter"]
    assert incomer["data"][1]["y"][9:11] == [76.8, 24.0] and incomer["data"][1]["y"][0] is None
    assert chart(html, "audit-loss-chart")["data"][0]["y"][9:11] == [6.25, 16.67]
    assert chart(html, "audit-dg-chart")["data"][0]["y"][10] == 3.0
    assert len(incomer["data"][0]["x"]) == len(days_of_february())
    assert dict(re.findall(r'id="quality-(\w+)">(\d+)<', html)) == {
        "missing": "1", "spike": "0", "zero_run": "0", "late": "2", "conflict": "0"
    }  # fmt: skip
    assert [row[:3] for row in table_rows(html, "flags")] == [
        ["555-555-555", "U555", "missing"], ["777-000-001", "Incomer", "late"], ["999-999-999", "U999", "late"]
    ]  # fmt: skip
    assert "Data quality, Tue 11 Feb 2025" in html


@pytest.mark.parametrize(
    ("query", "status", "says"),
    [
        ("site=S1&month=2025-13", 400, "is not a month to show"),
        ("site=S1&month=2025-03", 400, "is not a month to show"),  # after the current month
        ("site=S1&month=2025-02&day=2025-02-30", 400, "is not a day of 2025-02"),
        ("site=S1&month=2025-02&day=2025-01-31", 400, "is not a day of 2025-02"),
        ("site=S1&month=2025-02&day=2025-02-20", 400, "is not a day of 2025-02"),  # not begun
        ("site=NOPE&month=2025-02", 404, "no site with that id"),
        ("month=2025-02", 404, "no site with that id"),
    ],
)
async def test_bad_requests_get_a_page_that_says_why(
    aiohttp_client, world: str, query: str, status: int, says: str
) -> None:  # type: ignore[no-untyped-def]
    client = await portal(aiohttp_client, world, STAFF)
    response = await client.get(f"{PAGE}?{query}")
    assert response.status == status and says in await response.text()


async def test_the_dashboard_counts_the_flats_energy_only(aiohttp_client, world: str) -> None:  # type: ignore[no-untyped-def]
    client = await portal(aiohttp_client, world, STAFF)
    html = await (await client.get("/management-dashboard/?period=current-month")).text()
    palm_court = next(row for row in table_rows(html, "sites") if row[0].startswith("Palm Court"))
    assert palm_court[2:5] == ["116.75", "11.50", "128.25"]  # not the incomer's 100.80 again
    assert "777-000-001" not in html.split('id="top"')[1].split("</table>")[0]  # nor a top consumer


async def test_only_the_sites_staff_see_it(aiohttp_client, world: str) -> None:  # type: ignore[no-untyped-def]
    other = await portal(aiohttp_client, world, S2_STAFF)
    assert (await other.get(f"{PAGE}?site=S1&month=2025-02")).status == 404  # as if S1 did not exist
    assert (await other.get(f"{PAGE}?site=S2&month=2025-02")).status == 200
    resident = await portal(aiohttp_client, world, str(RESIDENT), staff=False)
    assert (await resident.get(f"{PAGE}?site=S1&month=2025-02")).status == 403
