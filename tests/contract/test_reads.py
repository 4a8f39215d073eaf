"""Read-only contract: the published spec and docs, the Factech read calls, errors and auth.

Safe against any deployment. Every reply is checked against the deployment's own spec.
"""

from __future__ import annotations

import contextlib
import time

import pytest

from tests.contract import local
from tests.contract.target import Target


def test_spec_and_docs_are_served(target: Target) -> None:
    spec = target.spec
    assert spec["openapi"].startswith("3.1")
    for path in ("/api/v1/site/readings", "/api/v1/meter/reading", "/meter"):
        assert path in spec["paths"]
    page = target.call("GET", "/docs", key=None)
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert target.call("GET", "/docs/static/swagger-ui-bundle.js", key=None).status_code == 200


def test_site_readings_while_the_fleet_posts(target: Target) -> None:
    """Call 1 polled while readings arrive: always the documented shape, registers never go back,
    and (with the suite's own fleet) every meter is heard from and the site's energy grows."""
    params = {"site_id": target.site_id}
    deployment = target.local
    fleet = local.fleet(deployment) if deployment else None
    quiet = {target.meter_no} if target.meter_no else set()  # the suite posts that one itself
    snapshots: list[local.Registers] = []
    with fleet or contextlib.nullcontext():
        deadline = time.monotonic() + (40 if fleet else 5)
        while time.monotonic() < deadline:
            body = target.checked("GET", "/api/v1/site/readings", params=params, expect=200)
            assert body["count"] == str(len(body["data"]))
            snapshots.append(local.registers(body))
            if fleet and local.fleet_done(snapshots, quiet=quiet):
                break
            time.sleep(0.5)
    if fleet:
        local.check_fleet_snapshots(snapshots, quiet=quiet)
    else:  # someone else's deployment: only that registers never go back
        local.check_fleet_snapshots(snapshots, quiet=set(snapshots[-1]), distinct_totals=1)


def test_meter_reading(target: Target, meter_no: str) -> None:
    body = target.checked("GET", "/api/v1/meter/reading", params={"meter_no": meter_no}, expect=200)
    assert body["data"]["meter_no"] == meter_no


def test_meter_changes_answer_details_or_not_details(target: Target) -> None:
    params = {"site_id": target.site_id, "from_date": "2000-01-01", "to_date": "2099-12-31"}
    body = target.checked("GET", "/api/v1/meter/changes", params=params, expect=(200, 404))
    if body["status"] != "success":
        assert body["message"] == "Not Details"


@pytest.mark.parametrize("path", ["/api/v1/dg/reading", "/api/v1/dg/status", "/api/v1/dg/fuel"])
def test_dg_calls(target: Target, dg_number: str, path: str) -> None:
    body = target.checked("GET", path, params={"site_id": target.site_id, "dg_number": dg_number}, expect=200)
    assert body["data"]["dg_no"] == dg_number


def test_bad_input_names_the_parameter(target: Target) -> None:
    body = target.checked("GET", "/api/v1/site/readings", params={}, expect=400)
    assert body["message"] == "Invalid input" and "site_id" in body["remarks"]
    reversed_range = {"site_id": target.site_id, "from_date": "2025-02-10", "to_date": "2025-02-01"}
    body = target.checked("GET", "/api/v1/meter/changes", params=reversed_range, expect=400)
    assert "from_date" in body["remarks"]


def test_keys_are_checked(target: Target) -> None:
    params = {"site_id": target.site_id}
    body = target.checked("GET", "/api/v1/site/readings", params=params, key=None, expect=401)
    assert body["message"] == "Unauthorized"
    target.checked("GET", "/api/v1/site/readings", params=params, key="mgk_not-a-key", expect=401)


def test_unknown_objects_are_not_found(target: Target) -> None:
    body = target.checked("GET", "/api/v1/site/readings", params={"site_id": "NO-SUCH-SITE-QA"}, expect=404)
    assert body == {"status": "error", "message": "Not Found", "count": "0", "data": None}  # the document's own
    target.checked("GET", "/api/v1/dg/status", params={"site_id": target.site_id, "dg_number": "NO-SUCH-DG"},
                   expect=404)  # fmt: skip
