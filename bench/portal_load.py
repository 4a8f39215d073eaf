"""A cold consumption page over a slow link, in headless Chromium: how long until its chart is
drawn, with the full Plotly bundle and with the partial one the portal serves (issue 22).

The link is Chromium's network throttling (DevTools `Network.emulateNetworkConditions`):
1.6 Mbps down, 750 kbps up, 150 ms latency, cache disabled. Run: `.venv/bin/python bench/portal_load.py`
(needs Debian's chromium and chromium-driver, like the browser tests).
"""

from __future__ import annotations

import asyncio
import gzip
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway import portal
from gateway.app import create_app
from storage.clock import FixedClock
from storage.db.engine import Database
from storage.db.migrate import upgrade
from tests.portaldata import NOW, PASSWORD, RESIDENT, add_accounts, make_world, portal_settings
from tests.test_portal_browser import CHROMEDRIVER, CHROMIUM, FLAGS, ServerThread

SLOW = {"offline": False, "latency": 150, "downloadThroughput": 1_600_000 / 8, "uploadThroughput": 750_000 / 8}
RUNS = 3


def full_bundle() -> Path:
    spec = importlib.util.find_spec("plotly")
    assert spec and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"


def measure(url: str) -> list[float]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(f"{url}/profile")
        driver.find_element(By.NAME, "login").send_keys(str(RESIDENT))
        driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "log-in").click()
        WebDriverWait(driver, 30).until(lambda d: d.current_url.endswith(f"/profile/{RESIDENT}"))
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
        driver.execute_cdp_cmd("Network.emulateNetworkConditions", SLOW)
        seconds = []
        for _ in range(RUNS):
            started = time.monotonic()
            driver.get(f"{url}/profile/{RESIDENT}/consumption?period=current-day")
            WebDriverWait(driver, 120).until(
                lambda d: d.find_element(By.ID, "consumption-chart").get_attribute("data-rendered") == "true"
            )
            seconds.append(time.monotonic() - started)
        return seconds
    finally:
        driver.quit()


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    url = f"sqlite+aiosqlite:///{folder / 'gateway.db'}"

    async def prepare() -> None:
        db = Database(url)
        await upgrade(db)
        await make_world(db)
        await add_accounts(db)
        await db.dispose()

    asyncio.run(prepare())
    for name, bundle in (("full plotly.min.js", full_bundle()), ("partial plotly-basic.min.js", portal.PLOTLY_BASIC)):
        portal.PLOTLY_BASIC = bundle
        portal._plotly_asset.cache_clear()  # the next app serves this bundle
        raw = bundle.read_bytes()
        packed = gzip.compress(raw, compresslevel=9)
        with ServerThread(lambda: create_app(portal_settings(url), clock=FixedClock(NOW))) as server:
            seconds = measure(server.url)
        print(
            f"{name:28} {len(raw):>9,} B, {len(packed):>9,} B gzip | chart drawn in "
            f"{' '.join(f'{s:.1f}' for s in seconds)} s (median {statistics.median(seconds):.1f} s)"
        )


if __name__ == "__main__":
    main()
