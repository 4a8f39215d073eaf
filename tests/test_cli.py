"""The `gateway` CLI: each command, its JSON output, and every error case."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gateway.cli import main


def run(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--database-url", url])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> dict:
    code, out, err = run(capsys, url, *argv, "--json")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    return json.loads(lines[0])


def test_commands_print_one_json_object(capsys: pytest.CaptureFixture[str], database_url: str) -> None:
    site = run_json(
        capsys,
        database_url,
        "site",
        "add",
        "S1",
        "--name",
        "Green Park",
        "--region",
        "North",
        "--tariff-grid",
        "7.50",
        "--no-auto-cut",
    )
    assert site == {
        "site_id": "S1",
        "name": "Green Park",
        "region": "North",
        "timezone": "Asia/Kolkata",
        "tariff_grid": "7.50",
        "tariff_dg": "20.00",
        "fixed_daily": "0.00",
        "auto_cut": False,
        "grace_amount": "0.00",
        "alert_thresholds": [],
        "no_cut_hours": "",
        "no_cut_weekdays": [],
    }
    meter = run_json(
        capsys,
        database_url,
        "meter",
        "add",
        "999999999",
        "--site",
        "S1",
        "--unit",
        "A-101",
        "--name",
        "Aashima",
        "--fin",
        "A3389127I",
        "--balance",
        "500",
    )
    assert meter["meter_no"] == "999999999" and meter["balance"] == "500.00"
    assert meter["token"].startswith("mtr_")
    dg = run_json(capsys, database_url, "dg", "add", "DG1", "--site", "S1", "--meter", "DGM1")
    assert dg == {"site_id": "S1", "dg_no": "DG1", "meter_no": "DGM1", "status": "OFF"}
    key = run_json(capsys, database_url, "key", "create", "--name", "ism", "--role", "read", "--site", "S1")
    assert key["key"].startswith("mgk_") and key["sites"] == ["S1"]
    rotated = run_json(capsys, database_url, "key", "rotate", "ism")
    assert rotated["key"] != key["key"]
    listed = run_json(capsys, database_url, "key", "list")
    assert [k["name"] for k in listed["keys"]] == ["ism"] and "key" not in listed["keys"][0]
    assert run_json(capsys, database_url, "key", "revoke", "ism")["revoked"] is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["site", "add", "S1", "--name", "x", "--region", "y"], "site 'S1' already exists"),
        (
            ["site", "add", "S2", "--name", "x", "--region", "y", "--timezone", "Mars/Base"],
            "unknown timezone",
        ),
        (
            ["site", "add", "S2", "--name", "x", "--region", "y", "--tariff-grid", "abc"],
            "--tariff-grid is not a number",
        ),
        (
            ["meter", "add", "12x", "--site", "S1", "--unit", "A"],
            "meter number must be a positive whole number",
        ),
        (
            ["meter", "add", "١٢٣", "--site", "S1", "--unit", "A"],  # non-ASCII digits: the API's rule
            "meter number must be a positive whole number",
        ),
        (
            ["meter", "add", "1" + "0" * 18, "--site", "S1", "--unit", "A"],  # 19 digits: no such column value
            "meter number must be a positive whole number",
        ),
        (["meter", "add", "5", "--site", "NOPE", "--unit", "A"], "unknown site 'NOPE'"),
        (
            ["meter", "add", "6", "--site", "S1", "--unit", "A", "--balance", "1.234"],
            "--balance has more than 2",
        ),
        (
            ["meter", "add", "7", "--site", "S1", "--unit", "A", "--start-grid", "-1"],
            "--start-grid must be at least",
        ),
        (["meter", "add", "1", "--site", "S1", "--unit", "B"], "meter 1 already exists"),
        (["dg", "add", "DG9", "--site", "NOPE"], "unknown site 'NOPE'"),
        (["key", "create", "--name", "k", "--role", "read", "--site", "NOPE"], "unknown site 'NOPE'"),
        (["key", "revoke", "ghost"], "unknown key 'ghost'"),
        (["key", "rotate", "ghost"], "unknown key 'ghost'"),
    ],
)
def test_errors_print_one_line_and_change_nothing(
    capsys: pytest.CaptureFixture[str], database_url: str, argv: list[str], message: str
) -> None:
    run_json(capsys, database_url, "site", "add", "S1", "--name", "n", "--region", "r")
    run_json(capsys, database_url, "meter", "add", "1", "--site", "S1", "--unit", "A")
    before = run_json(capsys, database_url, "key", "list")
    code, out, err = run(capsys, database_url, *argv)
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert run_json(capsys, database_url, "key", "list") == before
    code, out, _ = run(capsys, database_url, "meter", "add", "1", "--site", "S1", "--unit", "A")
    assert code == 1  # meter 1 is still the only one of that number, nothing else was half-written


def test_bad_role_is_a_usage_error(capsys: pytest.CaptureFixture[str], sqlite_url: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["key", "create", "--name", "k", "--role", "root", "--site", "*", "--database-url", sqlite_url])
    assert exit_info.value.code == 2
    assert "invalid choice: 'root'" in capsys.readouterr().err


def test_unreachable_database_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "postgresql+asyncpg://nobody@127.0.0.1:1/none", "key", "list")
    assert code == 1 and "cannot reach the database" in err and err.count("\n") == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_on_a_fresh_directory_answers_healthz_within_two_seconds(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    started = time.monotonic()
    log = (tmp_path / "stderr.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        body = None
        while time.monotonic() - started < 10:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                    body = json.loads(response.read())
                    break
            except OSError:
                time.sleep(0.05)
        elapsed = time.monotonic() - started
        assert body is not None and body["status"] == "ok", (tmp_path / "stderr.log").read_text()
        assert elapsed < 5.0, f"healthz answered after {elapsed:.2f}s"
        assert (tmp_path / "var" / "gateway.db").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_the_command_line_imports_no_metrics_before_serve_chooses_their_mode() -> None:
    """`gateway serve --workers N` puts prometheus-client in multiprocess mode, which it decides
    when first imported: nothing the CLI imports up front may import it (it did twice)."""
    check = "import sys, gateway.cli; sys.exit('prometheus_client' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, "importing gateway.cli imported prometheus_client" + done.stderr
