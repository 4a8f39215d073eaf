"""The check line holds for every meter of the demo after a simulated month (issue 21), on both
databases.

The demo's sites, meters, DGs and keys are seeded by `gateway.demo_seed` as `gateway demo` seeds
them; then the calendar month after today (Asia/Kolkata) is played in-process, without waiting:

- one fleet per site (mock_meter_server/fleet.py) reports every demo meter's half hours, some
  twice or late, through a concentrator that uploads them every four hours in one array with the
  site's ingest key, and its DG's ON/OFF changes and registers, so some readings split between
  grid and DG;
- on the 1st a tariff with a fixed daily charge starts at both sites, GREENPARK defers cuts from
  18:00 to 08:00; the grid rate changes mid-day on the 15th at GREENPARK and from the 20th at
  BLUEHILLS; each day is rolled up (fixed charges) at 00:20;
- balances run below zero (the demo's consumption outruns its opening balances): the real
  command dispatcher cuts, defers cuts in the no-cut window, and restores after recharges
  (Factech call 3) against the mock head-end over HTTP; on the 12th one GREENPARK meter is
  adjusted down to a few paise at 18:40, the 20:01 upload takes it below zero, the 20:10
  dispatch defers its cut to 08:00, and it is recharged at 21:00, which cancels the deferred cut;
- on the 16th the demo's meter change replaces BLUEHILLS' last meter (demo_seed.ensure_swap).

Every actor (the two fleets and the scenario) waits on one lockstep clock, which is also the
gateway's and the head-end's: simulated time moves to the next instant someone waits for once
every actor waits, so a month takes as long as its requests, and nothing races real time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp.test_utils import TestClient

from gateway import demo_seed
from gateway.app import create_app
from gateway.app_keys import DISPATCHER
from mock_meter_server.app import create_app as create_mock
from mock_meter_server.fleet import Fleet, FleetConfig, SimClock
from storage import days
from storage.clock import Clock
from storage.db.engine import Database
from tests.command_setup import MOCK_TOKEN, gateway_settings

IST = ZoneInfo(demo_seed.TIMEZONE)
ADMIN = "/api/v1/admin"
DEMO_METERS = 20  # `gateway demo --meters 20`: 15 at GREENPARK, 5 at BLUEHILLS
FIXED_DAILY = Decimal("5.00")
RECHARGE = Decimal("1500.00")
UPLOAD_HOURS = 4  # the fleets' concentrators post every four hours' packets together


class Lockstep(SimClock, Clock):
    """Simulated time shared by several actors (a discrete-event clock).

    `sleep_until(at)` returns once the clock reaches `at`; the clock moves to the earliest instant
    any actor waits for, and only when every actor is waiting, so no actor sees time pass while
    another is still busy with an earlier instant.
    """

    def __init__(self, start: dt.datetime) -> None:
        super().__init__(start, 1.0, free_run=True)
        self.at = start
        self.actors = 0
        self.waiting: list[tuple[dt.datetime, asyncio.Future[None]]] = []

    def now(self) -> dt.datetime:
        """The simulated instant."""
        return self.at

    def seconds_until(self, at: dt.datetime) -> float:
        """No real time ever passes in a lockstep simulation."""
        return 0.0

    async def sleep_until(self, at: dt.datetime) -> None:
        """Wait until every actor waits and `at` is the earliest instant waited for."""
        if at <= self.at:
            return
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((at, future))
        self._advance()
        await future

    async def act(self, actor: Awaitable[Any]) -> Any:
        """Run an actor (joined beforehand with `join`); it stops counting when it ends."""
        try:
            return await actor
        finally:
            self.actors -= 1
            self._advance()

    def join(self) -> None:
        """One more actor: time waits for it from now on."""
        self.actors += 1

    def _advance(self) -> None:
        if not self.waiting or len(self.waiting) < self.actors:
            return
        self.at = max(self.at, min(at for at, _ in self.waiting))
        due = [(at, future) for at, future in self.waiting if at <= self.at]
        self.waiting = [(at, future) for at, future in self.waiting if at > self.at]
        for _, future in due:
            future.set_result(None)


def next_month(today: dt.date) -> tuple[dt.date, dt.date]:
    """The first day of the month after `today`'s, and of the one after that."""
    first = (today.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    return first, (first + dt.timedelta(days=32)).replace(day=1)


def local(day: dt.date, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    """A Kolkata wall-clock instant of `day`, in UTC."""
    return dt.datetime.combine(day, dt.time(hour, minute, second), IST).astimezone(dt.UTC)


@dataclass
class Demo:
    """The seeded demo, the gateway under test and what the scenario did."""

    gateway: TestClient
    db: Database
    clock: Lockstep
    sites: list[demo_seed.DemoSite]
    swap: demo_seed.MeterSwap
    keys: dict[str, str]
    first: dt.date
    fleets: dict[str, Fleet]
    deferred_meter: int = 0  # the meter whose cut was deferred, then recharged
    recharges: int = 0

    async def call(self, method: str, path: str, body: Any = None, *, key: str = "demo-admin") -> Any:
        response = await self.gateway.request(method, path, json=body, headers={"X-API-Key": self.keys[key]})
        assert response.status in (200, 201), f"{method} {path}: {response.status} {await response.text()}"
        return await response.json()

    async def meters(self, site_id: str) -> list[dict[str, Any]]:
        return (await self.call("GET", f"{ADMIN}/sites/{site_id}/meters"))["data"]

    async def recharge(self, site_id: str, meter_no: int) -> None:
        """Call 3, then the restore it queued is sent before time moves on."""
        body = {"site_id": site_id, "meter_no": str(meter_no), "amount": str(RECHARGE)}
        response = await self.gateway.post(
            "/api/v1/meter/recharge", json=body, headers={"X-API-Key": self.keys["demo-operate"]}
        )
        assert response.status == 200, await response.text()  # applied at once (202: waiting)
        self.recharges += 1
        await self.gateway.app[DISPATCHER].settle()


def balance(meter: dict[str, Any]) -> Decimal:
    return Decimal(meter["balance"])


async def seed(db: Database) -> tuple[list[demo_seed.DemoSite], demo_seed.MeterSwap, dict[str, str]]:
    """The demo's sites, meters, DGs and keys, made by demo_seed as `gateway demo` makes them (the
    meter change waits for the middle of the month)."""
    sites, swap = demo_seed.layout(DEMO_METERS)
    for site in sites:
        assert await demo_seed.ensure_site(db, site) == len(site.meters)
    keys = {
        name: await demo_seed.ensure_key(db, name=name, role=role, sites=key_sites, known=None)
        for name, (role, key_sites) in demo_seed.key_specs(sites).items()
    }
    return sites, swap, keys


def scenario(demo: Demo) -> list[tuple[dt.datetime, Callable[[], Awaitable[None]]]]:
    """The month's staff and resident actions, and the jobs, at their instants."""
    first = demo.first
    day = [first + dt.timedelta(days=n) for n in range((next_month(first)[0] - first).days + 1)]
    events: list[tuple[dt.datetime, Callable[[], Awaitable[None]]]] = []

    async def tariff(site_id: str, grid: str, dg: str, since: dt.date) -> None:
        body = {"grid": grid, "dg": dg, "fixed_daily": str(FIXED_DAILY), "effective_from": f"{since} 00:00:00"}
        await demo.call("POST", f"{ADMIN}/sites/{site_id}/tariffs", body)

    async def policies() -> None:
        for site in demo.sites:
            await tariff(site.site_id, "8.00", "20.00", first)
        await demo.call("PATCH", f"{ADMIN}/sites/GREENPARK", {"no_cut_hours": "18:00-08:00"})

    async def green_tariff() -> None:  # mid-month, mid-day
        await demo.call("PATCH", f"{ADMIN}/sites/GREENPARK", {"tariff_grid": "9.50"})

    async def blue_tariff() -> None:
        await tariff("BLUEHILLS", "8.25", "21.00", day[19])

    async def dispatch() -> None:
        await demo.gateway.app[DISPATCHER].run()

    async def roll_up() -> None:
        await days.roll_up_due(demo.db, now=demo.clock.now())

    async def recharge_the_cut() -> None:
        """Residents whose supply is off, or nearly out of money, recharge."""
        for site in demo.sites:
            for meter in await demo.meters(site.site_id):
                if meter["active"] and (not meter["relay_on"] or balance(meter) < 300):
                    await demo.recharge(site.site_id, meter["meter_no"])

    async def adjust_down() -> None:
        """A GREENPARK meter in supply is corrected down to 0.05: its next half hour is a cut."""
        meter = next(m for m in await demo.meters("GREENPARK") if m["relay_on"] and balance(m) > 1)
        demo.deferred_meter = meter["meter_no"]
        body = {"amount": str(Decimal("0.05") - balance(meter)), "reason": "billing correction"}
        await demo.call("POST", f"{ADMIN}/meters/{meter['meter_no']}/adjustments", body)

    async def recharge_deferred() -> None:
        await demo.recharge("GREENPARK", demo.deferred_meter)

    async def meter_change() -> None:
        await demo_seed.ensure_swap(demo.db, demo.swap, None, now=demo.clock.now())
        meters = demo.fleets[demo.swap.site_id].config.meters  # the fleet now posts the new meter
        meters[meters.index(str(demo.swap.old_meter_no))] = str(demo.swap.new_meter_no)

    events.append((local(first, 0) - dt.timedelta(hours=1), policies))
    for n in range(len(day)):
        events.append((local(day[n], 0, 20), roll_up))
        events += [(local(day[n], hour, 10), dispatch) for hour in range(0, 24, UPLOAD_HOURS)]
    events.append((local(day[14], 10), green_tariff))
    events.append((local(day[18], 12), blue_tariff))
    events += [(local(day[n], 11), recharge_the_cut) for n in (7, 15, 23)]
    events.append((local(day[11], 18, 40), adjust_down))
    events.append((local(day[11], 21), recharge_deferred))
    # After the fleet's 12:01 upload, so the old meter's last half hour is in before it retires.
    events.append((local(day[15], 12, 1, 30), meter_change))
    last = local(first + dt.timedelta(days=len(day) - 1), 0, 20)  # the month's last rollup
    return sorted((event for event in events if event[0] <= last), key=lambda event: event[0])


async def play(demo: Demo) -> None:
    """Every action at its instant, in simulated time."""
    for at, action in scenario(demo):
        await demo.clock.sleep_until(at)
        await action()


async def test_the_check_line_holds_for_every_demo_meter_after_a_simulated_month(
    aiohttp_server: Any, aiohttp_client: Any, database_url: str
) -> None:
    # aiohttp_server first: the head-end is closed after the gateway, which may call it until then.
    db = Database(database_url)
    try:
        sites, swap, keys = await seed(db)
        first, next_first = next_month(dt.datetime.now(IST).date())
        clock = Lockstep(local(first, 0) - dt.timedelta(hours=2))
        mock = await aiohttp_server(create_mock(seed=3, clock=clock.now, token=MOCK_TOKEN))
        gateway = await aiohttp_client(create_app(gateway_settings(database_url, str(mock.make_url(""))), clock=clock))
        intervals = (local(next_first, 0) - local(first, 0)) // dt.timedelta(minutes=30)
        fleets = {
            site.site_id: Fleet(
                FleetConfig(
                    gateway=str(gateway.make_url("/")), meters=[str(m.meter_no) for m in site.meters],
                    start=local(first, 0), free_run=True, ingest_key=keys[f"demo-ingest-{site.site_id}"],
                    batch=500, upload_every=UPLOAD_HOURS * 2, site_id=site.site_id, dgs=[site.dg_no],
                    intervals=intervals, outage_rate=0.02,
                    # No late packets at BLUEHILLS: a late packet of the replaced meter would be refused.
                    late_rate=0.01 if site.site_id == "GREENPARK" else 0.0,
                    progress_seconds=3600, output=io.StringIO(),
                ),
                clock=clock,
            )
            for site in sites
        }  # fmt: skip
        demo = Demo(gateway, db, clock, sites, swap, keys, first, fleets)
        for _ in range(len(fleets) + 1):
            clock.join()
        stats = await asyncio.gather(*(clock.act(fleet.run()) for fleet in fleets.values()), clock.act(play(demo)))
        for site_stats in stats[:-1]:
            assert site_stats.packets_failed == 0 and site_stats.dg_sent == site_stats.dg_ok > 0, site_stats.line()

        await check_month(demo)
    finally:
        await db.dispose()


SUMMED = ("grid_kwh", "dg_kwh", "grid_amount", "dg_amount", "fixed_charges")


async def check_month(demo: Demo) -> None:
    """Every meter's statement balances and ends at its stored balance; each site report's rows
    and totals are its statements'; and the month held what the scenario meant it to."""
    month = f"{demo.first:%Y-%m}"
    statements: dict[int, dict[str, Any]] = {}
    for site in demo.sites:
        meters = await demo.meters(site.site_id)
        expected = {m.meter_no for m in site.meters}
        if site.site_id == demo.swap.site_id:
            expected.add(demo.swap.new_meter_no)
        assert {int(m["meter_no"]) for m in meters} == expected
        sums = dict.fromkeys(SUMMED, Decimal(0))
        for meter in meters:
            meter_no = int(meter["meter_no"])
            statement = (await demo.call("GET", f"{ADMIN}/meters/{meter_no}/statement?month={month}"))["data"]
            statements[meter_no] = statement
            totals, opening, closing = statement["totals"], statement["opening_balance"], statement["closing_balance"]
            computed = (
                Decimal(opening)
                + Decimal(totals["credits"])
                - Decimal(totals["debits"])
                + Decimal(totals["adjustments"])
            )
            assert statement["check"]["balanced"] and computed == Decimal(closing), (meter_no, statement["check"])
            assert closing == meter["balance"], (meter_no, closing, meter["balance"])  # retired: 0.00 both
            for name in SUMMED:
                sums[name] += Decimal(totals[name])
        report = (await demo.call("GET", f"{ADMIN}/sites/{site.site_id}/report?month={month}"))["data"]
        assert {name: Decimal(report["totals"][name]) for name in SUMMED} == sums, site.site_id
        for row in report["meters"]:
            statement = statements[int(row["meter_no"])]
            assert (row["opening_balance"], row["closing_balance"]) == (
                statement["opening_balance"], statement["closing_balance"]
            )  # fmt: skip
            assert row["billed"] == statement["totals"]["debits"], row["meter_no"]
        assert sums["dg_kwh"] > 0 and sums["fixed_charges"] > 0, (site.site_id, sums)
    check_story(demo, statements)


def check_story(demo: Demo, statements: dict[int, dict[str, Any]]) -> None:
    """What makes the check line worth holding: the month had every kind of line."""
    day = [demo.first + dt.timedelta(days=n) for n in range(31)]
    supply = Counter(change["what"] for s in statements.values() for change in s["supply"])
    assert supply["cut"] and supply["restored"] and supply["cut deferred"], supply
    split = [
        (n, d["day"])
        for n, s in statements.items()
        for d in s["days"]
        if Decimal(d["grid_kwh"]) and Decimal(d["dg_kwh"])
    ]
    assert split, "some days were partly on the DG"
    green = statements[demo.sites[0].meters[0].meter_no]
    assert {d["grid_rate"] for d in green["days"]} == {"8.00", "9.50"}  # the change on the 15th
    fixed: Counter[str] = Counter()
    for line in green["days"]:  # the 15th has two lines, one per tariff; its fixed charge is on the first
        fixed[line["day"]] += Decimal(line["fixed_charge"])
    assert fixed == dict.fromkeys(map(str, day[: len(fixed)]), FIXED_DAILY) and len(fixed) >= 28
    blue = statements[demo.swap.new_meter_no]
    assert {d["grid_rate"] for d in blue["days"]} == {"8.00", "8.25"}  # from the 20th
    assert blue["notes"] == [f"replaces meter {demo.swap.old_meter_no} from {day[15]}"]
    old = statements[demo.swap.old_meter_no]
    assert old["notes"] == [f"replaced by meter {demo.swap.new_meter_no} on {day[15]}"]
    assert old["adjustments"][-1]["amount"] == f"-{blue['adjustments'][0]['amount']}"
    deferred = statements[int(demo.deferred_meter)]
    assert ("billing correction", local(day[11], 18, 40)) in [
        (a["reason"], dt.datetime.fromisoformat(a["at"])) for a in deferred["adjustments"]
    ]
    deferred_at = [dt.datetime.fromisoformat(c["at"]) for c in deferred["supply"] if c["what"] == "cut deferred"]
    assert local(day[11], 20, 10) in deferred_at, deferred["supply"]  # the evening's window
    assert local(day[11], 21) in [dt.datetime.fromisoformat(c["at"]) for c in deferred["recharges"]]
    cuts = [dt.datetime.fromisoformat(c["at"]) for c in deferred["supply"] if c["what"] == "cut"]
    assert not [at for at in cuts if local(day[11], 20) < at < local(day[12], 12)], "the recharge cancelled it"
    assert sum(len(s["recharges"]) for s in statements.values()) == demo.recharges > 1
