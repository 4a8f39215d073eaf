"""Fixtures of the contract suite: the deployment under test (`target`) and the suite's own fleet.

Without `--base-url` the suite starts its own deployment (tests/contract/local.py): a real
`gateway serve` wired over HTTP to a real `mock-meter-server`, on 127.0.0.1, and may do
anything to it. With `--base-url` it tests that deployment read-only unless `--allow-writes`.
Package-scoped: the processes stop when the suite is done, not at the end of the whole run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from tests.contract import local
from tests.contract.target import Target

COMMITTED_SPEC = Path(__file__).parents[2] / "openapi" / "openapi.yaml"


def _spec(base_url: str) -> dict:
    response = requests.get(base_url.rstrip("/") + "/openapi.json", timeout=15)
    if response.status_code == 200:
        return response.json()
    # An older gateway that does not publish its spec: hold it to this repository's.
    print(f"{base_url}/openapi.json answered {response.status_code}: checking against {COMMITTED_SPEC}")
    return yaml.safe_load(COMMITTED_SPEC.read_text("utf-8"))


@pytest.fixture(scope="package")
def local_deployment(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[local.LocalDeployment | None]:
    """The suite's own gateway + mock head-end (None when --base-url names another deployment)."""
    if pytestconfig.getoption("base_url"):
        yield None
        return
    with local.local_deployment(tmp_path_factory.mktemp("contract")) as deployment:
        yield deployment


@pytest.fixture(scope="package")
def target(pytestconfig: pytest.Config, local_deployment: local.LocalDeployment | None) -> Target:
    """The deployment under test and what the suite may do to it."""
    option = pytestconfig.getoption
    if local_deployment is not None:
        return Target(
            base_url=local_deployment.base_url,
            api_key=local_deployment.keys["operate"],
            site_id=local.SITE_ID,
            allow_writes=True,
            spec=_spec(local_deployment.base_url),
            local=local_deployment,
            ingest_key=local_deployment.keys["ingest"],
            meter_no=str(local_deployment.meters[-1]),  # the fleet leaves it alone
            dg_number=local.DG_NUMBER,
        )
    missing = [name for name in ("api_key", "site_id") if not option(name)]
    if missing:
        pytest.fail("with --base-url, also pass " + " and ".join(f"--{name.replace('_', '-')}" for name in missing))
    base_url = option("base_url")
    return Target(
        base_url=base_url,
        api_key=option("api_key"),
        site_id=option("site_id"),
        allow_writes=option("allow_writes"),
        spec=_spec(base_url),
        ingest_key=option("ingest_key"),
        meter_no=option("meter_no"),
        dg_number=option("dg_number"),
        callback_host=option("callback_host"),
    )


@pytest.fixture(scope="package")
def meter_no(target: Target) -> str:
    """A meter of the site: --meter-no, or the first one call 1 lists."""
    if target.meter_no:
        return target.meter_no
    body = target.checked("GET", "/api/v1/site/readings", params={"site_id": target.site_id}, expect=200)
    return str(body["data"][0]["meter_no"])


@pytest.fixture(scope="package")
def dg_number(target: Target) -> str:
    """A DG of the site: --dg-number (the suite's own deployment has DG1)."""
    if not target.dg_number:
        pytest.skip("no DG to ask about: pass --dg-number")
    return target.dg_number
