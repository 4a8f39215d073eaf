"""Every portal page passes axe-core (run inside headless Chromium) with no serious or critical
violation (issue 22): landing, registration, logins, the resident's pages, the dashboard, the
missing-intervals drill-down and an error page, at 1280 px and on a 390 px phone.

axe-core comes with the `axe-selenium-python` test dependency (its bundled axe.min.js).
"""

from __future__ import annotations

import pytest

from tests.portaldata import NEIGHBOUR, RESIDENT, STAFF
from tests.test_portal_browser import browser  # noqa: F401 (a fixture)
from tests.test_portal_prepaid_browser import log_in_as, prepaid_server, set_phone  # noqa: F401

SERIOUS = ("serious", "critical")
PUBLIC = ("/", "/register", "/profile", "/management-dashboard/login")
DAY, WEEK = "current-day", "current-week"
RESIDENT_PAGES = (f"/profile/{RESIDENT}", f"/profile/{RESIDENT}/consumption?period={DAY}",
                  f"/profile/{RESIDENT}/consumption?period={WEEK}", "/profile/password", "/profile/1",
                  f"/profile/{RESIDENT}/year")  # fmt: skip
STAFF_PAGES = ("/management-dashboard/", "/management-dashboard/?q=U5", "/management-dashboard/missing?site=S1",
               f"/profile/{NEIGHBOUR}/consumption?period=current-day")  # fmt: skip


def serious_violations(driver) -> list[str]:  # type: ignore[no-untyped-def]
    from axe_selenium_python import Axe

    axe = Axe(driver)
    axe.inject()
    results = axe.run()
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results["violations"]
        if v["impact"] in SERIOUS
    ]


@pytest.mark.parametrize("phone", [False, True], ids=["1280px", "390px"])
def test_every_page_passes_axe(prepaid_server, browser, phone: bool) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    server, _ = prepaid_server
    driver = browser
    found: dict[str, list[str]] = {}
    driver.delete_all_cookies()
    set_phone(driver, phone)
    for path in PUBLIC:
        driver.get(server + path)
        found[path] = serious_violations(driver)
    log_in_as(driver, server, str(RESIDENT), staff=False)
    for path in RESIDENT_PAGES:
        driver.get(server + path)
        found[path] = serious_violations(driver)
    log_in_as(driver, server, STAFF, staff=True)
    for path in STAFF_PAGES:
        driver.get(server + path)
        found[path] = serious_violations(driver)
    assert {path: problems for path, problems in found.items() if problems} == {}
