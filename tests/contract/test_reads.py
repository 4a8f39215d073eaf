"""Read-only contract: the published spec and docs, the Factech read calls, errors and auth.

Safe against any deployment. Every reply is checked against the deployment's own spec.
"""

from __future__ import annotations

import contextlib
import itertools
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


def _registers(body: dict) -> dict[str, tuple[float, float, str]]:
    return {row["meter_no"]: (float(row["grid"]), float(row["dg"]), row["date_time"]) for row in body["data"]}


def test_site_readings_while_the_fleet_posts(target: Target, request: pytest.FixtureRequest) -> None:
    """Call 1 polled while readings arrive: always the documented shape, registers never go back,
    and (with the suite's own fleet) every meter is heard from and the totals grow."""
    params = {"site_id": target.site_id}
    deployment = target.local
    fleet = local.fleet(deployment) if deployment else None
    snapshots = []
    with fleet or contextlib.nullcontext():
        deadline = time.monotonic() + (40 if fleet else 5)
        while time.monotonic() < deadline:
            body = target.checked("GET", "/api/v1/site/readings", params=params, expect=200)
            assert body["count"] == str(len(body["data"]))
            snapshots.append(_registers(body))
            if (
                fleet
                and len({sum(v[0] for v in s.values()) for s in snapshots}) >= 4
                and all(v[2] for meter, v in snapshots[-1].items() if meter != target.meter_no)
            ):
                break
            time.sleep(0.5)
    for before, after in itertools.pairwise(snapshots):
        for meter, (grid, dg, _when) in before.items():
            assert after[meter][0] >= grid and after[meter][1] >= dg, f"meter {meter}'s registers went back"
    if fleet:
        totals = [sum(v[0] for v in s.values()) for s in snapshots]
        assert len(set(totals)) >= 4, f"the totals did not grow while the fleet posted: {totals}"
        heard = [m for m, v in snapshots[-1].items() if v[2]]
        assert len(heard) >= len(snapshots[-1]) - 1, "every meter of the fleet is heard from"


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
