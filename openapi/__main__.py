"""`python -m openapi [--check]`: write openapi/openapi.yaml, or check that it is up to date."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from openapi.build import build_spec, render

SPEC_PATH = Path(__file__).with_name("openapi.yaml")


def main(argv: list[str] | None = None) -> int:
    """Regenerate the committed spec (exit 1 with --check when it is stale)."""
    parser = argparse.ArgumentParser(prog="python -m openapi", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed file differs")
    args = parser.parse_args(argv)
    text = render(build_spec())
    if args.check:
        if not SPEC_PATH.exists() or SPEC_PATH.read_text("utf-8") != text:
            print(f"{SPEC_PATH} is stale: run `python -m openapi`", file=sys.stderr)
            return 1
        return 0
    SPEC_PATH.write_text(text, "utf-8")
    print(f"wrote {SPEC_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
