"""The prepaid pages in real headless Chromium (issue 22), at 1280 px and on a 390 px phone:
₹ figures equal to the ledger's debits, recharge receipts, the DG run log, missing half hours
drawn as gaps, and no page wider than the phone (tables scroll inside their box).

Shares the browser and server helpers of tests/test_portal_browser.py; SQLite only (the
queries run on both databases in tests/test_portal_prepaid.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from storage.db.engine import Database
from storage.db.models import LedgerEntry, Reading
from tests.daydata import at
from tests.portaldata import (
    KOLKATA,
    NEIGHBOUR,
    PASSWORD,
    RESIDENT,
    STAFF,
)
from tests.prepaiddata import add_prepaid_story
from tests.test_portal_browser import (  # noqa: F401 (browser is a fixture)
    browser,
    console_errors,
    drawn_bars,
    fill,
    portal_world,
    serving,
    set_phone,
    shot,
    submit,
)


async def _prepaid_story_and_debits(db: Database) -> Decimal:
    """The prepaid story; the resident's debits this week per the ledger."""
    week_start = at(KOLKATA, "2025-02-10 00:00")  # this week began on Monday
    await add_prepaid_story(db)
    async with db.reader() as session:
        energy = await session.scalar(
            select(func.sum(Reading.charge)).where(Reading.meter_no == RESIDENT, Reading.interval_start >= week_start)
        )
        fixed = await session.scalar(
            select(func.sum(LedgerEntry.amount)).where(LedgerEntry.meter_no == RESIDENT, LedgerEntry.kind == "fixed")
        )
    return Decimal(energy) - Decimal(fixed)


@pytest.fixture(scope="module")
def prepaid_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Decimal]]:
    """The gateway with the prepaid story; also the resident's debits this week per the ledger."""
    url, debits = portal_world(tmp_path_factory.mktemp("prepaid-browser"), _prepaid_story_and_debits)
    assert debits is not None
    with serving(url) as base:
        yield base, debits


def fits_the_window(driver) -> bool:  # type: ignore[no-untyped-def]
    """No horizontal scrolling of the page itself (wide tables scroll inside their box)."""
    return driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")


def visible_bars(driver, chart_id: str) -> int:  # type: ignore[no-untyped-def]
    """Bar marks with a height on screen (Plotly keeps an empty path for a missing value)."""
    script = f"""return [...document.querySelectorAll('#{chart_id} g.trace.bars g.point path')]
        .filter(p => p.getBBox().height > 0).length"""
    return driver.execute_script(script)


def log_in_as(driver, server: str, login: str, *, staff: bool) -> None:  # type: ignore[no-untyped-def]
    driver.delete_all_cookies()
    driver.get(f"{server}/management-dashboard/login" if staff else f"{server}/profile")
    fill(driver, {"login": login, "password": PASSWORD})
    submit(driver, "log-in")


@pytest.mark.parametrize("phone", [False, True], ids=["1280px", "390px"])
def test_resident_sees_money_receipts_and_dg_runs(prepaid_server, browser, phone: bool) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from selenium.webdriver.common.by import By

    server, week_debits = prepaid_server
    driver = browser
    set_phone(driver, phone)
    log_in_as(driver, server, str(RESIDENT), staff=False)
    assert driver.current_url == f"{server}/profile/{RESIDENT}"
    assert driver.find_element(By.ID, "balance").text == "₹150.00"
    receipts = driver.find_elements(By.CSS_SELECTOR, "#recharges tbody tr")
    assert len(receipts) == 3 and "4821-0093-1174-5520" in receipts[2].text
    assert fits_the_window(driver)
    shot(driver, f"10-profile-prepaid-{'phone' if phone else 'laptop'}")
    set_phone(driver, phone)

    driver.get(f"{server}/profile/{RESIDENT}/consumption?period=current-week")
    assert drawn_bars(driver, "consumption-chart") >= 3
    assert driver.find_element(By.ID, "total-inr").text == f"₹{week_debits:,.2f}"
    assert driver.find_element(By.ID, "intervals").text == "117 of 117"
    assert fits_the_window(driver)

    driver.get(f"{server}/profile/{RESIDENT}/consumption?period=current-day")
    assert drawn_bars(driver, "consumption-chart") >= 21
    runs = [row.text for row in driver.find_elements(By.CSS_SELECTOR, "#dg-runs tbody tr")]
    assert len(runs) == 2 and "04:17" in runs[1] and "05:07" in runs[1] and runs[1].endswith("50")
    assert fits_the_window(driver)
    assert console_errors(driver) == []
    shot(driver, f"11-day-prepaid-{'phone' if phone else 'laptop'}")
    set_phone(driver, phone)

    driver.get(f"{server}/profile/{RESIDENT}/year")
    assert drawn_bars(driver, "year-chart") >= 2  # January and February
    assert visible_bars(driver, "year-chart") == 3  # Jan grid, Feb grid, Feb DG: no zero months
    assert len(driver.find_elements(By.CSS_SELECTOR, "#months tbody tr")) == 12
    assert fits_the_window(driver)


def test_staff_see_gaps_and_a_stop_told_apart(prepaid_server, browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from selenium.webdriver.common.by import By

    server, _ = prepaid_server
    driver = browser
    set_phone(driver, False)
    log_in_as(driver, server, STAFF, staff=True)
    driver.get(f"{server}/profile/{NEIGHBOUR}")
    assert driver.find_element(By.ID, "relay").text == "○ Off (stopped by staff)"
    assert driver.find_elements(By.ID, "restore-amount") == []
    driver.get(f"{server}/profile/{NEIGHBOUR}/consumption?period=current-day")
    drawn_bars(driver, "consumption-chart")
    assert visible_bars(driver, "consumption-chart") == 10  # ten half hours with data, no zero bars
    assert driver.find_element(By.ID, "intervals").text == "10 of 21"
    bands = driver.find_elements(By.CSS_SELECTOR, "#consumption-chart .shapelayer path")
    assert len(bands) == 38  # 11 missing + 27 not yet
    assert console_errors(driver) == []
    shot(driver, "12-gaps")


def overflowing_boxes(driver) -> list[str]:  # type: ignore[no-untyped-def]
    """Sections or cards whose content sticks out of their box (a table must scroll inside)."""
    script = """return [...document.querySelectorAll('main section, main .card, main .scroll')]
        .filter(b => b.getBoundingClientRect().right > document.documentElement.clientWidth + 1
                     || (!b.classList.contains('scroll') && b.scrollWidth > b.clientWidth + 1))
        .map(b => (b.querySelector('h2') || b).textContent.trim().slice(0, 40))"""
    return driver.execute_script(script)


@pytest.mark.parametrize("phone", [False, True], ids=["1280px", "390px"])
def test_manager_dashboard_fits_and_matches_the_ledger(prepaid_server, browser, phone: bool) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    server, _ = prepaid_server
    driver = browser
    set_phone(driver, phone)
    log_in_as(driver, server, STAFF, staff=True)
    driver.get(f"{server}/management-dashboard/")
    assert drawn_bars(driver, "sites-chart") >= 2
    assert driver.find_element(By.ID, "zero-cut-count").text == "1"
    assert driver.find_element(By.ID, "stopped-count").text == "1"
    assert driver.find_element(By.ID, "negative-total").text == "−₹5.00"
    assert fits_the_window(driver) and overflowing_boxes(driver) == []
    shot(driver, f"13-dashboard-{'phone' if phone else 'laptop'}")
    set_phone(driver, phone)

    Select(driver.find_element(By.ID, "site-select")).select_by_value("S1")
    fill(driver, {"q": "U555"})
    submit(driver, "apply-filters")
    found = driver.find_elements(By.CSS_SELECTOR, "#found tbody tr")
    assert len(found) == 1 and "Stopped by staff" in found[0].text
    assert driver.find_element(By.ID, "zero-cut-count").text == "0"  # S2's cut is filtered out
    driver.find_element(By.PARTIAL_LINK_TEXT, "which meters").click()
    rows = driver.find_elements(By.CSS_SELECTOR, "#missing tbody tr")
    assert len(rows) == 1 and "48 of 48" in rows[0].text
    assert fits_the_window(driver) and overflowing_boxes(driver) == []
    assert console_errors(driver) == []
