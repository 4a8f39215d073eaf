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
from pathlib import Path
from typing import Any

from pydantic import ValidationError as SettingsError

from gateway import prepaid_cli, registry_cli, user_cli
from gateway.audit_cli import cmd_audit, print_events, record_cli_change
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
from storage.db.engine import Database
from storage.db.migrate import upgrade
from storage.errors import Conflict, DomainError
from storage.ops.locks import database_lock

Command = Callable[[argparse.Namespace, Settings, Database], Awaitable[dict[str, Any] | None]]


async def cmd_db_upgrade(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Apply every pending migration."""
    await upgrade(db)
    from storage.db.migrate import current_revision

    return {"revision": await current_revision(db)}


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

    site = registry_cli.add_commands(sub, common)
    prepaid_cli.add_commands(sub, site, common)

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
