"""The management dashboard's site-month page in real headless Chromium: a manager follows the
site's link from the dashboard, Plotly draws the energy audit's three charts (bars and the
incomer's line, loss %, DG kWh per litre), the tables show the hand-computed figures of
tests/auditdata.py, and another month is picked with the month control. SQLite only, like the
other browser tests (the page's queries run on both databases in tests/test_site_month_page.py);
skipped without Chromium (failed on CI).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.auditdata import FEB_10, add_audit_story
from tests.portaldata import PASSWORD, STAFF
from tests.test_portal_browser import (  # noqa: F401 (browser is a fixture)
    WAIT,
    browser,
    console_errors,
    drawn_bars,
    fill,
    portal_world,
    serving,
    shot,
    submit,
)


@pytest.fixture(scope="module")
def audit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The gateway with the portal's world and the audit story."""
    url, _ = portal_world(tmp_path_factory.mktemp("site-month-browser"), add_audit_story)
    with serving(url) as base:
        yield base


def drawn_lines(driver, chart_id: str) -> int:  # type: ignore[no-untyped-def]
    """Wait until Plotly drew the chart; the number of line traces (scatter) it drew."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    WebDriverWait(driver, WAIT).until(
        lambda d: d.find_element(By.ID, chart_id).get_attribute("data-rendered") == "true"
    )
    return len(driver.find_elements(By.CSS_SELECTOR, f"#{chart_id} g.trace.scatter path.js-line"))


def cells(driver, row_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    return [cell.text for cell in driver.find_elements(By.CSS_SELECTOR, f"#{row_id} td")]


def test_manager_reads_the_site_month_with_its_energy_audit_charts(audit_server: str, browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from selenium.webdriver.common.by import By

    driver = browser
    driver.delete_all_cookies()
    driver.set_window_size(1280, 1000)
    driver.get(f"{audit_server}/management-dashboard/login")
    fill(driver, {"login": STAFF, "password": PASSWORD})
    submit(driver, "log-in")
    driver.get(f"{audit_server}/management-dashboard/?period=current-month")
    driver.find_element(By.LINK_TEXT, "Palm Court").click()
    assert driver.current_url == f"{audit_server}/management-dashboard/site-month?site=S1"
    assert driver.find_element(By.TAG_NAME, "h1").text == "Palm Court (S1): February 2025"

    # The charts are drawn: the flats' bars with the incomer's line, the loss %, DG kWh per litre.
    assert drawn_bars(driver, "audit-incomer-chart") >= 3  # the 10th, 11th and 12th have flats' kWh
    assert drawn_lines(driver, "audit-incomer-chart") == 1
    assert drawn_lines(driver, "audit-loss-chart") == 1
    assert drawn_lines(driver, "audit-dg-chart") == 1
    # ... and the tables carry their numbers.
    assert cells(driver, "audit-2025-02-10")[1:5] == [FEB_10["incomer"], FEB_10["flats"], FEB_10["loss"], FEB_10["pct"]]
    assert cells(driver, "audit-2025-02-11")[-3:] == ["4.00", "0.00", "3.00"]
    assert cells(driver, "audit-total")[0] == "—"  # most days had no incomer reading: the month's loss is unknown
    assert cells(driver, "report-total")[:4] == ["2 meters", "", "116.75", "11.50"]
    # The 12th (the month's last begun day) so far: the neighbour and the incomer lack half hours.
    assert driver.find_element(By.ID, "quality-missing").text == "2"
    shot(driver, "site-month")

    # A day's flags from its row, then another month with the month control.
    driver.find_element(By.LINK_TEXT, "Tue 11").click()
    assert driver.find_element(By.ID, "quality-missing").text == "1"
    driver.execute_script("document.getElementById('month').value = '2025-01'")
    submit(driver, "show-month")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Palm Court (S1): January 2025"
    assert cells(driver, "audit-2025-01-31")[1:3] == ["—", "4.80"]  # the resident's 31st (48 × 0.1 kWh), no incomer
    assert drawn_lines(driver, "audit-loss-chart") == 0  # no day of January has a known loss: nothing drawn
    assert console_errors(driver) == []
