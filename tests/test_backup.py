"""Backup and restore of the SQLite database: `gateway backup`, `gateway restore`, the backup job."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sqlite3
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway import cli, maintenance
from gateway.app import create_app
from gateway.app_keys import SCHEDULER
from gateway.settings import Settings
from scheduler.backup import BackupJob
from storage.clock import FixedClock
from storage.db.engine import Database
from storage.db.migrate import head_revision
from storage.ops import backup
from storage.ops.locks import SqliteFileLock
from tests.daydata import add_readings, make_site

NOW = dt.datetime(2025, 2, 8, 6, 0, tzinfo=dt.UTC)


def gateway(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str, str]:
    code = cli.main([*argv, "--database-url", url])
    out, err = capsys.readouterr()
    return code, out, err


def gateway_json(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> dict:
    code, out, err = gateway(capsys, url, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def refused(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> str:
    """The one error line of a command that must fail."""
    code, out, err = gateway(capsys, url, *argv)
    assert code == 1 and out == "", (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def path_of(url: str) -> Path:
    return Path(url.removeprefix("sqlite+aiosqlite:///"))


def edit(path: Path, sql: str) -> None:
    """One statement, committed, the connection closed (its write-ahead log emptied and removed)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(sql)
    finally:
        conn.close()


def contents(path: Path) -> dict[str, list[tuple]]:
    """Every table's rows, in a stable order."""
    conn = sqlite3.connect(path)
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}
    finally:
        conn.close()


async def some_readings(url: str, meter_no: int, day: str) -> None:
    db = Database(url)
    try:
        start = dt.datetime.fromisoformat(f"{day}T00:00:00+00:00")
        await add_readings(db, meter_no, [start + dt.timedelta(minutes=30 * i) for i in range(4)], received_at=NOW)
    finally:
        await db.dispose()


def test_restore_gives_back_exactly_the_backup(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path
) -> None:
    gateway_json(capsys, sqlite_url, "site", "add", "S1", "--name", "Green Park", "--region", "North")
    gateway_json(capsys, sqlite_url, "meter", "add", "101", "--site", "S1", "--unit", "A-1", "--balance", "50")
    gateway_json(capsys, sqlite_url, "key", "create", "--name", "ism", "--role", "read", "--site", "S1")
    asyncio.run(some_readings(sqlite_url, 101, "2025-02-07"))
    saved = tmp_path / "saved.db"
    taken = gateway_json(capsys, sqlite_url, "backup", "--output", str(saved))
    assert taken["backup"] == str(saved) and taken["bytes"] == saved.stat().st_size and taken["removed"] == []
    at_backup = contents(saved)
    assert at_backup["meter"] and at_backup["reading"] and at_backup["api_key"]

    # More writes after the backup: a site, a meter, readings, a revoked key.
    gateway_json(capsys, sqlite_url, "site", "add", "S2", "--name", "Lake View", "--region", "East")
    gateway_json(capsys, sqlite_url, "meter", "add", "202", "--site", "S2", "--unit", "B-1")
    gateway_json(capsys, sqlite_url, "key", "revoke", "ism")
    asyncio.run(some_readings(sqlite_url, 101, "2025-02-08"))
    database = path_of(sqlite_url)
    before_restore = contents(database)
    assert before_restore != at_backup

    restored = gateway_json(capsys, sqlite_url, "restore", str(saved))
    assert restored["restored"] == str(saved) and restored["database"] == str(database)
    assert restored["backup_revision"] == restored["revision"] == head_revision()
    assert contents(database) == at_backup
    previous = Path(restored["previous"])
    assert previous.name.startswith("gateway.db.before-restore-") and contents(previous) == before_restore
    assert not Path(f"{database}-wal").exists() or Path(f"{database}-wal").stat().st_size == 0
    # The restored database serves again: a command reads and writes it.
    gateway_json(capsys, sqlite_url, "meter", "add", "303", "--site", "S1", "--unit", "A-2")


def test_restore_refuses_a_file_that_is_not_a_sqlite_database(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    before = contents(path_of(sqlite_url))
    assert refused(capsys, sqlite_url, "restore", str(text)) == f"error: {text} is not a SQLite database\n"
    assert refused(capsys, sqlite_url, "restore", str(tmp_path / "missing.db")).endswith("missing.db: no such file\n")
    assert contents(path_of(sqlite_url)) == before


def test_restore_refuses_a_corrupt_file(capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path) -> None:
    gateway_json(capsys, sqlite_url, "site", "add", "S1", "--name", "Green Park", "--region", "North")
    damaged = tmp_path / "damaged.db"
    gateway_json(capsys, sqlite_url, "backup", "--output", str(damaged))
    with damaged.open("r+b") as file:  # the header stays, the pages after the first few do not
        file.seek(3 * 4096)
        file.write(os.urandom(8 * 4096))
    before = contents(path_of(sqlite_url))
    assert refused(capsys, sqlite_url, "restore", str(damaged)).startswith(f"error: {damaged} is corrupt: ")
    assert contents(path_of(sqlite_url)) == before
    assert [p.name for p in path_of(sqlite_url).parent.iterdir() if "restor" in p.name] == []


def test_restore_refuses_a_backup_from_a_newer_schema(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path
) -> None:
    newer = tmp_path / "newer.db"
    gateway_json(capsys, sqlite_url, "backup", "--output", str(newer))
    edit(newer, "UPDATE alembic_version SET version_num = '0099_future'")
    err = refused(capsys, sqlite_url, "restore", str(newer))
    assert err == (
        f"error: {newer} was made by a newer gateway: its schema revision 0099_future is unknown to this one "
        f"(newest here: {head_revision()}); restore it with that newer version\n"
    )


def test_restore_refuses_a_sqlite_file_that_is_not_a_gateway_database(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path
) -> None:
    other = tmp_path / "other.db"
    edit(other, "CREATE TABLE t (x)")
    err = refused(capsys, sqlite_url, "restore", str(other))
    assert err == f"error: {other} is not a gateway database: it has no alembic_version table\n"


def test_restore_refuses_a_directory_and_a_file_with_a_live_log(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path
) -> None:
    assert refused(capsys, sqlite_url, "restore", str(tmp_path)) == f"error: {tmp_path} is not a file\n"
    live = tmp_path / "live.db"
    backup.backup_file(path_of(sqlite_url), live)
    Path(f"{live}-wal").write_bytes(b"\0" * 64)
    assert refused(capsys, sqlite_url, "restore", str(live)) == (
        f"error: {live} has a write-ahead log beside it ({live}-wal): make a backup of it with `gateway backup`\n"
    )


def test_restore_refuses_while_another_program_reads_the_database(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path
) -> None:
    saved = tmp_path / "saved.db"
    backup.backup_file(path_of(sqlite_url), saved)
    database = path_of(sqlite_url)
    reader = sqlite3.connect(database, isolation_level=None)  # e.g. the sqlite3 shell, not a gateway
    writer = sqlite3.connect(database, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM site").fetchall()
        writer.execute(
            "INSERT INTO site (id, name, region, timezone, auto_cut, created_at)"
            " VALUES ('S9', 'n', 'r', 'UTC', 0, '2025-01-01')"
        )
        before = contents(database)
        err = refused(capsys, sqlite_url, "restore", str(saved))
        assert err == f"error: another program has {database} open: close it, then restore\n"
        assert contents(database) == before
    finally:
        reader.close()
        writer.close()
    assert sorted(p.name for p in database.parent.iterdir() if "restor" in p.name) == []


def test_backup_refuses_a_missing_database_and_a_directory_as_output(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path
) -> None:
    err = refused(capsys, sqlite_url, "backup", "--output", str(tmp_path))
    assert err == f"error: {tmp_path} is a directory: give a file name\n"
    with pytest.raises(backup.BackupError, match=r"^no database at .*nothing\.db$"):
        backup.backup_file(tmp_path / "nothing.db", tmp_path / "b.db")


async def test_restore_is_refused_while_a_gateway_holds_the_database(
    aiohttp_client, sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    saved = tmp_path / "saved.db"
    backup.backup_file(path_of(sqlite_url), saved)
    client: TestClient = await aiohttp_client(create_app(Settings(database_url=sqlite_url, scheduler=False)))
    # The CLI runs its own event loop: in a thread, as it would in its own process.
    code = await asyncio.to_thread(cli.main, ["restore", str(saved), "--database-url", sqlite_url])
    err = capsys.readouterr().err
    lock = f"{path_of(sqlite_url)}.lock"
    assert (
        code == 1
        and err == f"error: a gateway is running on {path_of(sqlite_url)} (it holds {lock}): stop it, then restore\n"
    )
    assert (await client.get("/healthz")).status == 200
    await client.close()
    code = await asyncio.to_thread(cli.main, ["restore", str(saved), "--database-url", sqlite_url])
    assert code == 0, capsys.readouterr().err


async def test_a_gateway_does_not_start_while_a_restore_holds_the_database(sqlite_url: str) -> None:
    restoring = SqliteFileLock(path_of(sqlite_url))
    assert restoring.try_acquire(exclusive=True)
    runner = web.AppRunner(create_app(Settings(database_url=sqlite_url, scheduler=False)))
    try:
        with pytest.raises(RuntimeError, match=r"gateway\.db is being restored \(`gateway restore` holds .*\.lock\)"):
            await runner.setup()
    finally:
        await runner.cleanup()
        restoring.release()


def test_backup_keeps_only_the_newest_n(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "backups"
    monkeypatch.setenv("GATEWAY_BACKUP_DIR", str(directory))
    monkeypatch.setenv("GATEWAY_BACKUP_KEEP", "3")
    taken = [gateway_json(capsys, sqlite_url, "backup") for _ in range(5)]
    names = [Path(t["backup"]).name for t in taken]
    assert all(backup.NAME.match(name) for name in names)
    assert sorted(p.name for p in directory.iterdir()) == sorted(names[2:])
    assert [Path(p).name for p in taken[3]["removed"] + taken[4]["removed"]] == names[:2]
    assert [path.name for _, path in backup.list_backups(directory)] == names[2:]  # oldest first


def test_backup_shows_progress_for_big_databases(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maintenance, "BACKUP_PROGRESS_MIN_PAGES", 1)
    code, out, err = gateway(capsys, sqlite_url, "backup", "--output", str(tmp_path / "b.db"))
    pages = sqlite3.connect(path_of(sqlite_url)).execute("PRAGMA page_count").fetchone()[0]
    assert code == 0 and err == f"backup: {pages}/{pages} pages (100%)\n"
    assert f"pages: {pages}" in out


def test_backup_refuses_to_write_over_the_database(capsys: pytest.CaptureFixture[str], sqlite_url: str) -> None:
    database = path_of(sqlite_url)
    for target in (database, Path(f"{database}-wal")):
        err = refused(capsys, sqlite_url, "backup", "--output", str(target))
        assert err == f"error: {target} is the database itself: choose another file\n"


def test_a_backup_is_one_snapshot_while_writes_go_on(sqlite_url: str, tmp_path: Path) -> None:
    source = path_of(sqlite_url)
    writer = sqlite3.connect(source, isolation_level=None)
    writer.execute("CREATE TABLE t (x)")
    writer.executemany("INSERT INTO t VALUES (?)", [(b"x" * 2000,) for _ in range(500)])
    steps = []

    def write_between_steps(done: int, total: int) -> None:
        steps.append(done)
        writer.execute("INSERT INTO t VALUES (1)")  # a commit by another connection

    taken = backup.backup_file(source, tmp_path / "b.db", progress=write_between_steps, step_pages=16)
    assert len(steps) > 10 and steps == sorted(steps)  # never restarted from page one
    assert taken.pages == steps[-1]
    assert sqlite3.connect(taken.path).execute("SELECT count(*) FROM t").fetchone() == (500,)
    assert writer.execute("SELECT count(*) FROM t").fetchone() == (500 + len(steps),)


def test_a_stopped_backup_leaves_nothing(sqlite_url: str, tmp_path: Path) -> None:
    with pytest.raises(backup.BackupCancelled):
        backup.backup_file(path_of(sqlite_url), tmp_path / "backups" / "b.db", should_stop=lambda: True)
    assert list((tmp_path / "backups").iterdir()) == []


async def test_the_backup_job_backs_up_when_due_and_keeps_n(sqlite_url: str, tmp_path: Path) -> None:
    db = Database(sqlite_url)
    directory = tmp_path / "backups"
    clock = FixedClock(NOW)
    job = BackupJob(db, clock, directory=directory, keep=2, every_minutes=120)
    try:
        assert job.interval == dt.timedelta(minutes=10)  # it looks every 10 minutes whether one is due
        first = await job.run()
        assert first is not None and first.backup.path.name == "gateway-20250208T060000Z.db"
        assert await job.run() is None  # one just taken: not due
        clock.advance(minutes=110)
        assert await job.run() is None
        clock.advance(minutes=10)  # 120 minutes after the first
        second = await job.run()
        assert second is not None and second.removed == []
        await make_site(db)
        clock.advance(minutes=120)
        third = await job.run()
        assert third is not None and third.removed == [first.backup.path]
        assert [p.name for _, p in backup.list_backups(directory)] == [
            "gateway-20250208T080000Z.db",
            "gateway-20250208T100000Z.db",
        ]
        assert contents(third.backup.path)["site"]  # the latest backup has the site
        await job.stop()
        clock.advance(minutes=120)
        assert await job.run() is None  # stopped: no more backups
    finally:
        await db.dispose()


async def test_the_backup_job_is_scheduled_on_sqlite_only(aiohttp_client, database_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(database_url=database_url, backup_dir=tmp_path / "backups")
    client: TestClient = await aiohttp_client(create_app(settings))
    scheduled = {job.id for job in client.app[SCHEDULER].get_jobs()}
    assert ("backup" in scheduled) == database_url.startswith("sqlite")
    assert "rollup" in scheduled


def test_backup_and_restore_point_at_pg_dump_on_postgresql(
    capsys: pytest.CaptureFixture[str], postgres_url: str, tmp_path: Path
) -> None:
    err = refused(capsys, postgres_url, "backup")
    assert err == (
        "error: gateway backup works on the SQLite database; on PostgreSQL use pg_dump -Fc (README, Operations)\n"
    )
    err = refused(capsys, postgres_url, "restore", str(tmp_path / "x.db"))
    assert (
        err
        == "error: gateway restore works on the SQLite database; on PostgreSQL use pg_restore (README, Operations)\n"
    )


def test_settings_place_backups_beside_the_database_by_default() -> None:
    assert Settings().backup_path == Path("var/backups")
    assert Settings(database_url="sqlite+aiosqlite:////data/gw/gateway.db").backup_path == Path("/data/gw/backups")
    assert Settings(backup_dir=Path("/mnt/backups")).backup_path == Path("/mnt/backups")
    assert (Settings().backup_every_minutes, Settings().backup_keep) == (120, 12)
