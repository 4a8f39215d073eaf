"""Restore the SQLite database from a backup, into a stopped gateway.

Order of work, each step safe to be interrupted:
1. Take the database's file lock exclusively (storage/ops/locks.py): refused while any gateway
   process has the database open; and no gateway starts while the restore runs.
2. Copy the backup beside the database (same file system, so the final rename is atomic) and
   check that copy, the very bytes to be installed: a SQLite file, `PRAGMA integrity_check`
   ok, one `alembic_version` row naming a revision this code knows (so not newer than head).
3. Checkpoint the current database so its write-ahead log is empty, then copy it aside as
   `<database>.before-restore-<UTC time>` (with its -wal too, if a damaged database could
   not be checkpointed).
4. Remove the emptied -wal/-shm, then rename the checked copy over the database. The old log
   must go first: replayed onto another database file it would corrupt it.
5. Migrate the restored database to head, still holding the lock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from storage.db.engine import Database, create_private_file
from storage.db.migrate import current_revision, head_revision, known_revisions, upgrade
from storage.errors import DomainError
from storage.ops.backup import STAMP, database_files, fsync_path
from storage.ops.locks import database_lock

SQLITE_HEADER = b"SQLite format 3\x00"


class RestoreError(DomainError):
    """The restore was refused or failed; the message says why in one line. The database is unchanged."""


@dataclass(frozen=True)
class RestoreReport:
    """What a restore did."""

    source: Path
    database: Path
    previous: Path | None  # the database as it was before, set aside (None: there was none)
    backup_revision: str
    revision: str | None  # after migrating to head


async def restore_database(db: Database, *, source: Path, now: dt.datetime) -> RestoreReport:
    """Replace the SQLite database of `db` by the backup `source`, then migrate it to head.

    `db` must have no open connections (a stopped gateway): the file is replaced under it.
    """
    lock = database_lock(db)
    if not db.is_sqlite or lock is None:
        raise RestoreError("restore works on a SQLite database file; PostgreSQL is restored with pg_restore")
    if not lock.try_acquire(exclusive=True):
        raise RestoreError(f"a gateway is running on {db.sqlite_path} (it holds {lock.path}): stop it, then restore")
    try:
        report = await asyncio.to_thread(replace_database, Path(str(db.sqlite_path)), source=source, now=now)
        await upgrade(db)
        return dataclasses.replace(report, revision=await current_revision(db))
    finally:
        lock.release()


def replace_database(database: Path, *, source: Path, now: dt.datetime) -> RestoreReport:
    """Steps 2 to 4 above (blocking; the caller holds the file lock)."""
    _check_source_file(database, source)
    staging = database.with_name(database.name + ".restoring")
    try:
        try:
            staging.unlink(missing_ok=True)
            create_private_file(staging)  # copyfile keeps an existing file's mode
            shutil.copyfile(source, staging)
            fsync_path(staging)
        except OSError as exc:
            raise RestoreError(f"cannot copy {source} beside {database}: {exc.strerror or exc}") from None
        revision = check_backup(staging, shown_as=source)
        previous = _set_aside(database, now) if database.exists() else None
        try:
            for suffix in ("-wal", "-shm"):
                Path(f"{database}{suffix}").unlink(missing_ok=True)
            staging.replace(database)
            fsync_path(database.parent)
        except OSError as exc:
            raise RestoreError(f"cannot replace {database}: {exc.strerror or exc}") from None
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{staging}{suffix}").unlink(missing_ok=True)
    return RestoreReport(source=source, database=database, previous=previous, backup_revision=revision, revision=None)


def check_backup(path: Path, *, shown_as: Path | None = None) -> str:
    """The schema revision of a backup file, after checking it is a sound gateway database."""
    name = shown_as or path
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        rows = conn.execute("SELECT version_num FROM alembic_version").fetchall() if "alembic_version" in tables else []
    except sqlite3.DatabaseError as exc:
        raise RestoreError(f"{name} is corrupt: {exc}") from None
    finally:
        conn.close()
    if problems != ["ok"]:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise RestoreError(f"{name} is corrupt: {problems[0]}{more}")
    if "alembic_version" not in tables:
        raise RestoreError(f"{name} is not a gateway database: it has no alembic_version table")
    if len(rows) != 1:
        raise RestoreError(f"{name} is not a gateway database: alembic_version holds {len(rows)} revisions, not 1")
    revision = rows[0][0]
    if revision not in known_revisions():
        raise RestoreError(
            f"{name} was made by a newer gateway: its schema revision {revision} is unknown to this one "
            f"(newest here: {head_revision()}); restore it with that newer version"
        )
    return revision


def _check_source_file(database: Path, source: Path) -> None:
    if not source.exists():
        raise RestoreError(f"{source}: no such file")
    if not source.is_file():
        raise RestoreError(f"{source} is not a file")
    if source.resolve() in database_files(database):
        raise RestoreError(f"{source} is the database itself: give a backup file")
    try:
        with source.open("rb") as file:
            header = file.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise RestoreError(f"cannot read {source}: {exc.strerror or exc}") from None
    if header != SQLITE_HEADER:
        raise RestoreError(f"{source} is not a SQLite database")
    wal = Path(f"{source}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        # The main file alone would lack what that log holds: a live database, not a backup.
        raise RestoreError(
            f"{source} has a write-ahead log beside it ({wal}): make a backup of it with `gateway backup`"
        )


def _set_aside(database: Path, now: dt.datetime) -> Path:
    """Empty the database's log into it, then copy it aside; the copy's path."""
    try:
        conn = sqlite3.connect(database, isolation_level=None)
        try:
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        busy = 0  # a damaged database: its log, if any, is copied aside with it below
    if busy:
        raise RestoreError(f"another program has {database} open: close it, then restore")
    stamp = now.astimezone(dt.UTC).strftime(STAMP)
    aside, number = database.with_name(f"{database.name}.before-restore-{stamp}"), 1
    while aside.exists():
        number += 1
        aside = database.with_name(f"{database.name}.before-restore-{stamp}-{number}")
    try:
        for suffix in ("", "-wal"):
            original = Path(f"{database}{suffix}")
            if original.exists() and (not suffix or original.stat().st_size > 0):
                copy = Path(f"{aside}{suffix}")
                create_private_file(copy)
                shutil.copyfile(original, copy)
                fsync_path(copy)
    except OSError as exc:
        raise RestoreError(f"cannot copy {database} aside: {exc.strerror or exc}") from None
    return aside
