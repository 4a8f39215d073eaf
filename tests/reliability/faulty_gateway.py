"""`gateway serve` with test-only fault points armed (tests/reliability/faults.py), FOR TESTS ONLY.

    python -m tests.reliability.faulty_gateway --faults recharge.after_credit:2 --port 8080

The same settings (GATEWAY_* variables) and the same app as `gateway serve`, one process; the
app is wrapped so that it SIGKILLs itself at the armed points of the recharge path.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gateway.app import create_app
from gateway.serve import serve
from gateway.settings import Settings
from tests.reliability.faults import FaultPoints, with_faults


def fault_points(spec: str) -> FaultPoints:
    """The `--faults` argument: an unknown point or a bad count is a usage error."""
    try:
        return FaultPoints(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the gateway with the given fault points until it dies at one or is stopped."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", type=fault_points, required=True, help="point[:N],... (see faults.py)")
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    settings = Settings().with_overrides(port=args.port)
    serve(settings, build=lambda s: with_faults(create_app(s), args.faults))
    return 0


if __name__ == "__main__":
    sys.exit(main())
