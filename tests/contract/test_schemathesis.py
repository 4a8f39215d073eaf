"""Schemathesis from the committed spec against a running gateway (its own, fresh deployment).

All checks, valid and invalid data, requests without or with wrong credentials; bounded to a
few examples per operation so it stays quick (`make test`). Any failure fails the run, with
schemathesis's report (each failure with a curl line to reproduce it) in the assertion.
A longer run, with the stateful phase: `bench/schemathesis_stateful.py`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract import fuzz, local
from tests.contract.target import Target

MAX_EXAMPLES = 10


@pytest.fixture(scope="module")
def fuzz_deployment(target: Target, tmp_path_factory: pytest.TempPathFactory) -> Iterator[local.LocalDeployment]:
    """A deployment of its own: schemathesis creates, changes and retires things at random."""
    if target.local is None:
        pytest.skip("schemathesis runs against the suite's own deployment (`st run` reaches any other one)")
    with local.local_deployment(tmp_path_factory.mktemp("schemathesis")) as deployment:
        yield deployment


def test_schemathesis_finds_nothing(fuzz_deployment: local.LocalDeployment, tmp_path: Path) -> None:
    config = fuzz.write_config(
        tmp_path / "schemathesis.toml",
        api_key=fuzz_deployment.keys["admin"],
        ingest_key=fuzz_deployment.keys["ingest"],
        victim_key=local.VICTIM_KEY,
    )
    result = fuzz.run(fuzz_deployment.base_url, config, max_examples=MAX_EXAMPLES, report_dir=tmp_path / "report")
    summary = re.search(r"Test cases:\n\s*(.+)", result.stdout)
    print(f"schemathesis: {summary.group(1) if summary else '?'}")  # shown with -s / in the CI log on failure
    assert result.returncode == 0, result.stdout[-15000:] + result.stderr[-3000:]
    assert summary and "generated" in summary.group(1)
