"""A longer schemathesis run, stateful phase included (sequences of calls along the spec's OpenAPI links:
create a site, then read, edit and add meters and DGs to it; create a key, then rotate and revoke it).

Starts its own gateway + mock head-end on 127.0.0.1 (as tests/contract does) and runs `st run`
from the committed spec with every check. Usage:

    .venv/bin/python bench/schemathesis_stateful.py [--max-examples 100] [--seed 1] [--keep DIR]

Exit status 0 when schemathesis found nothing; its report is printed, and a JUnit file is left in
the data directory (a temporary one unless --keep).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.contract import fuzz, local


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-examples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="data directory to keep (database, logs, report)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = args.keep or Path(scratch)
        with local.local_deployment(data_dir) as deployment:
            config = fuzz.write_config(
                data_dir / "schemathesis.toml",
                api_key=deployment.keys["admin"],
                ingest_key=deployment.keys["ingest"],
                victim_key=local.VICTIM_KEY,
            )
            started = time.monotonic()
            result = fuzz.run(
                deployment.base_url,
                config,
                phases="examples,coverage,fuzzing,stateful",
                max_examples=args.max_examples,
                seed=args.seed,
                report_dir=data_dir / "report",
            )
            print(result.stdout)
            print(result.stderr, file=sys.stderr)
            print(f"schemathesis exit {result.returncode} after {time.monotonic() - started:.0f} s")
            return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
