"""The resident's monthly statement in real headless Chromium (as tests/test_portal_browser.py):
log in, open the statement, pick another month, and print it with the print stylesheet (the
page header and the controls hidden, the statement kept). SQLite only, like the other browser
tests; skipped without Chromium (failed on CI).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.portaldata import PASSWORD, RESIDENT
from tests.test_portal_browser import browser, console_errors, fill, portal_world, serving, shot, submit

__all__ = ["browser"]  # the module's Chromium fixture, shared with the portal's browser tests


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The gateway with the portal's world and the resident's account."""
    url, _ = portal_world(tmp_path_factory.mktemp("statement-browser"))
    with serving(url) as base:
        yield base


def test_resident_opens_picks_and_prints_the_monthly_statement(server: str, browser) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    driver = browser
    driver.set_window_size(1280, 1000)
    driver.get(f"{server}/profile")
    fill(driver, {"login": str(RESIDENT), "password": PASSWORD})
    submit(driver, "log-in")
    driver.find_element(By.ID, "statement-link").click()
    assert driver.current_url == f"{server}/profile/{RESIDENT}/statement"
    assert driver.find_element(By.TAG_NAME, "h1").text == "Statement for February 2025"
    assert driver.find_element(By.ID, "check").text.endswith("(ok)")
    days = driver.find_elements(By.CSS_SELECTOR, "#days tbody tr")
    assert len(days) >= 12  # 1-12 February, up to today
    shot(driver, "statement")

    # On paper: the statement without the site's header, the month picker or the buttons.
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        assert not driver.find_element(By.CSS_SELECTOR, "header.top").is_displayed()
        assert not driver.find_element(By.ID, "print").is_displayed()
        assert driver.find_element(By.ID, "days").is_displayed()
        assert driver.find_element(By.ID, "closing").is_displayed()
    finally:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    assert driver.find_element(By.ID, "print").is_displayed()

    # Another month through the picker (January: the meter's first month).
    driver.execute_script("document.getElementById('month').value = '2025-01'")
    submit(driver, "show-month")
    assert driver.current_url.endswith("/statement?month=2025-01")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Statement for January 2025"
    assert driver.find_element(By.ID, "check").text.endswith("(ok)")
    assert console_errors(driver) == []
