"""`gateway demo` as a real process: seeded, fed by the fleet, stopped cleanly, restarted."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway import demo_seed
from gateway.demo_text import Banner, factech_calls
from storage.db.engine import Database
from storage.db.migrate import upgrade

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds child processes in /proc")

READY_SECONDS = 60  # the issue: call 1 lists every meter with a non-zero grid within a minute


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Demo:
    """A `gateway demo` process whose output is collected line by line in a thread."""

    def __init__(self, data_dir: Path) -> None:
        self.port, self.headend_port = free_port(), free_port()
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "gateway.cli", "demo", "--data-dir", str(data_dir)),
                *("--port", str(self.port), "--headend-port", str(self.headend_port)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, seconds: float = 30) -> re.Match[str]:
        """The first output line matching `pattern`, waiting for it."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if found := re.search(pattern, line):
                    return found
            assert self.process.poll() is None, f"demo exited early:\n{self.output()}"
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r} in:\n{self.output()}")

    def get(self, path: str, key: str) -> tuple[int, Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers={"X-API-Key": key})
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def child_pids(self) -> set[int]:
        """Processes whose parent is the demo, read from /proc."""
        found = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue  # gone meanwhile
                if int(fields[1]) == self.process.pid:
                    found.add(int(entry.name))
        return found

    def stop(self) -> int:
        """Ctrl-C, then the exit status."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=30)
        finally:
            self._reader.join(timeout=5)

    def close(self) -> None:
        """Kill it if a failed test left it running; close the pipe."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)
        assert self.process.stdout is not None
        self.process.stdout.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def expected_meters() -> dict[str, set[str]]:
    """The active meters of each demo site with the default 40: the swapped meter replaced."""
    sites, swap = demo_seed.layout(40)
    meters = {site.site_id: {str(m.meter_no) for m in site.meters} for site in sites}
    meters[swap.site_id] = (meters[swap.site_id] - {str(swap.old_meter_no)}) | {str(swap.new_meter_no)}
    return meters


def all_read(demo: Demo, key: str) -> dict[str, list[dict[str, str]]]:
    """Poll call 1 for each site until every expected meter shows a non-zero grid register."""
    expected = expected_meters()
    replies: dict[str, Any] = {}
    while time.monotonic() - demo.started < READY_SECONDS:
        for site_id in expected:
            status, replies[site_id] = demo.get(f"/api/v1/site/readings?site_id={site_id}", key)
            assert status in (200, 404), replies[site_id]  # 404: no meters yet is impossible, seeded first
        if all(
            {row["meter_no"] for row in (reply or {}).get("data") or []} == expected[site_id]
            and all(Decimal(row["grid"]) > 0 for row in reply["data"])
            for site_id, reply in replies.items()
        ):
            return {site_id: reply["data"] for site_id, reply in replies.items()}
        time.sleep(1)
    raise AssertionError(f"not every meter read within {READY_SECONDS} s: {replies}\n{demo.output()}")


def test_demo_feeds_every_meter_stops_cleanly_and_reuses_its_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    demo = Demo(data_dir)
    try:
        key = demo.wait_for(r"^\s+demo-read\s+(mgk_\S+)$").group(1)
        announced = {int(m) for m in re.findall(r"demo: started .* \(pid (\d+)\)", demo.output())}
        assert len(announced) == 3  # the head-end and a fleet per site

        rows = all_read(demo, key)
        assert time.monotonic() - demo.started < READY_SECONDS
        seed_meter = next(row for row in rows["GREENPARK"] if row["meter_no"] == "999999999")
        assert seed_meter["unit_no"] == "A-101" and seed_meter["status"] == "On"
        assert demo.child_pids() == announced  # nothing started that is not stopped below

        assert demo.stop() == 0
        assert not [pid for pid in announced if alive(pid)]
        assert len(re.findall(r"demo: .* stopped \(pid \d+, exit 0\)", demo.output())) == 3
    finally:
        demo.close()
    state = data_dir / "demo.json"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    keys = json.loads(state.read_text())["keys"]
    assert keys["demo-read"] == key

    again = Demo(data_dir)
    try:
        assert again.wait_for(r"^\s+demo-read\s+(mgk_\S+)$").group(1) == key
        assert "demo: reusing site GREENPARK" in again.output() and "already exists" not in again.output()
        status, reply = again.get("/api/v1/site/readings?site_id=GREENPARK", key)
        assert status == 200 and {row["meter_no"] for row in reply["data"]} == expected_meters()["GREENPARK"]
        pids = {int(m) for m in re.findall(r"demo: started .* \(pid (\d+)\)", again.output())}
        assert again.stop() == 0
        assert not [pid for pid in pids if alive(pid)]
    finally:
        again.close()
    assert json.loads(state.read_text())["keys"] == keys


def test_seeding_twice_creates_nothing_new_and_keeps_the_keys(tmp_path: Path) -> None:
    """The same through the store directly, and a lost state file: keys rotated, not duplicated."""

    async def seed(path: Path) -> tuple[demo_seed.DemoState, list[int]]:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
        try:
            await upgrade(db)
            _, _, state = await demo_seed.ensure_demo(db, state_path=path, meters=8, progress=lambda _: None)
            return state, await demo_seed.active_meters(db, site_id="BLUEHILLS")
        finally:
            await db.dispose()

    state_path = tmp_path / "demo.json"
    first, blue = asyncio.run(seed(state_path))
    second, blue_again = asyncio.run(seed(state_path))
    assert second.keys == first.keys and second.headend_token == first.headend_token and blue_again == blue
    assert len(blue) == 2 and 200000002 not in blue and 200000003 in blue  # the swapped meter

    state_path.unlink()  # keys are shown once: a lost file means new secrets for the same keys
    third, _ = asyncio.run(seed(state_path))
    assert set(third.keys) == set(first.keys)
    assert not set(third.keys.values()) & set(first.keys.values())


def test_every_factech_call_has_a_curl_line_with_its_method_path_and_inputs() -> None:
    keys = {"demo-read": "mgk_R", "demo-operate": "mgk_O"}
    banner = Banner(
        base="http://127.0.0.1:8080",
        headend="http://127.0.0.1:9090",
        headend_token="t",
        data_dir="var",
        sites=[("GREENPARK", "North", 30)],
        site_id="GREENPARK",
        meter_no=999999999,
        other_meter_no=100000001,
        dg_no="DG1",
        change_site_id="BLUEHILLS",
        change_date="2025-02-08",
        keys=keys,
    )
    calls = {number: line for number, _, line in factech_calls(banner)}
    assert sorted(calls) == list(range(1, 14))
    posts = {3: "recharge", 6: "start", 7: "stop", 9: "load", 11: "sensing"}
    for number, line in calls.items():
        if number in posts:
            assert f"/{posts[number]} " in line and "X-API-Key: mgk_O" in line and " -d site_id=" in line
        else:
            assert " -d " not in line and "X-API-Key: mgk_R" in line and "?" in line
    assert "site_id=GREENPARK&transaction_id=" in calls[4]
    assert "/api/v1/meter/changes?site_id=BLUEHILLS&from_date=2025-02-08&to_date=2025-02-08" in calls[5]
    assert "-d load_dg=2.00 -d load_grid=5.00" in calls[9]
    assert all("dg_number=DG1" in calls[n] for n in (10, 11, 12, 13))


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                *(sys.executable, "-m", "gateway.cli", "demo", "--data-dir", str(tmp_path / "var")),
                *("--port", str(free_port()), "--headend-port", str(port)),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "--headend-port" in result.stderr
    assert "started" not in result.stdout and not (tmp_path / "var").exists()
