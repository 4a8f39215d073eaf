"""`mock-meter-server`: the vendor head-end (always) and, with `--gateway`, a fleet of meters and
DGs posting to that gateway, in one process. `python -m mock_meter_server --help` lists the flags.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from marshmallow import ValidationError

from mock_meter_server import curves
from mock_meter_server.app import create_app
from mock_meter_server.faults import Faults
from mock_meter_server.fleet import FleetConfig, fleet_context
from schemas.headend import FaultsSchema, field_errors


def _list(value: str) -> list[str]:
    """A comma-separated list ("123,456"), blanks dropped."""
    return [item.strip() for item in value.split(",") if item.strip()]


def _start(value: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(value)
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError("give a timezone, e.g. 2025-02-08T00:00:00Z")
    return when.astimezone(dt.UTC)


def build_parser() -> argparse.ArgumentParser:
    """Every flag, grouped as in the README."""
    parser = argparse.ArgumentParser(
        prog="mock-meter-server",
        description="A stand-in vendor head-end, and optionally a fleet of meters/DGs posting to a gateway.",
    )
    serve = parser.add_argument_group("head-end")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=9090)
    serve.add_argument(
        "--token",
        default=os.environ.get("MOCK_METER_SERVER_TOKEN", ""),
        help="require Authorization: Bearer TOKEN on /headend and /control (env MOCK_METER_SERVER_TOKEN)",
    )
    serve.add_argument("--seed", type=int, default=0, help="seeds faults, tokens and the fleet (default 0)")
    serve.add_argument("--state-file", type=Path, help="keep relay states in this JSON file across restarts")
    serve.add_argument("--log-level", default="INFO")

    faults = parser.add_argument_group("fault injection (also POST /control/faults at run time)")
    faults.add_argument("--latency-ms", type=int, default=0, help="delay before every head-end answer")
    faults.add_argument("--failure-rate", type=float, default=0.0, help="share of calls answered 500/503")
    faults.add_argument("--drop-rate", type=float, default=0.0, help="share of calls whose connection drops")
    faults.add_argument(
        "--drop-when",
        choices=("before", "after"),
        default="after",
        help="drop before acting, or after (the command is done, the reply lost; default)",
    )
    faults.add_argument("--unreachable", type=_list, default=[], help="meters that time out (504): 123,456")
    faults.add_argument(
        "--queue-credits-seconds", type=float, default=0.0, help="credits answer queued, apply N s later"
    )
    faults.add_argument("--refuse-credits", type=_list, default=[], help="meters whose credits are refused")
    faults.add_argument("--refuse-commands", type=_list, default=[], help="meters refusing relay/load")
    faults.add_argument("--max-credit", default="100000.00", help="larger credits are refused")

    fleet = parser.add_argument_group("fleet simulator (only with --gateway)")
    fleet.add_argument("--gateway", help="gateway base URL to post /meter and /dg to, e.g. http://127.0.0.1:8080")
    fleet.add_argument("--meters", type=int, default=10, help="number of meters (default 10)")
    fleet.add_argument("--first-meter", type=int, default=100000001, help="first meter number")
    fleet.add_argument("--meter-file", type=Path, help="meter numbers, one a line (overrides --meters)")
    fleet.add_argument(
        "--ingest-key",
        default=os.environ.get("MOCK_FLEET_INGEST_KEY"),
        help="API key (role ingest) for the site (env MOCK_FLEET_INGEST_KEY)",
    )
    fleet.add_argument("--token-file", type=Path, help='JSON {"meter_no": "device token"}; its meters by default')
    fleet.add_argument("--batch", type=int, default=0, help="post JSON arrays of up to N packets (concentrator)")
    fleet.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second (60)")
    fleet.add_argument("--start", type=_start, help="simulated start, ISO with zone (default: 24 h ago)")
    fleet.add_argument("--free-run", action="store_true", help="let simulated time run past real time")
    fleet.add_argument("--intervals", type=int, help="stop after N half hours (default: run until stopped)")
    fleet.add_argument("--site-id", help="site of the DGs")
    fleet.add_argument("--dgs", type=_list, default=[], help="DG numbers at --site-id: DG1,DG2")
    fleet.add_argument(
        "--dg-start-kwh",
        type=float,
        default=0.0,
        help="the DGs' energy registers at the start, kWh (a gateway refuses registers going backwards)",
    )
    fleet.add_argument("--timezone", default="Asia/Kolkata", help="local time of the load curves")
    fleet.add_argument("--dup-rate", type=float, default=0.01, help="share of packets sent twice")
    fleet.add_argument("--late-rate", type=float, default=0.01, help="share of packets sent 1-6 intervals late")
    fleet.add_argument("--outage-rate", type=float, default=0.04, help="chance per half hour a DG starts")
    fleet.add_argument(
        "--dg-run-by", type=int, metavar="K", help="if no DG has run by interval K of the run, one starts in it"
    )
    fleet.add_argument("--concurrency", type=int, default=32, help="requests in flight at most")
    fleet.add_argument("--progress-seconds", type=float, default=5.0, help="real seconds between progress lines")
    return parser


def faults_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Faults:
    """The fault flags, checked by the same schema as `POST /control/faults`."""
    raw: dict[str, Any] = {
        "latency_ms": args.latency_ms,
        "failure_rate": args.failure_rate,
        "drop_rate": args.drop_rate,
        "drop_when": args.drop_when,
        "unreachable": args.unreachable,
        "queue_credits_seconds": args.queue_credits_seconds,
        "refuse_credits": args.refuse_credits,
        "refuse_commands": args.refuse_commands,
        "max_credit": args.max_credit,
    }
    try:
        loaded = FaultsSchema().load(raw)
    except ValidationError as exc:
        errors = field_errors(exc)
        parser.error("; ".join(f"--{name.replace('_', '-')}: {' '.join(why)}" for name, why in errors.items()))
    faults = Faults()
    faults.update(loaded)
    return faults


def fleet_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> FleetConfig:
    """The fleet flags as a FleetConfig, refusing combinations that cannot work."""
    tokens: dict[str, str] = {}
    if args.token_file:
        try:
            tokens = {str(k): str(v) for k, v in json.loads(args.token_file.read_text()).items()}
        except (OSError, ValueError, AttributeError) as exc:
            parser.error(f"--token-file: {exc}")
    if args.meter_file:
        try:
            lines = args.meter_file.read_text().splitlines()
        except OSError as exc:
            parser.error(f"--meter-file: {exc}")
        meters = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    elif tokens:
        meters = list(tokens)
    else:
        meters = [str(args.first_meter + i) for i in range(args.meters)]
    if args.batch and tokens:
        parser.error("--batch posts many meters in one request: use --ingest-key, not --token-file")
    if args.dgs and not (args.site_id and args.ingest_key):
        parser.error("--dgs needs --site-id and --ingest-key (DG controllers post with a site key)")
    if args.speed <= 0 or args.batch < 0 or args.concurrency < 1 or args.dg_start_kwh < 0:
        parser.error("--speed must be > 0, --batch >= 0, --concurrency >= 1, --dg-start-kwh >= 0")
    start = args.start or curves.floor_half_hour(dt.datetime.now(dt.UTC) - dt.timedelta(hours=24))
    return FleetConfig(
        gateway=args.gateway,
        meters=meters,
        start=start,
        speed=args.speed,
        seed=args.seed,
        free_run=args.free_run,
        ingest_key=args.ingest_key,
        tokens=tokens,
        batch=args.batch,
        site_id=args.site_id,
        dgs=args.dgs,
        dg_start_kwh=args.dg_start_kwh,
        timezone=args.timezone,
        intervals=args.intervals,
        dup_rate=args.dup_rate,
        late_rate=args.late_rate,
        outage_rate=args.outage_rate,
        dg_run_by=args.dg_run_by,
        concurrency=args.concurrency,
        progress_seconds=args.progress_seconds,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the mock head-end (and run the fleet when `--gateway` is given) until Ctrl-C."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    faults = faults_from(args, parser)
    fleet = fleet_from(args, parser) if args.gateway else None
    app = create_app(
        faults=faults,
        token=args.token,
        seed=args.seed,
        fleet=fleet_context(fleet) if fleet else None,
        state_file=args.state_file,
    )
    auth = "bearer token required" if args.token else "no auth"
    # Bound here, so the line names the real port even for --port 0 (a fleet's own head-end).
    try:
        listener = socket.create_server((args.host, args.port))
    except OSError as exc:
        parser.error(f"cannot listen on {args.host}:{args.port}: {exc}")
    port = listener.getsockname()[1]
    print(f"mock-meter-server: head-end on http://{args.host}:{port}/headend/v1 ({auth})", flush=True)
    if fleet:
        print(
            f"mock-meter-server: fleet of {len(fleet.meters)} meters and {len(fleet.dgs)} DGs -> "
            f"{fleet.gateway} from {curves.iso_z(fleet.start)} at x{fleet.speed:g}",
            flush=True,
        )
    web.run_app(app, sock=listener, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
