"""The resident's prepaid pages over real HTTP (issue 22): balance in ₹, recharge receipts, ₹
beside kWh (₹ per day = the ledger's debits), what restores a cut meter, staff stops labelled
apart, missing and future half hours shown and exported as such (never 0), the DG run log."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from decimal import Decimal

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select, update

from gateway.app import create_app
from storage.calendar import local_day
from storage.clock import FixedClock
from storage.db.engine import Database
from storage.db.models import DgStatusChange, LedgerEntry, Reading, Site
from storage.ingest.rules import dg_state_in_force
from storage.money.policy import restore_amount
from storage.reads.meter_views import dg_runs, pair_runs
from tests.portaldata import (
    CUT,
    KOLKATA,
    NEIGHBOUR,
    NOW,
    RESIDENT,
    STAFF,
    log_in,
    portal_settings,
    seed_world,
)
from tests.prepaiddata import add_prepaid_story
from tests.test_portal_pages import chart_of, tile


@pytest.fixture
async def world(database_url: str) -> str:
    await seed_world(database_url, add_prepaid_story)
    return database_url


async def client_for(aiohttp_client, database_url: str, *, staff: bool) -> TestClient:  # type: ignore[no-untyped-def]
    client = await aiohttp_client(create_app(portal_settings(database_url), clock=FixedClock(NOW)))
    response = await (log_in(client, STAFF, staff=True) if staff else log_in(client))
    assert response.status == 303
    return client


def text_of(html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</(?:li|dd|p|table)>', html, re.S)
    assert found, f"no element {element_id}"
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())


def table_rows(html: str, table_id: str) -> list[list[str]]:
    table = re.search(rf'<table id="{table_id}".*?<tbody>(.*?)</tbody>', html, re.S)
    assert table, f"no table {table_id}"
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table.group(1), re.S)
    return [
        [" ".join(re.sub(r"<[^>]+>", " ", c).split()) for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)]
        for r in rows
    ]


async def test_recharge_history_lists_receipts_newest_first(aiohttp_client, world: str) -> None:  # type: ignore[no-untyped-def]
    client = await client_for(aiohttp_client, world, staff=False)
    html = await (await client.get(f"/profile/{RESIDENT}")).text()
    assert tile(html, "balance") == "₹150.00"
    assert table_rows(html, "recharges") == [
        ["2025-02-12 08:40 IST", "₹100.00", "Failed (refused by the head-end)", "TXN12ERROR", "–"],
        ["2025-02-11 19:02 IST", "₹200.00", "Pending", "TXN11WAITING", "–"],
        ["2025-02-10 09:15 IST", "₹500.00", "Credited", "TXN10SUCCESS", "4821-0093-1174-5520"],
    ]
    assert "not available" not in html


async def test_a_cut_meter_says_what_recharge_restores_it(aiohttp_client, world: str) -> None:  # type: ignore[no-untyped-def]
    client = await client_for(aiohttp_client, world, staff=True)
    html = await (await client.get(f"/profile/{CUT}")).text()
    assert tile(html, "balance") == "−₹5.00"
    assert tile(html, "relay") == "○ Off (cut: zero balance)"
    assert "Recharge at least ₹5.01 to restore it." in text_of(html, "restore-amount")
    db = Database(world)
    try:  # with ₹2.00 of grace the cut threshold is −2.00: ₹3.01 lifts −5.00 above it
        async with db.transaction() as session:
            await session.execute(update(Site).where(Site.id == "S2").values(grace_amount=Decimal("2.00")))  # type: ignore[arg-type]
    finally:
        await db.dispose()
    html = await (await client.get(f"/profile/{CUT}")).text()
    assert "Recharge at least ₹3.01 to restore it." in text_of(html, "restore-amount")


async def test_a_staff_stop_is_not_a_zero_balance_cut(aiohttp_client, world: str) -> None:  # type: ignore[no-untyped-def]
    client = await client_for(aiohttp_client, world, staff=True)
    html = await (await client.get(f"/profile/{NEIGHBOUR}")).text()
    assert tile(html, "relay") == "○ Off (stopped by staff)"
    assert "contact the office" in text_of(html, "stopped-note")
    assert 'id="restore-amount"' not in html  # a recharge would not switch it on


async def test_missing_and_future_half_hours_are_not_zero(aiohttp_client, world: str) -> None:  # type: ignore[no-untyped-def]
    """The neighbour has readings 00:00–04:30 today; at 10:47 the half hours 05:00–10:00 are
    missing and 10:30 onwards have not ended."""
    client = await client_for(aiohttp_client, world, staff=True)
    page = f"/profile/{NEIGHBOUR}/consumption?period=current-day"
    html = await (await client.get(page)).text()
    assert tile(html, "intervals") == "10 of 21"
    chart = chart_of(html, "consumption-chart")
    grid = chart["data"][0]["y"]
    assert grid[:10] == [2.0] * 10 and grid[10:] == [None] * 38  # no bar, not a zero bar
    shaded = {(s["x0"] + 0.5, s["fillcolor"]) for s in chart["layout"]["shapes"]}
    assert len(shaded) == 38 and len({fill for _, fill in shaded}) == 2  # missing and not-yet differ
    rows = table_rows(html, "bars")
    assert rows[10][:2] == ["05:00", "missing"] and rows[21][:2] == ["10:30", "not yet"]
    lines = list(csv.reader(io.StringIO(await (await client.get(page + "&format=csv")).text())))
    assert lines[1][2:] == ["2.000", "0.000", "2.000", "4.00", "0.00", "4.00", "ok"]
    assert lines[11][0].startswith("2025-02-12T05:00") and lines[11][2:] == [""] * 6 + ["missing"]
    assert lines[22][0].startswith("2025-02-12T10:30") and lines[22][2:] == [""] * 6 + ["future"]
    assert [row[-1] for row in lines[1:]].count("missing") == 11


async def test_rupees_per_day_are_the_ledgers_debits(aiohttp_client, world: str) -> None:  # type: ignore[no-untyped-def]
    client = await client_for(aiohttp_client, world, staff=False)
    base = f"/profile/{RESIDENT}/consumption?period=current-week"
    rows = list(csv.DictReader(io.StringIO(await (await client.get(base + "&format=csv")).text())))
    db = Database(world)
    try:
        async with db.reader() as session:
            readings = (
                await session.execute(
                    select(Reading.interval_start, Reading.charge).where(Reading.meter_no == RESIDENT)
                )
            ).all()
            fixed_debits = select(LedgerEntry.day, func.sum(LedgerEntry.amount)).where(
                LedgerEntry.meter_no == RESIDENT, LedgerEntry.kind == "fixed"
            )
            fixed = dict((await session.execute(fixed_debits.group_by(LedgerEntry.day))).all())
    finally:
        await db.dispose()
    debits: dict[dt.date, Decimal] = {}
    for start, charge in readings:
        day = local_day(KOLKATA, start)
        debits[day] = debits.get(day, Decimal("0")) + charge
    for day, amount in fixed.items():
        debits[day] = debits.get(day, Decimal("0")) - Decimal(amount)
    shown = {dt.date.fromisoformat(r["day"]): Decimal(r["total_inr"]) for r in rows if r["total_inr"]}
    assert shown == {day: debits[day] for day in shown} and set(shown) == {
        dt.date(2025, 2, 10),
        dt.date(2025, 2, 11),
        dt.date(2025, 2, 12),
    }
    assert rows[0]["fixed_inr"] == "5.00" and rows[0]["total_inr"] == "197.00"
    html = await (await client.get(base)).text()
    assert text_of(html, "total-inr") == f"₹{sum(shown.values()):,.2f}" == "₹473.00"
    assert (text_of(html, "grid-inr"), text_of(html, "dg-inr"), tile(html, "fixed-inr")) == (
        "₹428.00",
        "₹40.00",
        "₹5.00",
    )


async def test_dg_run_log_of_the_residents_site(aiohttp_client, world: str) -> None:  # type: ignore[no-untyped-def]
    client = await client_for(aiohttp_client, world, staff=False)
    html = await (await client.get(f"/profile/{RESIDENT}/consumption?period=current-day")).text()
    assert table_rows(html, "dg-runs") == [
        ["DG-1", "2025-02-11 23:50 IST", "2025-02-12 00:20 IST", "20"],
        ["DG-1", "2025-02-12 04:17 IST", "2025-02-12 05:07 IST", "50"],
    ]
    html = await (await client.get(f"/profile/{RESIDENT}/consumption?period=prev-month")).text()
    assert "No DG ran in this period." in html


def test_runs_pair_on_with_off_and_clip_minutes_to_the_window() -> None:
    t = dt.datetime(2025, 2, 12, tzinfo=dt.UTC)
    minutes = dt.timedelta(minutes=1)
    changes = [(t - 10 * minutes, "ON"), (t + 5 * minutes, "ON"), (t + 20 * minutes, "OFF"), (t + 25 * minutes, "OFF")]
    changes += [(t + 40 * minutes, "ON")]
    runs = pair_runs("DG-1", changes, start=t, end=t + 60 * minutes)
    assert [(r.on_at, r.off_at, r.minutes_in_window) for r in runs] == [
        (t - 10 * minutes, t + 20 * minutes, 20),
        (t + 40 * minutes, None, 20),
    ]
    assert pair_runs("DG-1", [(t - 30 * minutes, "ON"), (t - 5 * minutes, "OFF")], start=t, end=t + minutes) == []


async def test_two_changes_at_one_instant_leave_the_dg_running_in_the_log_as_in_the_bill(world: str) -> None:
    # ON posted first, OFF second, at the same instant: billing counts the DG ON from then
    # (`storage.ingest.rules.change_order`), and the resident's run log says the same.
    moment = dt.datetime(2025, 2, 12, 6, 0, tzinfo=dt.UTC)
    db = Database(world)
    try:
        async with db.transaction() as session:
            for status in ("ON", "OFF"):
                session.add(DgStatusChange(site_id="S1", dg_no="DG-1", at=moment, status=status))
                await session.flush()  # inserted in this order: OFF gets the later id
        async with db.reader() as session:
            billed_state = (await session.execute(select(dg_state_in_force("S1", "DG-1", moment)))).scalar_one()
        runs = await dg_runs(
            db, site_id="S1", start=moment - dt.timedelta(minutes=5), end=moment + dt.timedelta(hours=1)
        )
    finally:
        await db.dispose()
    assert billed_state == "ON"
    assert [(run.on_at, run.off_at, run.minutes_in_window) for run in runs] == [(moment, None, 60)]


@pytest.mark.parametrize(
    ("balance", "grace", "least"),
    [
        ("-5.00", "0.00", "5.01"),
        ("0.00", "0.00", "0.01"),
        ("-5.00", "2.00", "3.01"),
        ("-1.00", "2.00", "0.00"),
        ("9", "0", "0.00"),
    ],
)
def test_restore_amount_lifts_the_balance_above_the_cut_threshold(balance: str, grace: str, least: str) -> None:
    assert restore_amount(Decimal(balance), Decimal(grace)) == Decimal(least)


async def test_portal_paths_answer_html_errors_and_the_favicon(aiohttp_client, world: str) -> None:  # type: ignore[no-untyped-def]
    client = await client_for(aiohttp_client, world, staff=False)
    for path in ("/management-dashboard/nope", "/profile/1/2/3", "/register/x", f"/profile/{RESIDENT}/consumption/a/b"):
        response = await client.get(path)
        assert response.status == 404 and response.content_type == "text/html", path
    icon = await client.get("/favicon.ico")
    assert icon.status == 200 and icon.content_type == "image/svg+xml" and b"<svg" in await icon.read()
    page = await (await client.get(f"/profile/{RESIDENT}")).text()
    assert '<link rel="icon" href="/portal/static/favicon.svg"' in page


async def test_year_view_month_by_month(aiohttp_client, world: str) -> None:  # type: ignore[no-untyped-def]
    client = await client_for(aiohttp_client, world, staff=False)
    html = await (await client.get(f"/profile/{RESIDENT}/year")).text()
    rows = table_rows(html, "months")
    assert [r[0] for r in rows][:1] + [r[0] for r in rows][-2:] == ["Mar 2024", "Jan 2025", "Feb 2025"]
    assert len(rows) == 12
    # Before the meter was installed (1 Jan 2025): nothing expected, not zero use.
    assert rows[0] == ["Mar 2024", "–", "0 of 0"]
    # January: only the 31st has readings (48 × 0.1 kWh): the rest of the month is missing.
    assert rows[10] == ["Jan 2025", "4.80", "0.00", "4.80", "₹192.00", "48 of 1488"]
    # February so far: grid 24 + 20 + 4.75, DG 10 + 1.5 kWh; ₹ = the readings' charges and the fixed charge.
    assert rows[11][1:5] == ["48.75", "11.50", "60.25", "₹473.00"]
    assert text_of(html, "intervals") == "165 of 2037"
    chart = chart_of(html, "year-chart")
    assert chart["data"][0]["y"][:10] == [None] * 10
