"""The fleet simulator against a tiny recording gateway over a real socket."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import statistics
import time
from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mock_meter_server import curves
from mock_meter_server.fleet import Fleet, FleetConfig, SimClock, retry_after_seconds

MONDAY = dt.datetime(2025, 2, 10, tzinfo=dt.UTC)
IST = ZoneInfo("Asia/Kolkata")


class Recorder:
    """A stand-in gateway: records every POST; can answer 429 a few times first."""

    def __init__(self) -> None:
        self.meter: list[tuple[Any, str]] = []  # (body, Authorization)
        self.dg: list[tuple[Any, str]] = []
        self.busy = 0
        self.busy_at: list[float] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/meter", self.on_meter)
        app.router.add_post("/dg", self.on_dg)
        return app

    async def on_meter(self, request: web.Request) -> web.Response:
        if self.busy > 0:
            self.busy -= 1
            self.busy_at.append(time.monotonic())
            return web.json_response({"status": "error"}, status=429, headers={"Retry-After": "1"})
        self.meter.append((await request.json(), request.headers.get("Authorization", "")))
        return web.json_response({"status": "success"})

    async def on_dg(self, request: web.Request) -> web.Response:
        self.dg.append((await request.json(), request.headers.get("Authorization", "")))
        return web.json_response({"status": "success"})

    def packets(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for body, _ in self.meter:
            out.extend(body if isinstance(body, list) else [body])
        return out


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def gateway(aiohttp_server: Any, recorder: Recorder) -> TestServer:
    return await aiohttp_server(recorder.app())


def config(server: TestServer, **overrides: Any) -> FleetConfig:
    """A fleet that runs as fast as it can from a fixed Monday, with no quirks unless asked."""
    values: dict[str, Any] = {
        "gateway": str(server.make_url("/")),
        "meters": ["100000001", "100000002", "100000003"],
        "start": MONDAY,
        "speed": 1e9,
        "free_run": True,
        "intervals": 4,
        "dup_rate": 0.0,
        "late_rate": 0.0,
        "ingest_key": "ingest-key",
        "output": io.StringIO(),
    }
    return FleetConfig(**(values | overrides))


async def test_packets_have_the_seed_shape_and_interval_timestamps(gateway: TestServer, recorder: Recorder) -> None:
    stats = await Fleet(config(gateway)).run()
    packets = recorder.packets()
    assert len(packets) == 12 and stats.packets_sent == stats.packets_ok == 12
    for packet in packets:
        assert set(packet) == {"id", "timestamp", "reading_kWh"}
        assert isinstance(packet["id"], int) and isinstance(packet["reading_kWh"], float)
        assert packet["reading_kWh"] > 0 and round(packet["reading_kWh"], 2) == packet["reading_kWh"]
    assert {p["id"] for p in packets} == {100000001, 100000002, 100000003}
    stamps = sorted({p["timestamp"] for p in packets})
    assert stamps == [
        "2025-02-10T00:31:00Z",
        "2025-02-10T01:01:00Z",
        "2025-02-10T01:31:00Z",
        "2025-02-10T02:01:00Z",
    ]
    assert {auth for _, auth in recorder.meter} == {"Bearer ingest-key"}
    assert "[fleet] sim 2025-02-10T02:01:00Z | packets sent 12 ok 12 failed 0" in stats.line()


async def test_evening_and_morning_peaks_rise_above_the_small_hours(gateway: TestServer, recorder: Recorder) -> None:
    meters = [str(100000001 + i) for i in range(20)]
    await Fleet(config(gateway, meters=meters, intervals=48)).run()
    by_local_time: dict[str, list[float]] = {}
    for packet in recorder.packets():
        end = dt.datetime.fromisoformat(packet["timestamp"]) - dt.timedelta(minutes=1)
        by_local_time.setdefault(end.astimezone(IST).strftime("%H:%M"), []).append(packet["reading_kWh"])
    assert len(by_local_time) == 48
    mean = {hhmm: statistics.mean(values) for hhmm, values in by_local_time.items()}
    assert mean["20:30"] > 2 * mean["03:30"]  # the interval 20:00-20:30 against 03:00-03:30
    assert mean["08:00"] > 1.5 * mean["03:30"]
    daily = sum(sum(values) for values in by_local_time.values()) / len(meters)
    assert 5 < daily < 40  # kWh a day: a believable flat


def test_weekends_use_more_at_midday_and_units_differ() -> None:
    saturday_noon = dt.datetime(2025, 2, 15, 7, 30, tzinfo=dt.UTC)  # 13:00 in Kolkata
    monday_noon = saturday_noon - dt.timedelta(days=5)
    meters = [str(n) for n in range(100, 140)]
    weekend = statistics.mean(curves.interval_kwh(1, m, saturday_noon, IST) for m in meters)
    weekday = statistics.mean(curves.interval_kwh(1, m, monday_noon, IST) for m in meters)
    assert weekend > 1.5 * weekday
    scales = {curves.household(1, m).scale for m in meters}
    assert len(scales) == len(meters) and max(scales) > 1.5 * min(scales)


async def test_concentrator_posts_arrays_of_at_most_batch(gateway: TestServer, recorder: Recorder) -> None:
    meters = [str(200 + i) for i in range(10)]
    await Fleet(config(gateway, meters=meters, batch=4, intervals=2)).run()
    sizes = [len(body) for body, _ in recorder.meter]
    assert all(isinstance(body, list) for body, _ in recorder.meter)
    assert sorted(sizes) == [2, 2, 4, 4, 4, 4]
    assert len(recorder.packets()) == 20


async def test_a_concentrator_uploading_every_two_hours_posts_four_half_hours_at_once(
    gateway: TestServer, recorder: Recorder
) -> None:
    answered: list[int] = []

    async def after(k: int) -> None:
        answered.append(k)

    await Fleet(config(gateway, batch=100, upload_every=4, intervals=6), after_interval=after).run()
    uploads = [sorted({p["timestamp"] for p in body}) for body, _ in recorder.meter]
    assert uploads == [
        ["2025-02-10T00:31:00Z", "2025-02-10T01:01:00Z", "2025-02-10T01:31:00Z", "2025-02-10T02:01:00Z"],
        ["2025-02-10T02:31:00Z", "2025-02-10T03:01:00Z"],  # the run's end sends what is kept
    ]
    assert [len(body) for body, _ in recorder.meter] == [12, 6]
    assert answered == list(range(6))


async def test_device_tokens_sign_each_meter_own_packets(gateway: TestServer, recorder: Recorder) -> None:
    tokens = {"100000001": "tok-1", "100000002": "tok-2"}
    await Fleet(config(gateway, meters=list(tokens), tokens=tokens, ingest_key=None, intervals=2)).run()
    assert len(recorder.meter) == 4
    for body, auth in recorder.meter:
        assert auth == f"Bearer {tokens[str(body['id'])]}"


async def test_duplicates_and_late_packets_happen_but_every_interval_arrives(
    gateway: TestServer, recorder: Recorder
) -> None:
    meters = [str(300 + i) for i in range(10)]
    await Fleet(config(gateway, meters=meters, intervals=8, dup_rate=0.1, late_rate=0.1, seed=5)).run()
    arrived = [(p["id"], p["timestamp"]) for p in recorder.packets()]
    assert set(Counter(arrived)) == {(int(m), ts) for m in meters for ts in {t for _, t in arrived}}
    assert len({t for _, t in arrived}) == 8
    assert len(arrived) > 80  # some sent twice
    late = [i for i, (_, ts) in enumerate(arrived) if any(ts < earlier for _, earlier in arrived[:i])]
    assert late  # some came after a later interval's packets


async def test_same_seed_same_packets_other_seed_other_packets(gateway: TestServer, recorder: Recorder) -> None:
    async def run(seed: int) -> list[str]:
        recorder.meter.clear()
        await Fleet(config(gateway, seed=seed, dup_rate=0.1, late_rate=0.1, intervals=6)).run()
        return sorted(repr(sorted(p.items())) for p in recorder.packets())

    first = await run(3)
    assert first == await run(3)
    assert first != await run(4)


async def test_dgs_go_on_and_off_burning_fuel(gateway: TestServer, recorder: Recorder) -> None:
    fleet = config(gateway, intervals=24, site_id="S1", dgs=["DG1", "DG2"], outage_rate=0.3, seed=2)
    stats = await Fleet(fleet).run()
    assert stats.dg_sent == stats.dg_ok == len(recorder.dg) > 0
    for dg in ("DG1", "DG2"):
        posts = [body for body, _ in recorder.dg if body["dg_number"] == dg]
        assert posts, dg
        for body in posts:
            assert set(body) == {"site_id", "dg_number", "timestamp", "status", "fuel_litres", "reading_kWh"}
            assert body["site_id"] == "S1" and body["status"] in ("ON", "OFF")
            assert body["timestamp"].endswith("Z")
        assert [b["timestamp"] for b in posts] == sorted(b["timestamp"] for b in posts)
        readings = [b["reading_kWh"] for b in posts]
        assert readings == sorted(readings) and readings[-1] > 0  # a cumulative register
        assert posts[0]["status"] == "ON" and "OFF" in {b["status"] for b in posts}
        for before, after in itertools.pairwise(posts):
            if before["status"] == "ON":  # fuel only goes down while running
                assert after["fuel_litres"] < before["fuel_litres"]
    assert {auth for _, auth in recorder.dg} == {"Bearer ingest-key"}


async def test_dg_registers_continue_from_the_given_start(gateway: TestServer, recorder: Recorder) -> None:
    fleet = config(gateway, intervals=24, site_id="S1", dgs=["DG1"], outage_rate=0.3, seed=2, dg_start_kwh=1234.5)
    await Fleet(fleet).run()
    readings = [body["reading_kWh"] for body, _ in recorder.dg]
    assert readings and readings[0] >= 1234.5 and readings[-1] > 1234.5


async def test_retry_after_is_honoured(gateway: TestServer, recorder: Recorder) -> None:
    recorder.busy = 1
    stats = await Fleet(config(gateway, meters=["1"], intervals=1)).run()
    assert len(recorder.packets()) == 1 and stats.packets_ok == 1
    assert stats.retries["429"] == 1 and stats.requests["200"] == 1
    assert time.monotonic() - recorder.busy_at[0] >= 0.95  # waited the Retry-After second


async def test_packets_that_never_get_through_count_as_failed(aiohttp_server: Any) -> None:
    app = web.Application()

    async def refuse(_request: web.Request) -> web.Response:
        return web.json_response({"status": "error", "message": "Unknown meter"}, status=404)

    app.router.add_post("/meter", refuse)
    server = await aiohttp_server(app)
    stats = await Fleet(config(server, meters=["1", "2"], intervals=1)).run()
    assert (stats.packets_sent, stats.packets_ok, stats.packets_failed) == (2, 0, 2)
    assert stats.requests == Counter({"404": 2})


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = dt.datetime(2025, 2, 10, 12, 0, tzinfo=dt.UTC)
    assert retry_after_seconds("3", now) == 3
    assert retry_after_seconds("Mon, 10 Feb 2025 12:00:05 GMT", now) == 5
    assert retry_after_seconds("soon", now) is None and retry_after_seconds(None, now) is None


def test_sim_clock_runs_fast_until_it_meets_the_wall_clock() -> None:
    real = [100.0]
    wall = MONDAY + dt.timedelta(hours=2)
    clock = SimClock(MONDAY, 1800, monotonic=lambda: real[0], wall=lambda: wall)
    assert clock.now() == MONDAY
    assert clock.seconds_until(MONDAY + dt.timedelta(minutes=30)) == 1.0
    real[0] += 1
    assert clock.now() == MONDAY + dt.timedelta(minutes=30)
    real[0] += 10  # five simulated hours on: capped at the wall clock
    assert clock.now() == wall
    assert clock.seconds_until(wall + dt.timedelta(minutes=5)) == 300  # from here, real time
    free = SimClock(MONDAY, 1800, free_run=True, monotonic=lambda: real[0], wall=lambda: wall)
    real[0] += 10
    assert free.now() == MONDAY + dt.timedelta(hours=5)
