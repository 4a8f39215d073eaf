"""Newcomer fixes of the demo (issue 22): the banner names the resident's login and the staff
step, its Factech lines work pasted top to bottom, and a head-end on --port 0 names its port."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import aiohttp

from gateway.demo_text import Banner, banner, factech_calls
from mock_meter_server.faults import FaultInjector, Faults
from mock_meter_server.headend import HeadEnd
from storage.calendar import HALF_HOUR
from tests.test_mock_cli import start_server, wait_healthy  # noqa: F401 (start_server is a fixture)

BANNER = Banner(
    base="http://127.0.0.1:8080",
    headend="http://127.0.0.1:9090",
    headend_token="t",
    data_dir="/tmp/demo",
    sites=[("GREENPARK", "North", 30)],
    site_id="GREENPARK",
    meter_no=999999999,
    other_meter_no=100000001,
    dg_no="DG1",
    change_site_id="BLUEHILLS",
    change_date="2025-02-08",
    keys={"demo-read": "mgk_R", "demo-operate": "mgk_O"},
)


def test_banner_names_the_resident_login_and_the_staff_step() -> None:
    text = banner(BANNER)
    assert "register at http://127.0.0.1:8080/register with meter number 999999999 and FIN A3389127I" in text
    assert "gateway user add --staff manager --site '*'" in text
    assert "--database-url sqlite+aiosqlite:////tmp/demo/gateway.db" in text


def test_factech_lines_work_in_the_printed_order() -> None:
    order = [number for number, _, _ in factech_calls(BANNER)]
    assert order.index(3) < order.index(4) and order.index(7) < order.index(6)
    calls = {number: line for number, _, line in factech_calls(BANNER)}
    assert calls[3].startswith("TXN=$(curl -s ") and '["data"]["transaction_id"]' in calls[3]
    assert "transaction_id=$TXN" in calls[4] and calls[4].count('"') == 4  # double quotes: $TXN expands


async def test_a_head_end_on_port_0_prints_the_port_it_got(start_server: Any) -> None:  # noqa: F811
    _, proc = start_server("--port", "0")
    first = proc.stdout.readline()
    found = re.search(r"head-end on http://127\.0\.0\.1:(\d+)/headend/v1", first)
    assert found and found.group(1) != "0", first
    base = f"http://127.0.0.1:{found.group(1)}"
    async with aiohttp.ClientSession() as session:
        await wait_healthy(session, base, proc)


def test_the_head_end_keeps_relay_states_in_its_state_file(tmp_path: Path) -> None:
    state = tmp_path / "headend-relays.json"
    first = HeadEnd(FaultInjector(Faults(), seed=0), state_file=state)
    assert first.relay("100000001", command_id="c1", state="off")["changed"] is True
    restarted = HeadEnd(FaultInjector(Faults(), seed=0), state_file=state)
    assert restarted.status("100000001")["relay"] == "off"  # a stopped meter stays stopped
    assert restarted.status("100000002")["relay"] == "on"
    restarted.reset()
    assert HeadEnd(FaultInjector(Faults(), seed=0), state_file=state).status("100000001")["relay"] == "on"


async def test_a_fleet_runs_its_dg_by_the_interval_asked_even_with_no_outages(aiohttp_server: Any) -> None:
    from mock_meter_server.fleet import Fleet
    from tests.test_mock_fleet import MONDAY, Recorder, config

    recorder = Recorder()
    gateway = await aiohttp_server(recorder.app())

    async def run(dg_run_by: int | None) -> list[dict[str, Any]]:
        recorder.dg.clear()
        fleet = config(gateway, intervals=8, site_id="S1", dgs=["DG1"], outage_rate=0.0, dg_run_by=dg_run_by)
        await Fleet(fleet).run()
        return [body for body, _ in recorder.dg]

    assert await run(None) == []  # no outage at rate 0: the DG never runs
    posts = await run(3)
    assert posts and posts[0]["status"] == "ON"
    started = dt.datetime.fromisoformat(posts[0]["timestamp"].replace("Z", "+00:00"))
    assert MONDAY + 3 * HALF_HOUR <= started < MONDAY + 4 * HALF_HOUR  # in interval 3, as asked


def test_the_demo_prints_line_11_for_its_own_receiver_and_the_gateway_accepts_it(tmp_path: Path) -> None:
    import json
    import urllib.request

    from tests.test_demo import Demo

    demo = Demo(tmp_path / "var")
    try:
        operate = demo.wait_for(r"^\s+demo-operate\s+(mgk_\S+)$").group(1)
        line = demo.wait_for(r"curl -s (\S+/api/v1/dg/sensing) .* -d url=(http://127\.0\.0\.1:\d+/dg-events)$")
        sensing, url = line.group(1), line.group(2)
        assert "demo-read" in demo.output() and "FIN A3389127I" in demo.output()
        form = f"site_id=GREENPARK&dg_number=DG1&url={url}".encode()
        request = urllib.request.Request(sensing, data=form, headers={"X-API-Key": operate})
        with urllib.request.urlopen(request, timeout=10) as reply:  # a private address, allowed for the demo
            assert reply.status in (200, 201), reply.status
            assert json.loads(reply.read())["status"] == "success"
        assert demo.stop() == 0
    finally:
        demo.close()
