"""The `gateway` maintenance commands: the rollup by hand, the seed's legacy files, and SQLite
backup and restore. `gateway.cli` parses the command line and calls them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from gateway.errors import day_input
from gateway.settings import Settings
from storage import days
from storage.clock import Clock
from storage.db.engine import Database, create_private_file
from storage.errors import InvalidInput
from storage.legacy import legacy_import, seed_files
from storage.ops import backup
from storage.ops.restore import restore_database

PROGRESS_MIN_ITEMS = 5000  # import-legacy prints progress only for files at least this big
BACKUP_PROGRESS_MIN_PAGES = 25_600  # backup prints progress only for databases this big (100 MiB at 4 KiB pages)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def cmd_rollup(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Roll up due days (catch-up, late packets), or one given day, with a line per day."""

    def progress(number: int, total: int, rolled: days.RolledUp) -> None:
        if total > 1:
            _progress(f"[{number}/{total}] site {rolled.site_id} day {rolled.day}: {rolled.meters} meters")

    now = Clock().now()
    if args.day is None:
        report = await days.roll_up_due(db, now=now, site_id=args.site, progress=progress)
    else:
        day = day_input(args.day, "--day")
        report = await days.roll_up_date(db, day=day, now=now, site_id=args.site, progress=progress)
    return {
        "rolled_days": len(report.days),
        "meters": sum(r.meters for r in report.days),
        "days": [
            {"site_id": r.site_id, "day": r.day.isoformat(), "meters": r.meters, "reason": r.reason}
            for r in report.days
        ],
    }


def _write_whole(target: Path, text: str) -> None:
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    create_private_file(partial, parents=False)  # names, FINs and balances: owner only
    partial.write_text(text, encoding="utf-8")
    partial.replace(target)  # readers never see half a file


async def cmd_export_legacy(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any] | None:
    """Write the seed's master database JSON to standard output or --output FILE."""
    document = await seed_files.export_master(db, site_id=args.site)
    text = seed_files.master_json(document)
    if args.output is None:
        sys.stdout.write(text)
        return None
    target = Path(args.output)
    try:
        await asyncio.to_thread(_write_whole, target, text)
    except OSError as exc:
        raise InvalidInput(f"cannot write {args.output}: {exc.strerror}") from None
    dated = sum(len(entry) - len(legacy_import.FIELDS) for entry in document.values())
    return {"output": str(target), "meters": len(document), "daily_totals": dated}


async def cmd_import_legacy(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Read a master database file into a site in one transaction (nothing on any problem)."""
    try:
        text = await asyncio.to_thread(Path(args.file).read_bytes)
    except OSError as exc:
        raise InvalidInput(f"cannot read {args.file}: {exc.strerror}") from None

    def progress(what: str, done: int, total: int) -> None:
        if total >= PROGRESS_MIN_ITEMS:
            _progress(f"import-legacy: {done}/{total} {what}")

    report = await legacy_import.import_master(
        db,
        site_id=args.site,
        text=text,
        now=Clock().now(),
        max_interval_kwh=settings.max_interval_kwh,
        progress=progress,
    )
    return report.as_dict()


def _sqlite_only(db: Database, command: str, instead: str) -> None:
    if not db.is_sqlite:
        raise InvalidInput(
            f"gateway {command} works on the SQLite database; on PostgreSQL use {instead} (README, Operations)"
        )


async def cmd_backup(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """A consistent online backup: into the backup directory (keeping the newest N) or --output FILE."""
    _sqlite_only(db, "backup", "pg_dump -Fc")
    shown = 0  # tenths of the copy already reported

    def progress(done: int, total: int) -> None:
        nonlocal shown
        tenth = done * 10 // total
        if total >= BACKUP_PROGRESS_MIN_PAGES and tenth > shown:
            shown = tenth
            _progress(f"backup: {done}/{total} pages ({tenth * 10}%)")

    source = str(db.sqlite_path)
    if args.output is not None:
        taken = await asyncio.to_thread(backup.backup_file, source, Path(args.output), progress=progress)
        removed: list[Path] = []
    else:
        report = await asyncio.to_thread(
            backup.backup_into,
            source,
            settings.backup_path,
            now=Clock().now(),
            keep=settings.backup_keep,
            progress=progress,
        )
        taken, removed = report.backup, report.removed
    return {
        "backup": str(taken.path),
        "bytes": taken.bytes,
        "pages": taken.pages,
        "seconds": round(taken.seconds, 3),
        "removed": [str(path) for path in removed],
    }


async def cmd_restore(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Replace the database of a stopped gateway by a checked backup, then migrate it to head."""
    _sqlite_only(db, "restore", "pg_restore")
    report = await restore_database(db, source=Path(args.file), now=Clock().now())
    return {
        "restored": str(report.source),
        "database": str(report.database),
        "previous": str(report.previous) if report.previous else None,
        "backup_revision": report.backup_revision,
        "revision": report.revision,
    }
