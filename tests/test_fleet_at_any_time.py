"""The contract suite's fleet scenario (call 1 polled while the fleet posts) at fixed times of day.

The contract suite runs it on the wall clock, so what it replays (and whether the fleet's DG runs
through it) depends on when CI starts. Here the same check runs in-process at chosen instants:
just after and before local midnight in Asia/Kolkata, at a half-hour boundary, a minute before
one, and on a month's last day, with the fleet's DG never started and always started. The
gateway's injected clock follows the fleet's simulated clock, and call 1 is read after each half
hour's packets are answered, so nothing waits on real time.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import ClientSession

from gateway.app import create_app
from gateway.settings import Settings
from mock_meter_server import curves
from mock_meter_server.fleet import Fleet, FleetConfig, SimClock
from storage.clock import Clock
from tests.contract import local

IST = ZoneInfo("Asia/Kolkata")
REPLAY = dt.timedelta(hours=3)
TICK = dt.timedelta(minutes=1)  # a fleet packet goes out a minute after its interval ends
PINNED = [  # local times in Kolkata: across midnight, on and off the half-hour marks, a month's end
    dt.datetime(2025, 2, 28, 0, 5, tzinfo=IST),
    dt.datetime(2025, 3, 1, 4, 30, tzinfo=IST),
    dt.datetime(2025, 3, 2, 11, 59, tzinfo=IST),
    dt.datetime(2025, 2, 27, 18, 29, tzinfo=IST),
    dt.datetime(2025, 2, 28, 23, 55, tzinfo=IST),
]


class FleetTime(Clock):
    """The gateway's clock, read off the fleet's simulated clock."""

    def __init__(self, sim: SimClock) -> None:
        self.sim = sim

    def now(self) -> dt.datetime:
        """The fleet's simulated instant."""
        return self.sim.now()


def replayed_intervals(now: dt.datetime) -> tuple[dt.datetime, int]:
    """The first interval start of a `REPLAY` ending at `now`, and how many intervals are due by then."""
    first = curves.floor_half_hour((now - REPLAY).astimezone(dt.UTC))
    return first, int((now - TICK - first) // curves.HALF_HOUR)


@pytest.mark.parametrize("outage_rate", [0.0, 1.0], ids=["no-dg", "dg-always"])
@pytest.mark.parametrize("now", PINNED, ids=[f"{t:%d-%H%M}IST" for t in PINNED])
async def test_site_readings_grow_while_the_fleet_posts_at_any_time_of_day(
    aiohttp_server: Any, database_url: str, now: dt.datetime, outage_rate: float
) -> None:
    keys, meters = await local.seed(database_url)
    first, intervals = replayed_intervals(now)
    sim = SimClock(first, 36_000, wall=lambda: now.astimezone(dt.UTC))
    server = await aiohttp_server(
        create_app(Settings(database_url=database_url, scheduler=False), clock=FleetTime(sim))
    )
    fleet_meters = [str(m) for m in meters[:-1]]  # as the contract suite: the last meter is its own
    snapshots: list[local.Registers] = []

    async with ClientSession(str(server.make_url("/"))) as http:

        async def snapshot(_interval: int) -> None:
            params = {"site_id": local.SITE_ID}
            async with http.get("/api/v1/site/readings", params=params, headers={"X-API-Key": keys["read"]}) as reply:
                assert reply.status == 200
                snapshots.append(local.registers(await reply.json()))

        config = FleetConfig(
            gateway=str(server.make_url("/")), meters=fleet_meters, start=first, speed=sim.speed,
            ingest_key=keys["ingest"], site_id=local.SITE_ID, dgs=[local.FLEET_DG], intervals=intervals,
            dup_rate=0.02, late_rate=0.0, outage_rate=outage_rate, progress_seconds=3600,
        )  # fmt: skip
        stats = await Fleet(config, clock=sim, after_interval=snapshot).run()

    assert stats.packets_failed == 0 and stats.dg_sent == stats.dg_ok
    quiet = {str(meters[-1])}
    local.check_fleet_snapshots(snapshots, quiet=quiet, distinct_totals=intervals)
    expected = sum(
        Decimal(str(curves.interval_kwh(config.seed, m, first + k * curves.HALF_HOUR, IST)))
        for m in fleet_meters
        for k in range(intervals)
    )
    # Call 1 shows each register to the hundredth: a reading split between grid and DG can round
    # each part up, so the sum may be off by a hundredth per meter, never more.
    off = abs(local.site_energy(snapshots[-1]) - expected)
    assert off <= Decimal("0.01") * len(fleet_meters), f"every packet's energy counted once: {off} off"
    dg_energy = sum(dg for _grid, dg, _ in snapshots[-1].values())
    assert (dg_energy > 0) == (outage_rate == 1.0), f"DG energy {dg_energy} with outage rate {outage_rate}"
