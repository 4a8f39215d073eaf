"""Run schemathesis (its CLI, `st run`) from the committed spec against a running gateway.

Every check is on (`--checks all`), with valid and invalid data (`--mode all`) and requests
without or with wrong credentials (the `ignored_auth` check). The few per-operation settings
below are where JSON Schema cannot say what the gateway rightly refuses; each says why.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SPEC = Path(__file__).parents[2] / "openapi" / "openapi.yaml"
# A valid request may still be refused where a rule is beyond JSON Schema: schemathesis's
# default statuses for valid data, plus these.
POSITIVE = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
REFUSED_ANYWAY = {
    # Packets outside the accepted time window (5 minutes ahead, 35 days back): relative to now.
    ("/meter", "POST"): ["400"],
    ("/dg", "POST"): ["400"],
    # from_date must not be after to_date: a rule across two parameters.
    ("/api/v1/meter/changes", "GET"): ["400"],
    # reading_start_date must not precede meter_change_date, nor the change date lie ahead.
    ("/api/v1/admin/meter-changes", "POST"): ["400"],
    # A timezone must be an IANA name this system knows.
    ("/api/v1/admin/sites", "POST"): ["400"],
    # A URL's grammar (host names, ports) is wider than a pattern can say; and a host must
    # resolve to an allowed address (422).
    ("/api/v1/dg/sensing", "POST"): ["400", "422"],
    # The same URL rules for a site's webhook.
    ("/api/v1/admin/sites/{site_id}/webhook", "PUT"): ["400", "422"],
    # A tariff may not start in the past (relative to now), and a pattern cannot rule out 2025-02-30.
    ("/api/v1/admin/sites/{site_id}/tariffs", "POST"): ["400"],
    # A meter's role across fields and stored state: role dg needs the dg_no of a DG of the site,
    # no other role takes one, and a bulk meter has no balance.
    ("/api/v1/admin/sites/{site_id}/meters", "POST"): ["400"],
    ("/api/v1/admin/meters/{meter_no}", "PATCH"): ["400"],
}
SETTINGS = """
# Too large (413) is a rejection too: a batch or a form over the limits.
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]

# Revoke and rotate one sacrificial key: schemathesis learns names from replies, and revoking
# the key it runs with would leave every later request a 401.
[[operations]]
include-path-regex = "^/api/v1/admin/keys/\\\\{name\\\\}/"
parameters = { "name" = "{victim}" }
"""


def _operation_settings() -> str:
    blocks = []
    for (path, method), extra in REFUSED_ANYWAY.items():
        statuses = ", ".join(f'"{status}"' for status in POSITIVE + extra)
        blocks.append(
            f'[[operations]]\ninclude-path = "{path}"\ninclude-method = "{method}"\n'
            f"checks.positive_data_acceptance.expected-statuses = [{statuses}]\n"
        )
    return "\n".join(blocks)


def write_config(path: Path, *, api_key: str, ingest_key: str, victim_key: str) -> Path:
    """A schemathesis.toml with the deployment's credentials, one per security scheme."""
    path.write_text(
        f'[auth.openapi.ApiKey]\napi_key = "{api_key}"\n\n'
        f'[auth.openapi.IngestBearer]\nbearer = "{ingest_key}"\n'
        + SETTINGS.replace("{victim}", victim_key)
        + "\n"
        + _operation_settings(),
        "utf-8",
    )
    return path


def run(
    base_url: str,
    config: Path,
    *,
    phases: str = "examples,coverage,fuzzing",
    max_examples: int = 10,
    report_dir: Path,
    seed: int = 1,
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """`st run` against `base_url`; its exit status, output and a JUnit report in `report_dir`."""
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file", str(config),
        "run", str(SPEC),
        "--url", base_url,
        "--checks", "all",
        "--mode", "all",
        "--phases", phases,
        "--max-examples", str(max_examples),
        "--seed", str(seed),
        # One worker: hypothesis parses lambdas with `ast`, which CPython 3.11 can fail at from two
        # threads at once ("AST constructor recursion depth mismatch").
        "--workers", "1",
        "--request-timeout", "10",
        "--generation-database", "none",
        "--report", "junit",
        "--report-dir", str(report_dir),
        "--no-color",
        "--output-truncate", "true",
        *extra,
    ]  # fmt: skip
    env = {**os.environ, "SCHEMATHESIS_HOOKS": ""}
    report_dir.mkdir(parents=True, exist_ok=True)  # also its working directory: its cache stays out of the tree
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=600, cwd=report_dir)
