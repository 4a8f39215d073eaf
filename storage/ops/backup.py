"""Online backups of the SQLite database (the seed's recovery file, done safely).

A backup is taken with SQLite's backup API while the gateway keeps running. The source
connection holds one read transaction for the whole copy: in WAL mode that snapshot does not
stop writers (the log grows meanwhile, and is checkpointed once the copy ends), and it keeps
the copy consistent. (Without it each step of the backup opens a
new snapshot, and every commit by another connection restarts the copy from page one, so a
large database under steady ingest might never finish.) The copy is written under a temporary
name, flushed to disk, then renamed: a file with a backup's name is always a whole backup.

Backups in the backup directory are named `gateway-YYYYMMDDTHHMMSSZ.db` by the UTC time they
were taken (`-2`, `-3`, ... when several fall in one second); only the newest N are kept.
Functions here are blocking: the job and the CLI run them in a worker thread.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from storage.db.engine import create_private_file
from storage.errors import DomainError

STEP_PAGES = 1024  # pages per backup step (4 MiB at SQLite's default page size): progress granularity
STALE_PARTIAL_SECONDS = 24 * 3600  # an unfinished copy this old was left by a crash: removed
NAME = re.compile(r"^gateway-(\d{8}T\d{6}Z)(?:-(\d+))?\.db$")
STAMP = "%Y%m%dT%H%M%SZ"

Progress = Callable[[int, int], None]  # (pages copied, pages in all)


class BackupError(DomainError):
    """A backup could not be taken or written; the message says where and why in one line."""


class BackupCancelled(BackupError):
    """The backup was stopped on request (the gateway is shutting down); nothing was kept."""


@dataclass(frozen=True)
class BackupFile:
    """One finished backup."""

    path: Path
    bytes: int
    pages: int
    seconds: float


@dataclass(frozen=True)
class BackupReport:
    """A backup taken into the backup directory and the old ones it pruned."""

    backup: BackupFile
    removed: list[Path] = field(default_factory=list)


def backup_file(
    source: str | os.PathLike[str],
    target: Path,
    *,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    step_pages: int = STEP_PAGES,
) -> BackupFile:
    """Copy the database at `source` consistently into `target`, replacing it atomically."""
    source = Path(source)
    if not source.is_file():
        raise BackupError(f"no database at {source}")
    if target.resolve() in database_files(source):
        raise BackupError(f"{target} is the database itself: choose another file")
    if target.is_dir():
        raise BackupError(f"{target} is a directory: give a file name")
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    started = time.perf_counter()
    pages = 0

    def step(_status: int, remaining: int, total: int) -> None:
        nonlocal pages
        pages = total
        if should_stop is not None and should_stop():
            raise BackupCancelled("backup stopped: the gateway is shutting down")
        if progress is not None:
            progress(total - remaining, total)

    try:
        partial.unlink(missing_ok=True)
        create_private_file(partial)  # a backup holds webhook secrets and FINs: owner only
        src = sqlite3.connect(source, isolation_level=None)
        try:
            src.execute("PRAGMA busy_timeout=10000")
            src.execute("BEGIN")
            src.execute("SELECT count(*) FROM sqlite_master").fetchall()  # opens the read snapshot
            dst = sqlite3.connect(partial)
            try:
                src.backup(dst, pages=step_pages, progress=step)
            finally:
                dst.close()
            src.execute("COMMIT")
        finally:
            src.close()
        fsync_path(partial)
        partial.replace(target)
        fsync_path(target.parent)
    except BaseException as exc:
        for leftover in (partial, Path(f"{partial}-journal")):
            leftover.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise BackupError(f"cannot write {target}: {exc.strerror or exc}") from None
        if isinstance(exc, sqlite3.Error):
            raise BackupError(f"cannot back up {source}: {exc}") from None
        raise
    return BackupFile(path=target, bytes=target.stat().st_size, pages=pages, seconds=time.perf_counter() - started)


def backup_into(
    source: str | os.PathLike[str],
    directory: Path,
    *,
    now: dt.datetime,
    keep: int,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> BackupReport:
    """A backup named by `now` into `directory`, then the oldest pruned so `keep` remain."""
    backup = backup_file(source, _free_name(directory, now), progress=progress, should_stop=should_stop)
    return BackupReport(backup=backup, removed=prune(directory, keep=keep))


def list_backups(directory: Path) -> list[tuple[dt.datetime, Path]]:
    """The backups in `directory` with the time each was taken, oldest first."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = NAME.match(path.name)
        if match and path.is_file():
            taken = dt.datetime.strptime(match[1], STAMP).replace(tzinfo=dt.UTC)
            found.append(((taken, int(match[2] or 1)), path))
    return [(taken, path) for (taken, _), path in sorted(found)]


def newest_backup(directory: Path) -> dt.datetime | None:
    """When the newest backup in `directory` was taken, or None when there is none."""
    backups = list_backups(directory)
    return backups[-1][0] if backups else None


def prune(directory: Path, *, keep: int) -> list[Path]:
    """Remove all but the newest `keep` backups, and copies a crash left unfinished; what went."""
    backups = [path for _, path in list_backups(directory)]
    removed = backups[: max(0, len(backups) - keep)]
    cutoff = time.time() - STALE_PARTIAL_SECONDS
    removed += [p for p in directory.glob(".gateway-*.partial") if p.stat().st_mtime < cutoff]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def _free_name(directory: Path, now: dt.datetime) -> Path:
    """A name after every backup of the same second (numbers go up, even past pruned ones)."""
    stamp = now.astimezone(dt.UTC).strftime(STAMP)
    numbers = [
        int(match[2] or 1)
        for match in map(NAME.match, os.listdir(directory) if directory.is_dir() else [])
        if match and match[1] == stamp
    ]
    number = max(numbers, default=0) + 1
    return directory / (f"gateway-{stamp}.db" if number == 1 else f"gateway-{stamp}-{number}.db")


def database_files(database: Path) -> set[Path]:
    """The database file and the files SQLite and the gateway keep beside it."""
    main = database.resolve()
    return {main, *(main.with_name(main.name + suffix) for suffix in ("-wal", "-shm", "-journal", ".lock"))}


def fsync_path(path: Path) -> None:
    """Flush a file (or a directory, so a rename in it is durable) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
