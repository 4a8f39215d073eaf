"""The `gateway` command line. Every subcommand takes `--database-url`; commands that create or
change something print one JSON object with `--json`. Errors print one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from marshmallow import ValidationError
from pydantic import ValidationError as SettingsError

from gateway import prepaid_cli, user_cli
from gateway.audit_cli import cmd_audit, cmd_meter_legacy_ingest, print_events, record_cli_change
from gateway.maintenance import (
    cmd_backup,
    cmd_export_legacy,
    cmd_import_legacy,
    cmd_restore,
    cmd_rollup,
)
from gateway.metrics_dir import share_metrics_between_workers
from gateway.report_cli import add_report_command
from gateway.settings import Settings
from schemas.admin import MeterChangeCreate, MeterChangeOut, SiteOut
from schemas.fields import amount_flag, describe_errors, known_timezone, meter_number
from storage.db.engine import Database
from storage.db.migrate import upgrade
from storage.errors import Conflict, DomainError, InvalidInput
from storage.ops.locks import database_lock
from storage.registry import dgs, keys, meter_changes, meters, sites

Command = Callable[[argparse.Namespace, Settings, Database], Awaitable[dict[str, Any] | None]]


def _meter_no(text: str) -> int:
    """A meter number argument (schemas.fields.meter_number, the API's rule)."""
    meter_no = meter_number(text)
    if meter_no is None:
        raise InvalidInput(f"meter number must be a positive whole number, got {text!r}")
    return meter_no


def _amount(text: str, flag: str, *, places: int = 2, minimum: Decimal | None = None) -> Decimal:
    """A money or kWh flag: a plain decimal, by the API's rules (schemas.fields.Amount)."""
    try:
        return amount_flag(text, flag, places=places, minimum=minimum)
    except ValidationError as err:
        raise InvalidInput(str(err.messages[0])) from None  # type: ignore[index]


def _timezone(name: str) -> str:
    """A site's timezone flag (schemas.fields.known_timezone, the API's rule)."""
    if not known_timezone(name):
        raise InvalidInput(f"unknown timezone {name!r}", {"timezone": ["Unknown IANA timezone."]})
    return name


def _key_json(api_key: Any) -> dict[str, Any]:
    return {
        "name": api_key.name,
        "role": api_key.role,
        "sites": api_key.sites,
        "created_at": api_key.created_at.isoformat(),
        "revoked": api_key.revoked_at is not None,
    }


async def cmd_db_upgrade(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Apply every pending migration."""
    await upgrade(db)
    from storage.db.migrate import current_revision

    return {"revision": await current_revision(db)}


async def cmd_site_add(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Register a site."""
    site = await sites.add_site(
        db,
        site_id=args.site_id,
        name=args.name,
        region=args.region,
        timezone=_timezone(args.timezone),
        tariff_grid=_amount(args.tariff_grid, "--tariff-grid", minimum=Decimal(0)),
        tariff_dg=_amount(args.tariff_dg, "--tariff-dg", minimum=Decimal(0)),
        auto_cut=args.auto_cut,
    )
    return dict(SiteOut().dump(site))


async def cmd_meter_add(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Register a meter; its device token is printed once."""
    created = await meters.add_meter(
        db,
        meter_no=_meter_no(args.meter_no),
        site_id=args.site,
        unit_no=args.unit,
        consumer_name=args.name,
        fin_no=args.fin,
        balance=_amount(args.balance, "--balance"),
        start_grid=_amount(args.start_grid, "--start-grid", places=3, minimum=Decimal(0)),
        start_dg=_amount(args.start_dg, "--start-dg", places=3, minimum=Decimal(0)),
        role=args.role,
        dg_no=args.dg_no,
    )
    meter = created.meter
    return {
        "meter_no": str(meter.meter_no),
        "site_id": meter.site_id,
        "unit_no": meter.unit_no,
        "balance": str(meter.balance),
        "role": meter.role,
        "dg_no": meter.dg_no,
        "token": created.token,
    }


async def cmd_meter_replace(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Replace a meter by a new one (same checks as the admin API); the new meter's token is printed once."""
    given = {
        "site_id": args.site,
        "old_meter_no": args.old_meter_no,
        "new_meter_no": args.new_meter_no,
        "meter_change_date": args.date,
        "reading_start_date": args.reading_start,
        "new_start_dg": args.new_start_dg,
        "new_start_grid": args.new_start_grid,
    }
    try:
        change = MeterChangeCreate().load({k: v for k, v in given.items() if v is not None})
    except ValidationError as err:
        raise InvalidInput(describe_errors(err.messages)) from None  # type: ignore[arg-type]
    replaced = await meter_changes.replace_meter(db, **change)
    return {**MeterChangeOut().dump(replaced.change), "token": replaced.token}


async def cmd_dg_add(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Register a diesel generator."""
    dg = await dgs.add_dg(db, site_id=args.site, dg_no=args.dg_no, meter_no=args.meter or "")
    return {"site_id": dg.site_id, "dg_no": dg.dg_no, "meter_no": dg.meter_no, "status": dg.status}


async def cmd_key_create(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Create an API key; the key is printed once."""
    created = await keys.create_key(db, name=args.name, role=args.role, sites=args.site)
    return {**_key_json(created.api_key), "key": created.key}


async def cmd_key_list(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """List every key (never the secrets)."""
    return {"keys": [_key_json(k) for k in await keys.list_keys(db)]}


async def cmd_key_revoke(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Revoke a key by name."""
    return _key_json(await keys.revoke_key(db, name=args.name))


async def cmd_key_rotate(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Give a key a new secret, printed once."""
    rotated = await keys.rotate_key(db, name=args.name)
    return {**_key_json(rotated.api_key), "key": rotated.key}


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", help="overrides GATEWAY_DATABASE_URL")
    common.add_argument("--json", action="store_true", help="print one JSON object")

    parser = argparse.ArgumentParser(prog="gateway", description="Meter gateway for iSocietyManager.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", parents=[common], help="run the HTTP gateway")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, help="processes sharing the port (PostgreSQL only; default 1)")
    serve.set_defaults(func=None, serve=True)
    demo = sub.add_parser("demo", help="run the gateway with simulated sites, meters, DGs and head-end")
    demo.add_argument("--port", type=int, default=8080, help="gateway port (default 8080)")
    demo.add_argument("--headend-port", type=int, default=9090, help="mock head-end port (default 9090)")
    demo.add_argument("--meters", type=int, default=40, help="meters over both sites, 2-200, first run only (40)")
    demo.add_argument("--speed", type=float, default=1800.0, help="fleet clock, simulated s per real s (1800)")
    demo.add_argument("--data-dir", type=Path, default=Path("var"), help="database and demo.json (default var)")
    demo.set_defaults(func=None, demo=True)

    db_cmd = sub.add_parser("db", help="database maintenance").add_subparsers(dest="db_command", required=True)
    db_cmd.add_parser("upgrade", parents=[common], help="apply migrations").set_defaults(func=cmd_db_upgrade)

    site = sub.add_parser("site", help="sites").add_subparsers(dest="site_command", required=True)
    site_add = site.add_parser("add", parents=[common], help="register a site")
    site_add.add_argument("site_id")
    site_add.add_argument("--name", required=True)
    site_add.add_argument("--region", required=True)
    site_add.add_argument("--timezone", default="Asia/Kolkata")
    site_add.add_argument("--tariff-grid", default="8.00")
    site_add.add_argument("--tariff-dg", default="20.00")
    site_add.add_argument("--auto-cut", action=argparse.BooleanOptionalAction, default=True)
    site_add.set_defaults(func=cmd_site_add, audit="site.create")
    prepaid_cli.add_commands(sub, site, common)

    meter = sub.add_parser("meter", help="meters").add_subparsers(dest="meter_command", required=True)
    meter_add = meter.add_parser("add", parents=[common], help="register a meter (prints its token)")
    meter_add.add_argument("meter_no")
    meter_add.add_argument("--site", required=True)
    meter_add.add_argument("--unit", required=True)
    meter_add.add_argument("--name", default="")
    meter_add.add_argument("--fin", default="")
    meter_add.add_argument("--balance", default="0")
    meter_add.add_argument("--start-grid", default="0")
    meter_add.add_argument("--start-dg", default="0")
    meter_add.add_argument(
        "--role", default="flat", help="flat (billed), or a bulk meter never billed: incomer, dg (with --dg-no)"
    )
    meter_add.add_argument("--dg-no", help="the site's DG that a --role dg meter measures")
    meter_add.set_defaults(func=cmd_meter_add, audit="meter.create")
    meter_replace = meter.add_parser(
        "replace", parents=[common], help="replace a meter by a new one (prints the new token)"
    )
    meter_replace.add_argument("old_meter_no")
    meter_replace.add_argument("new_meter_no")
    meter_replace.add_argument("--site", required=True)
    meter_replace.add_argument("--date", required=True, help="meter change date, YYYY-MM-DD")
    meter_replace.add_argument("--reading-start", help="new meter's reading start date (default: --date)")
    meter_replace.add_argument("--new-start-dg", help="new meter's DG register at install (default 0)")
    meter_replace.add_argument("--new-start-grid", help="new meter's grid register at install (default 0)")
    meter_replace.set_defaults(func=cmd_meter_replace, audit="meter.replace")
    legacy = meter.add_parser(
        "legacy-ingest", parents=[common], help="let one meter post readings without a token (on), or stop it (off)"
    )
    legacy.add_argument("meter_no")
    legacy.add_argument("state", choices=("on", "off"))
    legacy.set_defaults(func=cmd_meter_legacy_ingest, audit="meter.edit")

    dg = sub.add_parser("dg", help="diesel generators").add_subparsers(dest="dg_command", required=True)
    dg_add = dg.add_parser("add", parents=[common], help="register a DG")
    dg_add.add_argument("dg_no")
    dg_add.add_argument("--site", required=True)
    dg_add.add_argument("--meter")
    dg_add.set_defaults(func=cmd_dg_add, audit="dg.create")

    key = sub.add_parser("key", help="API keys").add_subparsers(dest="key_command", required=True)
    key_create = key.add_parser("create", parents=[common], help="create a key (prints it once)")
    key_create.add_argument("--name", required=True)
    key_create.add_argument("--role", required=True, choices=keys.ROLES)
    key_create.add_argument("--site", required=True, action="append", help="site id, repeatable; '*' for all")
    key_create.set_defaults(func=cmd_key_create, audit="key.create")
    key.add_parser("list", parents=[common], help="list keys").set_defaults(func=cmd_key_list)
    for name, func in (("revoke", cmd_key_revoke), ("rotate", cmd_key_rotate)):
        p = key.add_parser(name, parents=[common], help=f"{name} a key")
        p.add_argument("name")
        p.set_defaults(func=func, audit=f"key.{name}")

    user_cli.add_commands(sub, common)

    rollup = sub.add_parser("rollup", parents=[common], help="roll days up into daily totals")
    rollup.add_argument("--day", help="roll this local day YYYY-MM-DD (default: every due day)")
    rollup.add_argument("--site", help="only this site")
    rollup.set_defaults(func=cmd_rollup)

    export = sub.add_parser("export-legacy", parents=[common], help="write the seed's master database JSON")
    export.add_argument("--site", help="only this site's meters")
    export.add_argument("--output", help="write to this file (default: standard output)")
    export.set_defaults(func=cmd_export_legacy)

    importer = sub.add_parser("import-legacy", parents=[common], help="read a master database JSON file")
    importer.add_argument("file")
    importer.add_argument("--site", required=True, help="the site the meters belong to")
    importer.set_defaults(func=cmd_import_legacy, audit="site.import_legacy")

    trail = sub.add_parser("audit", parents=[common], help="list the audit trail (500 events at a time)")
    trail.add_argument("--site", help="only this site's events")
    trail.add_argument("--after", help="events after this id, or this date-time (e.g. 2026-11-20T00:00:00Z)")
    trail.set_defaults(func=cmd_audit)
    add_report_command(sub, common)  # gateway report SITE --month YYYY-MM

    # Neither migrates first: a backup copies the database as it is, a restore replaces it.
    backup_cmd = sub.add_parser("backup", parents=[common], help="back up the SQLite database while it runs")
    backup_cmd.add_argument("--output", help="write the backup to this file (default: the backup directory)")
    backup_cmd.set_defaults(func=cmd_backup, migrate=False)
    restore = sub.add_parser("restore", parents=[common], help="restore the SQLite database of a stopped gateway")
    restore.add_argument("file", help="a backup made by `gateway backup` or the backup job")
    restore.set_defaults(func=cmd_restore, migrate=False, exclusive=True)
    return parser


def _print_result(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, default=str))
        return
    if "events" in result:
        print_events(result["events"])
        return
    for listing in ("tariffs", "holidays"):
        if listing in result:
            for row in result[listing]:
                print("\t".join(str(value) for value in row.values()))
            return
    if "users" in result:
        for u in result["users"]:
            state = "disabled" if u["disabled"] else "active"
            print(f"{u['kind']}\t{u['login']}\t{','.join(u['sites'])}\t{state}\t{u['last_login_at'] or 'never'}")
        return
    if "keys" in result:
        for k in result["keys"]:
            state = "revoked" if k["revoked"] else "active"
            print(f"{k['name']}\t{k['role']}\t{','.join(k['sites'])}\t{state}\t{k['created_at']}")
        return
    for field, value in result.items():
        print(f"{field}: {len(value) if isinstance(value, list) else value}")


async def _run(args: argparse.Namespace, settings: Settings) -> dict[str, Any] | None:
    db = Database(settings.database_url)
    # Every command but restore holds the SQLite file lock shared, as a running gateway does.
    lock = None if getattr(args, "exclusive", False) else database_lock(db)
    if lock is not None and not lock.try_acquire(exclusive=False):
        raise Conflict(f"{db.sqlite_path} is being restored: try again when `gateway restore` has finished")
    try:
        if db.is_sqlite and getattr(args, "migrate", True) and args.func is not cmd_db_upgrade:
            await upgrade(db)
        result = await args.func(args, settings, db)
        await record_cli_change(args, db, result)
        return result
    finally:
        await db.dispose()
        if lock is not None:
            lock.release()


def _missing_for_workers() -> str | None:
    if importlib.util.find_spec("gunicorn") is None:
        return "--workers needs gunicorn: install the `postgres` extra (pip install 'meter-gateway[postgres]')"
    return None


def _serve(settings: Settings) -> int:
    """`gateway serve`: one process, or `settings.workers` under gunicorn (PostgreSQL only)."""
    if settings.workers > 1 and settings.is_sqlite:
        print(
            f"error: --workers {settings.workers} needs PostgreSQL: SQLite has one writer by design "
            "(set GATEWAY_DATABASE_URL=postgresql+asyncpg://..., or serve with one process)",
            file=sys.stderr,
        )
        return 1
    if settings.workers > 1 and (why := _missing_for_workers()) is not None:
        print(f"error: {why}", file=sys.stderr)
        return 1
    if settings.workers > 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        share_metrics_between_workers()
    if settings.workers == 1:
        from gateway.serve import serve

        serve(settings)
    else:
        from gateway.workers import serve_workers

        serve_workers(settings)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gateway` console script."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings().with_overrides(
            database_url=getattr(args, "database_url", None),
            host=getattr(args, "host", None),
            port=getattr(args, "port", None),
            workers=getattr(args, "workers", None),
        )
    except SettingsError as exc:
        print(
            f"error: invalid configuration: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}",
            file=sys.stderr,
        )
        return 1
    if getattr(args, "serve", False):
        return _serve(settings)
    if getattr(args, "demo", False):
        from gateway.demo import run  # only the demo needs the child-process machinery

        return run(args, settings)
    try:
        result = asyncio.run(_run(args, settings))
    except DomainError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot reach the database: {exc}", file=sys.stderr)
        return 1
    if result is not None:  # None: the command wrote its own output
        _print_result(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
