"""Operations: liveness and readiness, request metrics, gzip on the wire, private data files,
secrets from files and out of reprs, and the plain install (no `postgres` extra)."""

from __future__ import annotations

import gzip
import json
import logging
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from alembic.script import ScriptDirectory
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from gateway import ops
from gateway.app import create_app
from gateway.app_keys import DB, WRITER
from gateway.settings import Settings
from storage.db.engine import Database
from storage.db.migrate import alembic_config, head_revision
from storage.ingest.writer import ReadingWriter
from storage.ops.wal import WalCheckpointer

GZIP = {"Accept-Encoding": "gzip"}
IDENTITY = {"Accept-Encoding": "identity"}


def request_count(text_body: str, route: str, method: str, status: str) -> float:
    """`gateway_http_request_duration_seconds_count` for one route, method and status (0 if none)."""
    for family in text_string_to_metric_families(text_body):
        for sample in family.samples:
            if sample.name == "gateway_http_request_duration_seconds_count" and sample.labels == {
                "route": route,
                "method": method,
                "status": status,
            }:
                return sample.value
    return 0.0


async def database_down(_db: Database) -> str:
    raise ConnectionRefusedError("connection refused")


async def test_livez_answers_without_asking_the_database(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops, "current_revision", database_down)
    assert (await client.get("/readyz")).status == 503
    response = await client.get("/livez")
    assert response.status == 200 and (await response.json())["status"] == "ok"


async def test_readyz_and_its_healthz_alias_are_ready_on_a_current_database(client: TestClient) -> None:
    for path in ("/readyz", "/healthz"):
        response = await client.get(path)
        assert response.status == 200
        body = await response.json()
        assert body["status"] == "ok" and body["database"] in ("sqlite", "postgresql")


async def test_readyz_is_503_when_the_database_is_unreachable(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ops, "current_revision", database_down)
    response = await client.get("/readyz")
    body = await response.json()
    assert response.status == 503
    assert body["status"] == "error" and body["database"] == "unreachable: ConnectionRefusedError"


async def test_readyz_is_503_when_the_schema_is_not_the_codes(client: TestClient) -> None:
    db = client.server.app[DB]
    older = ScriptDirectory.from_config(alembic_config()).get_revision(head_revision()).down_revision
    async with db.transaction() as session:
        await session.execute(text("UPDATE alembic_version SET version_num = :older"), {"older": older})
    try:
        response = await client.get("/readyz")
        assert response.status == 503
        assert f"database at {older}, code needs {head_revision()}" == (await response.json())["migration"]
    finally:
        async with db.transaction() as session:
            await session.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head_revision()})
    assert (await client.get("/readyz")).status == 200


async def test_readyz_is_503_once_the_writer_stopped(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    assert client.server.app[WRITER].running
    monkeypatch.setattr(ReadingWriter, "running", property(lambda _writer: False))
    response = await client.get("/readyz")
    assert response.status == 503 and (await response.json())["writer"] == "stopped"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_requests_are_counted_by_route_method_and_status(client: TestClient) -> None:
    before = await (await client.get("/metrics")).text()
    await client.get("/livez")
    await client.get("/livez")
    await client.get("/no/such/page")
    await client.post("/meter", data=b"{not json")
    after = await (await client.get("/metrics")).text()
    for route, method, status, more in [
        ("/livez", "GET", "200", 2),
        ("unmatched", "GET", "404", 1),
        ("/meter", "POST", "401", 1),
    ]:
        assert request_count(after, route, method, status) - request_count(before, route, method, status) == more


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_json_over_a_kilobyte_is_gzipped_for_clients_that_take_it(client: TestClient) -> None:
    big = await client.get("/openapi.json", headers=GZIP, auto_decompress=False)
    assert big.headers["Content-Encoding"] == "gzip"
    spec = json.loads(gzip.decompress(await big.read()))
    assert spec["openapi"].startswith("3.1")
    plain = await client.get("/openapi.json", headers=IDENTITY, auto_decompress=False)
    assert "Content-Encoding" not in plain.headers and json.loads(await plain.read()) == spec
    small = await client.get("/livez", headers=GZIP, auto_decompress=False)
    assert "Content-Encoding" not in small.headers  # under 1 KB: not worth it


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "path", ["/portal/static/plotly.min.js", "/portal/static/portal.css", "/docs/static/swagger-ui-bundle.js"]
)
async def test_static_assets_are_served_gzipped_with_a_stable_etag(client: TestClient, path: str) -> None:
    plain = await client.get(path, headers=IDENTITY, auto_decompress=False)
    raw = await plain.read()
    assert plain.status == 200 and "Content-Encoding" not in plain.headers
    zipped = await client.get(path, headers=GZIP, auto_decompress=False)
    body = await zipped.read()
    assert zipped.headers["Content-Encoding"] == "gzip" and zipped.headers["Vary"] == "Accept-Encoding"
    assert gzip.decompress(body) == raw and len(body) < len(raw) / 2
    again = await client.get(path, headers={**GZIP, "If-None-Match": zipped.headers["ETag"]})
    assert again.status == 304


def test_data_files_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{data / 'gateway.db'}"}

    def gateway(*args: str) -> None:
        result = subprocess.run([sys.executable, "-m", "gateway", *args], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr

    gateway("site", "add", "S1", "--name", "Towers", "--region", "North")
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "gateway.db").stat().st_mode) == 0o600
    gateway("backup")
    (taken,) = (data / "backups").iterdir()
    assert stat.S_IMODE((data / "backups").stat().st_mode) == 0o700
    assert stat.S_IMODE(taken.stat().st_mode) == 0o600
    gateway("export-legacy", "--site", "S1", "--output", str(tmp_path / "master.json"))
    assert stat.S_IMODE((tmp_path / "master.json").stat().st_mode) == 0o600


def test_the_wal_takes_the_private_mode_of_a_fresh_database(tmp_path: Path) -> None:
    Database(f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}")  # creates the file, 0600
    conn = sqlite3.connect(tmp_path / "fresh.db")
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x)")
        assert stat.S_IMODE((tmp_path / "fresh.db-wal").stat().st_mode) == 0o600
    finally:
        conn.close()


def test_the_checkpointer_copies_committed_pages_into_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    writer = db.connect_sqlite()
    writer.execute("PRAGMA wal_autocheckpoint=0")  # as the ingest writer's connection
    writer.execute("CREATE TABLE t (x)")
    writer.execute("INSERT INTO t VALUES (42)")

    def file_alone_holds_the_row() -> bool:
        """The database file without its WAL (a copy) has the committed row."""
        alone = tmp_path / "alone.db"
        alone.write_bytes(path.read_bytes())
        conn = sqlite3.connect(alone)
        try:
            return conn.execute("SELECT x FROM t").fetchall() == [(42,)]
        except sqlite3.DatabaseError:  # not copied yet (or copied halfway through a round)
            return False
        finally:
            conn.close()

    assert not file_alone_holds_the_row()  # committed, but only in the WAL
    checkpointer = WalCheckpointer(db)
    try:
        checkpointer.nudge()
        deadline = time.monotonic() + 30
        while not file_alone_holds_the_row():
            assert time.monotonic() < deadline, "the nudged checkpointer never copied the WAL"
            time.sleep(0.01)
    finally:
        checkpointer.close()
        writer.close()


def test_secrets_come_from_files_and_stay_out_of_reprs_and_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    url = "postgresql+asyncpg://gateway:hunter2-password@127.0.0.1/gateway"
    for name, value in [("database_url", url), ("headend_token", "token-abc"), ("secret_key", "k" * 40)]:
        (tmp_path / name).write_text(value + "\n")
        monkeypatch.setenv(f"GATEWAY_{name.upper()}_FILE", str(tmp_path / name))
    settings = Settings().with_overrides(port=9000)
    assert settings.database_url == url
    assert settings.headend_token is not None and settings.headend_token.get_secret_value() == "token-abc"
    assert settings.secret_key is not None and settings.secret_key.get_secret_value() == "k" * 40
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("gateway").info("settings: %s / %r", settings, settings)
    for shown in (repr(settings), str(settings), caplog.text):
        assert "hunter2" not in shown and "token-abc" not in shown and "k" * 40 not in shown


def test_a_secret_given_twice_or_unreadable_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_HEADEND_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="headend_token_file: cannot read"):
        Settings()
    (tmp_path / "token").write_text("t")
    monkeypatch.setenv("GATEWAY_HEADEND_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("GATEWAY_HEADEND_TOKEN", "t")
    with pytest.raises(ValueError, match="not both"):
        Settings()


def test_python_dash_m_gateway_is_the_gateway_command() -> None:
    via_module = subprocess.run([sys.executable, "-m", "gateway", "--help"], capture_output=True, text=True)
    script = Path(sys.executable).with_name("gateway")
    via_script = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert via_module.returncode == via_script.returncode == 0
    assert via_module.stdout == via_script.stdout and "serve" in via_module.stdout


# Runs the gateway with asyncpg and gunicorn unimportable, as after `pip install .` (no extras).
WITHOUT_EXTRAS = """
import runpy, sys
sys.modules["asyncpg"] = None
sys.modules["gunicorn"] = None
sys.argv = ["gateway", *sys.argv[1:]]
runpy.run_module("gateway", run_name="__main__")
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_without_the_postgres_extra_sqlite_serves_and_postgresql_names_the_extra(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    refused = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS, "db", "upgrade", "--database-url", "postgresql+asyncpg://u@h/db"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1 and "install the `postgres` extra" in refused.stderr
    port = _free_port()
    with (tmp_path / "stderr.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", WITHOUT_EXTRAS, "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        deadline, status = time.monotonic() + 30, None
        while status is None and process.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                    status = response.status
            except OSError:
                time.sleep(0.05)
        assert status == 200, (tmp_path / "stderr.log").read_text()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_app_builds_with_the_sqlite_default_settings(tmp_path: Path) -> None:
    assert create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'g.db'}")) is not None
