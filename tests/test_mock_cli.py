"""`mock-meter-server` as a real process: flags, the head-end over HTTP, the fleet beside it."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from mock_meter_server.__main__ import main


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def start_server() -> Iterator[Any]:
    """Start `python -m mock_meter_server` with flags; stopped with Ctrl-C (SIGINT) afterwards."""
    procs: list[subprocess.Popen[str]] = []

    def start(*flags: str) -> tuple[str, subprocess.Popen[str]]:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "mock_meter_server", "--port", str(port), *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(proc)
        return f"http://127.0.0.1:{port}", proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


async def wait_healthy(session: aiohttp.ClientSession, base: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, "mock-meter-server exited early"
        try:
            async with session.get(f"{base}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("mock-meter-server did not come up")


async def test_headend_process_serves_credits_faults_and_token(start_server: Any) -> None:
    base, proc = start_server("--token", "t0k", "--seed", "3", "--queue-credits-seconds", "0.3")
    auth = {"Authorization": "Bearer t0k"}
    async with aiohttp.ClientSession() as session:
        await wait_healthy(session, base, proc)
        credit = {"transaction_id": "tx1", "amount": "500.00"}
        async with session.post(f"{base}/headend/v1/meters/999999999/credits", json=credit) as r:
            assert r.status == 401
        async with session.post(f"{base}/headend/v1/meters/999999999/credits", json=credit, headers=auth) as r:
            assert r.status == 200 and (await r.json())["state"] == "queued"
        await asyncio.sleep(0.35)
        async with session.get(f"{base}/headend/v1/credits/tx1", headers=auth) as r:
            reply = await r.json()
            assert reply["state"] == "applied" and len(reply["token"]) == 20
        async with session.post(f"{base}/control/faults", json={"unreachable": ["999999999"]}, headers=auth) as r:
            assert r.status == 200 and (await r.json())["unreachable"] == ["999999999"]
        async with session.get(f"{base}/headend/v1/meters/999999999/status", headers=auth) as r:
            assert r.status == 504
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0


async def test_fleet_runs_beside_the_headend_in_one_process(aiohttp_server: Any, start_server: Any) -> None:
    seen: list[tuple[str, Any]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.path, await request.json()))
        return web.json_response({"status": "success"})

    app = web.Application()
    app.router.add_post("/meter", record)
    app.router.add_post("/dg", record)
    gateway = await aiohttp_server(app)
    base, proc = start_server(
        *("--gateway", str(gateway.make_url("")), "--meters", "3", "--first-meter", "999999997"),
        *("--speed", "1e6", "--free-run", "--start", "2025-02-08T00:00:00Z", "--intervals", "2"),
        *("--ingest-key", "k", "--batch", "10", "--site-id", "S1", "--dgs", "DG1", "--outage-rate", "1"),
        *("--progress-seconds", "0.2", "--seed", "9"),
    )
    async with aiohttp.ClientSession() as session:
        await wait_healthy(session, base, proc)
        for _ in range(200):  # the fleet posts within milliseconds; give a slow machine 20 s
            if sum(len(body) for path, body in seen if path == "/meter") >= 6:
                break
            await asyncio.sleep(0.1)
        async with session.get(f"{base}/headend/v1/meters/1/status") as r:
            assert r.status == 200  # the head-end still answers while the fleet runs
    packets = [p for path, body in seen if path == "/meter" for p in body]
    assert {p["id"] for p in packets} == {999999997, 999999998, 999999999}
    assert {p["timestamp"] for p in packets} == {"2025-02-08T00:31:00Z", "2025-02-08T01:01:00Z"}
    assert next(body["status"] for path, body in seen if path == "/dg") == "ON"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    assert "fleet of 3 meters and 1 DGs" in out and "[fleet] sim 2025-02-08T01:01:00Z" in out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--failure-rate", "1.5"], "--failure-rate"),
        (["--unreachable", "a b"], "--unreachable"),
        (["--max-credit", "10.001"], "--max-credit"),
        (["--gateway", "http://x", "--dgs", "DG1"], "--dgs needs --site-id and --ingest-key"),
        (["--gateway", "http://x", "--speed", "0"], "--speed must be > 0"),
        (["--start", "2025-02-08T00:00:00"], "give a timezone"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(capsys: pytest.CaptureFixture[str], flags: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(flags)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_batch_with_device_tokens_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"1": "a", "2": "b"}))
    with pytest.raises(SystemExit):
        main(["--gateway", "http://x", "--token-file", str(tokens), "--batch", "5"])
    assert "--batch posts many meters" in capsys.readouterr().err
