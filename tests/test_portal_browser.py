"""The portal in real headless Chromium (Debian's chromium + chromedriver, driven by Selenium)
against the gateway serving on 127.0.0.1: register, log in, every period with its chart drawn,
the CSV download, another meter refused, the staff dashboard with two regions.

Screenshots of the main pages go to var/screenshots/ for a person to look at. Without
Chromium these tests skip with the reason; on CI (CI=true) they fail instead. They run on
SQLite only: the pages' queries are covered on both databases by the HTTP tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from aiohttp import web

from gateway.app import create_app
from storage.calendar import PERIODS
from storage.clock import FixedClock
from storage.db.engine import Database
from storage.db.migrate import upgrade
from storage.db.models import PortalUser
from tests.portaldata import NEIGHBOUR, NOW, PASSWORD, RESIDENT, STAFF, add_accounts, make_world, portal_settings

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "var" / "screenshots"
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)
WAIT = 20  # seconds for a page or a chart


T = TypeVar("T")


def _require_chromium() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        reason = f"browser tests need Debian's chromium and chromium-driver: missing {', '.join(missing)}"
        if ON_CI:
            pytest.fail(reason)
        pytest.skip(reason)


class ServerThread:
    """The gateway app served on 127.0.0.1 by its own event loop in a thread (Selenium blocks)."""

    def __init__(self, make_app: Callable[[], web.Application]) -> None:
        self._make_app = make_app
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="portal-server", daemon=True)
        self.url = ""

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        runner = web.AppRunner(self._make_app())
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the gateway did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)


async def _resident_registers_in_the_test(db: Database) -> None:
    async with db.transaction() as session:  # the resident's account is made through the form
        account = (await session.execute(PortalUser.__table__.select().where(PortalUser.meter_no == RESIDENT))).first()
        await session.execute(PortalUser.__table__.delete().where(PortalUser.id == account.id))


def portal_world(directory: Path, then: Callable[[Database], Awaitable[T]] | None = None) -> tuple[str, T | None]:
    """A SQLite database in `directory` with the portal's world and accounts (tests.portaldata),
    then `then`; its URL and what `then` returned. Skips when Chromium is missing."""
    _require_chromium()
    url = f"sqlite+aiosqlite:///{directory / 'gateway.db'}"

    async def prepare() -> T | None:
        db = Database(url)
        try:
            await upgrade(db)
            await make_world(db)
            await add_accounts(db)
            return await then(db) if then is not None else None
        finally:
            await db.dispose()

    return url, asyncio.run(prepare())


@contextlib.contextmanager
def serving(url: str) -> Iterator[str]:
    """The portal's gateway on `url`'s database, at the world's fixed time, in a thread."""
    with ServerThread(lambda: create_app(portal_settings(url), clock=FixedClock(NOW))) as running:
        yield running.url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The gateway with two regions' data and a staff account (the resident registers in the test)."""
    url, _ = portal_world(tmp_path_factory.mktemp("browser"), _resident_registers_in_the_test)
    with serving(url) as base:
        yield base


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Headless Chromium with a fresh profile and a download folder."""
    _require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_AVOID_STATS"] = "true"  # Selenium Manager: no usage statistics sent
    profile = tmp_path_factory.mktemp("chromium-profile")
    downloads = tmp_path_factory.mktemp("downloads")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads  # type: ignore[attr-defined]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def shot(driver, name: str) -> None:  # type: ignore[no-untyped-def]
    """Save a full-height screenshot of the page."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, max(height + 120, 600))
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def fill(driver, fields: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    for name, value in fields.items():
        box = driver.find_element(By.NAME, name)
        box.clear()
        box.send_keys(value)


def submit(driver, button_id: str) -> None:  # type: ignore[no-untyped-def]
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    button = driver.find_element(By.ID, button_id)
    button.click()

    def left_the_page(_driver) -> bool:  # type: ignore[no-untyped-def]
        # Chromium reports a node of an unloaded page either as stale or as "Node with given id
        # does not belong to the document" (a plain WebDriverException): both mean it is gone.
        try:
            button.is_enabled()
        except WebDriverException:
            return True
        return False

    WebDriverWait(driver, WAIT).until(left_the_page)
    # The old page is gone; wait for the new one to finish loading before touching its nodes
    # (a busy machine otherwise lets a lookup land in a document that is about to be replaced).
    WebDriverWait(driver, WAIT).until(lambda d: d.execute_script("return document.readyState") == "complete")


def drawn_bars(driver, chart_id: str) -> int:  # type: ignore[no-untyped-def]
    """Wait until Plotly drew the chart; the number of bar marks (SVG paths) it drew."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    WebDriverWait(driver, WAIT).until(
        lambda d: d.find_element(By.ID, chart_id).get_attribute("data-rendered") == "true"
    )
    return len(driver.find_elements(By.CSS_SELECTOR, f"#{chart_id} g.trace.bars g.point path"))


def console_errors(driver) -> list[str]:  # type: ignore[no-untyped-def]
    """Errors the page logged (a blocked script, a CSP violation); error statuses of pages the
    test asked for on purpose (a refused form, a 404) are not script errors."""
    return [
        e["message"]
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]
    ]


def set_phone(driver, phone: bool) -> None:  # type: ignore[no-untyped-def]
    driver.set_window_size(390, 844) if phone else driver.set_window_size(1280, 1000)


def test_resident_registers_reads_every_period_and_downloads_csv(server: str, browser) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    driver = browser
    set_phone(driver, False)
    driver.get(f"{server}/")
    shot(driver, "01-landing")
    driver.find_element(By.ID, "new-user").click()
    assert driver.current_url == f"{server}/register"

    fill(driver, {"meter_no": "999-999-999", "fin_no": "WRONG", "password": PASSWORD, "password_again": PASSWORD})
    submit(driver, "register")
    assert "do not match a meter that can be registered" in driver.find_element(By.ID, "fin_no-error").text
    shot(driver, "02-register-error")
    fill(driver, {"fin_no": "A3389127I", "password": PASSWORD, "password_again": PASSWORD})
    submit(driver, "register")
    assert driver.current_url == f"{server}/profile/{RESIDENT}"
    assert driver.find_element(By.ID, "balance").text == "₹150.00"
    shot(driver, "03-profile")

    copied = driver.get_cookie("gateway_portal")
    submit(driver, "logout")
    driver.add_cookie({"name": copied["name"], "value": copied["value"], "path": "/"})
    driver.get(f"{server}/profile/{RESIDENT}")
    assert driver.current_url == f"{server}/profile"  # logout ended the session, copies included
    fill(driver, {"login": "999-999-999", "password": PASSWORD})
    submit(driver, "log-in")
    assert driver.current_url == f"{server}/profile/{RESIDENT}"

    driver.find_element(By.LINK_TEXT, "Password").click()
    new_password = PASSWORD + " renewed"
    fill(driver, {"current_password": PASSWORD, "password": new_password, "password_again": new_password})
    submit(driver, "change-password")
    assert "Your password was changed" in driver.find_element(By.ID, "password-changed").text
    shot(driver, "03b-password-changed")
    submit(driver, "logout")
    driver.get(f"{server}/profile")
    fill(driver, {"login": "999-999-999", "password": new_password})
    submit(driver, "log-in")
    assert driver.current_url == f"{server}/profile/{RESIDENT}"

    expected_bars = {"prev-hr": 2, "current-day": 21, "current-week": 4, "current-month": 4, "prev-month": 1}
    for period in PERIODS:
        driver.get(f"{server}/profile/{RESIDENT}/consumption?period={period}")
        # Grid and DG traces: one mark per bar with energy; zero-height bars draw nothing.
        assert drawn_bars(driver, "consumption-chart") >= expected_bars[period], period
        axis = driver.find_element(By.CSS_SELECTOR, "#consumption-chart .ytitle").text
        assert axis == "Energy (kWh)"
        if period in ("current-day", "current-week"):
            shot(driver, f"04-consumption-{period}")
    assert console_errors(driver) == []

    driver.get(f"{server}/profile/{RESIDENT}/consumption?period=current-week")
    driver.find_element(By.ID, "csv").click()
    target = driver.downloads / "meter-999999999-current-week-2025-02-10.csv"
    deadline = time.monotonic() + WAIT
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = target.read_text().splitlines()
    assert lines[0].startswith("day,grid_kwh,dg_kwh,total_kwh,intervals,")
    assert lines[2].startswith("2025-02-11,20.000,10.000,30.000,48,") and len(lines) == 8

    set_phone(driver, True)
    driver.get(f"{server}/profile/{RESIDENT}/consumption?period=current-day")
    assert drawn_bars(driver, "consumption-chart") > 0
    shot(driver, "05-consumption-phone")
    set_phone(driver, False)

    driver.get(f"{server}/profile/{NEIGHBOUR}")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Page not found"
    assert "555-555-555" not in driver.page_source
    shot(driver, "06-other-meter-refused")
    driver.get(f"{server}/profile/{RESIDENT}/consumption?period=fortnight")
    assert "not a period" in driver.find_element(By.ID, "error-message").text


def test_staff_dashboard_shows_two_regions(server: str, browser) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    driver = browser
    driver.delete_all_cookies()
    set_phone(driver, False)
    driver.get(f"{server}/management-dashboard/")
    assert driver.current_url == f"{server}/management-dashboard/login"
    fill(driver, {"login": STAFF, "password": PASSWORD})
    submit(driver, "log-in")
    driver.get(f"{server}/management-dashboard/?period=current-week")
    assert drawn_bars(driver, "regions-chart") >= 3  # North grid, North DG, South grid
    assert drawn_bars(driver, "sites-chart") >= 3
    regions = [row.text.split()[0] for row in driver.find_elements(By.CSS_SELECTOR, "#regions tbody tr")]
    assert regions == ["North", "South"]
    assert driver.find_element(By.ID, "cut-count").text == "1"
    assert console_errors(driver) == []
    shot(driver, "07-dashboard")
