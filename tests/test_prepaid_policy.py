"""The prepaid policy over real HTTP: tariff history, no-cut windows (hours, weekdays, holidays),
grace, balance alerts, fixed daily charges, days left, prompt restore, and the events of each.

The gateway talks to the mock meter server; the injected clock decides what "now" is. S1 is an
auto-cut site in Asia/Kolkata with meter 101 (100.00, ₹10.00/kWh grid); NOW is Saturday
2025-02-08 11:30 IST.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import update

from gateway.app import create_app
from gateway.app_keys import ALERTS, CLOCK, DELIVERIES, DISPATCHER
from schemas.dg_callback import verify
from storage import days
from storage.clock import FixedClock
from storage.db.engine import Database
from storage.db.models import Meter, Site
from storage.money import command_log, ledger, tariffs
from storage.money.policy import NoCutWindows, alert_step
from storage.registry import dgs
from tests.command_setup import NOW, MockHeadEnd, World, gateway_settings
from tests.daydata import make_site

IST = ZoneInfo("Asia/Kolkata")
ADMIN = "/api/v1/admin"


def ist(text: str) -> dt.datetime:
    """A Kolkata wall-clock time 'YYYY-MM-DD HH:MM' as an aware UTC instant."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=IST).astimezone(dt.UTC)


async def admin(client: TestClient, world: World, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    response = await client.request(method, ADMIN + path, json=body, headers=world.headers("admin"))
    return response.status, await response.json()


async def reading(client: TestClient, world: World, kwh: float, meter_no: int = 101) -> None:
    """Meter 101's half hour ending at the clock's last half-hour mark: kWh × 10.00 debited."""
    now = client.app[CLOCK].now()
    end = now.replace(minute=30 if now.minute >= 30 else 0, second=0, microsecond=0)
    stamp = (end + dt.timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    response = await client.post(
        "/meter",
        json={"id": meter_no, "timestamp": stamp, "reading_kWh": kwh},
        headers={"Authorization": f"Bearer {world.tokens[meter_no]}"},
    )
    assert response.status == 200, await response.text()


async def recharge(client: TestClient, world: World, amount: str) -> None:
    body = {"site_id": "S1", "meter_no": "101", "amount": amount}
    response = await client.post("/api/v1/meter/recharge", json=body, headers=world.headers("operate"))
    assert response.status == 200, await response.text()


async def events(client: TestClient, world: World, site: str = "S1") -> list[dict[str, Any]]:
    status, body = await admin(client, world, "GET", f"/sites/{site}/events")
    assert status == 200, body
    return body["data"]


def types(listed: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in listed]


async def relay(mock: MockHeadEnd, meter_no: int = 101) -> str:
    """The relay as the mock head-end has it (a meter it never heard of is on)."""
    return (await mock.state())["meters"].get(str(meter_no), {}).get("relay", "on")


# --- Tariffs -----------------------------------------------------------------------------------


async def test_tariffs_are_a_history_that_never_starts_in_the_past(gateway: TestClient, world: World) -> None:
    later = {"grid": "11.00", "dg": "25.00", "fixed_daily": "5.00", "effective_from": "2025-02-08 12:00:00"}
    status, body = await admin(gateway, world, "POST", "/sites/S1/tariffs", later)
    assert status == 201 and body["data"] == {**later, "site_id": "S1", "created_by": "admin"}
    status, body = await admin(
        gateway, world, "POST", "/sites/S1/tariffs", {**later, "effective_from": "2025-02-08 11:00:00"}
    )
    assert status == 400 and list(body["errors"]) == ["effective_from"]
    status, body = await admin(gateway, world, "POST", "/sites/S1/tariffs", {**later, "grid": "-1"})
    assert status == 400 and list(body["errors"]) == ["grid"]
    status, body = await admin(gateway, world, "PATCH", "/sites/S1", {"tariff_grid": "12.00"})  # a row from now
    assert status == 200
    status, body = await admin(gateway, world, "GET", "/sites/S1/tariffs")
    rows = [(r["grid"], r["fixed_daily"], r["effective_from"]) for r in body["data"]]
    assert rows == [
        ("10.00", "0.00", "1970-01-01 05:30:00"),
        ("12.00", "0.00", "2025-02-08 11:30:00"),
        ("11.00", "5.00", "2025-02-08 12:00:00"),
    ]
    assert (await admin(gateway, world, "GET", "/sites/S2/tariffs"))[0] == 404  # another site's
    assert (await admin(gateway, world, "POST", "/sites/S2/tariffs", later))[0] == 404


async def test_a_reading_is_charged_at_the_tariff_of_its_interval_whenever_it_arrives(
    gateway: TestClient, world: World, db: Database
) -> None:
    await admin(
        gateway,
        world,
        "POST",
        "/sites/S1/tariffs",
        {"grid": "20.00", "dg": "30.00", "effective_from": "2025-02-08 12:00"},
    )
    gateway.app[CLOCK].set(ist("2025-02-08 12:40"))  # type: ignore[attr-defined]
    await reading(gateway, world, 1)  # 12:00-12:30: the new tariff
    late = {"id": 101, "timestamp": "2025-02-08T06:01:00Z", "reading_kWh": 1}  # 11:00-11:30 IST, before it
    response = await gateway.post("/meter", json=late, headers={"Authorization": f"Bearer {world.tokens[101]}"})
    assert response.status == 200
    async with db.reader() as session:
        meter = await session.get(Meter, 101)
    assert meter is not None and meter.balance == Decimal("70.00")  # 100 - 20 (new) - 10 (old)


# --- No-cut windows ---------------------------------------------------------------------------


def windows(
    hours: tuple[str, str] | None = None, weekdays: set[int] = frozenset(), holidays: set[dt.date] = frozenset()
) -> NoCutWindows:  # type: ignore[assignment]
    span = (dt.time.fromisoformat(hours[0]), dt.time.fromisoformat(hours[1])) if hours else None
    return NoCutWindows("Asia/Kolkata", span, frozenset(weekdays), frozenset(holidays))


@pytest.mark.parametrize(
    ("at", "until"),
    [
        ("2025-02-07 20:00", "2025-02-08 08:00"),  # evening: next morning
        ("2025-02-08 07:59", "2025-02-08 08:00"),  # before the end, same day
        ("2025-02-07 18:00", "2025-02-08 08:00"),  # the window's first minute
        ("2025-02-08 08:00", None),  # its end: no longer inside
        ("2025-02-08 12:00", None),
    ],
)
def test_night_hours_wrap_midnight(at: str, until: str | None) -> None:
    expected = ist(until) if until else None
    assert windows(("18:00", "08:00")).deferral(ist(at)) == expected


def test_windows_chain_weekdays_holidays_and_hours() -> None:
    sunday, monday = dt.date(2025, 2, 9), dt.date(2025, 2, 10)
    night_and_sunday = windows(("18:00", "08:00"), weekdays={6})
    # Saturday night runs into Sunday (no cuts all day), whose end at midnight is inside the
    # night hours again: the cut waits for Monday 08:00.
    assert night_and_sunday.deferral(ist("2025-02-08 21:00")) == ist("2025-02-10 08:00")
    with_holiday = windows(("18:00", "08:00"), weekdays={6}, holidays={monday})
    assert with_holiday.deferral(ist("2025-02-08 21:00")) == ist("2025-02-11 08:00")
    assert windows(holidays={sunday}).deferral(ist("2025-02-09 03:00")) == ist("2025-02-10 00:00")
    assert windows().deferral(ist("2025-02-09 03:00")) is None


async def cut_commands(db: Database) -> list[tuple[str, str]]:
    return [(c.action, c.state) for c in await command_log.list_commands(db)]


async def test_a_cut_due_inside_the_night_window_is_deferred_to_its_end_and_then_carried_out(
    gateway: TestClient, world: World, mock: MockHeadEnd, db: Database
) -> None:
    assert (await admin(gateway, world, "PATCH", "/sites/S1", {"no_cut_hours": "18:00-08:00"}))[0] == 200
    clock: FixedClock = gateway.app[CLOCK]  # type: ignore[assignment]
    clock.set(ist("2025-02-08 20:40"))
    await reading(gateway, world, 10.5)  # 105.00 against 100.00
    assert await gateway.app[DISPATCHER].run() == []  # inside the window: nothing sent
    assert await cut_commands(db) == [("cut", "requested")]
    assert await relay(mock) == "on"
    [deferred] = await events(gateway, world)
    assert deferred["type"] == "cut.deferred" and deferred["meter_no"] == "101"
    assert deferred["data"]["until"] == "2025-02-09T02:30:00Z"  # 08:00 IST
    clock.set(ist("2025-02-09 07:59"))
    assert await gateway.app[DISPATCHER].run() == []
    clock.set(ist("2025-02-09 08:00"))
    [sent] = await gateway.app[DISPATCHER].run()
    assert (sent.action, sent.state) == ("cut", "done")
    assert await relay(mock) == "off"
    assert types(await events(gateway, world)) == ["cut.deferred", "meter.cut"]

    await recharge(gateway, world, "50.00")  # lifts it above zero: restored at once
    await gateway.app[DISPATCHER].settle()
    assert await relay(mock) == "on"
    assert types(await events(gateway, world)) == ["cut.deferred", "meter.cut", "recharge.settled", "meter.restored"]
    assert (await ledger.check_ledger(db, meter_no=101)).ok


async def test_a_recharge_inside_the_window_cancels_the_deferred_cut(
    gateway: TestClient, world: World, mock: MockHeadEnd, db: Database
) -> None:
    await admin(gateway, world, "PATCH", "/sites/S1", {"no_cut_hours": "18:00-08:00"})
    clock: FixedClock = gateway.app[CLOCK]  # type: ignore[assignment]
    clock.set(ist("2025-02-08 23:10"))
    await reading(gateway, world, 10.5)
    assert await gateway.app[DISPATCHER].run() == []
    await recharge(gateway, world, "20.00")
    clock.set(ist("2025-02-09 08:00"))
    assert await gateway.app[DISPATCHER].run() == []
    assert await cut_commands(db) == [("cut", "cancelled")]
    assert await relay(mock) == "on"


async def test_holidays_and_weekdays_defer_cuts_and_staff_stops_are_never_deferred(
    gateway: TestClient, world: World, mock: MockHeadEnd, db: Database
) -> None:
    assert (await admin(gateway, world, "PATCH", "/sites/S1", {"no_cut_weekdays": "sat"}))[0] == 200
    status, body = await admin(gateway, world, "POST", "/sites/S1/holidays", {"date": "2025-02-09", "name": "Festival"})
    assert status == 201 and body["data"] == {"date": "2025-02-09", "name": "Festival"}
    assert (await admin(gateway, world, "GET", "/sites/S1/holidays"))[1]["data"] == [body["data"]]
    await reading(gateway, world, 10.5)  # Saturday 11:30
    assert await gateway.app[DISPATCHER].run() == []
    [deferred] = await events(gateway, world)
    assert deferred["data"]["until"] == "2025-02-09T18:30:00Z"  # Saturday, then the Sunday holiday: Monday 00:00 IST
    assert (await admin(gateway, world, "DELETE", "/sites/S1/holidays/2025-02-09"))[0] == 200
    assert (await admin(gateway, world, "DELETE", "/sites/S1/holidays/2025-02-09"))[0] == 404
    assert (await admin(gateway, world, "DELETE", "/sites/S1/holidays/09-02-2025"))[0] == 400
    # Staff can still stop a meter on a no-cut day (call 7 is not a zero-balance cut).
    stop = await gateway.post(
        "/api/v1/meter/stop", json={"site_id": "S1", "meter_no": "101"}, headers=world.headers("operate")
    )
    assert stop.status == 200
    assert await relay(mock) == "off"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("no_cut_hours", "8-9"),
        ("no_cut_hours", "18:00-18:00"),
        ("no_cut_weekdays", "someday"),
        ("alert_thresholds", "200,abc"),
        ("grace_amount", "-5"),
    ],
)
async def test_bad_policy_values_are_refused_naming_the_field(
    gateway: TestClient, world: World, field: str, value: str
) -> None:
    status, body = await admin(gateway, world, "PATCH", "/sites/S1", {field: value})
    assert status == 400 and list(body["errors"]) == [field]


# --- Grace ------------------------------------------------------------------------------------


async def test_grace_credit_keeps_the_supply_until_the_balance_reaches_minus_grace(
    gateway: TestClient, world: World, mock: MockHeadEnd, db: Database
) -> None:
    await admin(gateway, world, "PATCH", "/sites/S1", {"grace_amount": "20.00"})
    await reading(gateway, world, 10.5)  # -5.00: within the grace
    await gateway.app[DISPATCHER].run()
    assert await relay(mock) == "on"
    gateway.app[CLOCK].advance(minutes=30)  # type: ignore[attr-defined]
    await reading(gateway, world, 1.5)  # -20.00: at the threshold
    await gateway.app[DISPATCHER].run()
    assert await relay(mock) == "off"
    await recharge(gateway, world, "10.00")  # -10.00: above the threshold again, restored
    await gateway.app[DISPATCHER].settle()
    assert await relay(mock) == "on"


# --- Alerts -----------------------------------------------------------------------------------


def test_alert_step_alerts_each_threshold_once_per_crossing_and_rearms() -> None:
    t = [Decimal("200"), Decimal("50"), Decimal("0")]
    assert alert_step(t, None, Decimal("250")) == ([], None)
    assert alert_step(t, None, Decimal("40")) == ([Decimal("200"), Decimal("50")], Decimal("50"))
    assert alert_step(t, Decimal("50"), Decimal("30")) == ([], Decimal("50"))
    assert alert_step(t, Decimal("50"), Decimal("0")) == ([Decimal("0")], Decimal("0"))
    assert alert_step(t, Decimal("0"), Decimal("120")) == ([], Decimal("200"))  # re-armed 50 and 0
    assert alert_step(t, Decimal("200"), Decimal("500")) == ([], None)


async def test_balance_alerts_fire_once_per_crossing_and_rearm_after_a_recharge(
    gateway: TestClient, world: World
) -> None:
    await admin(gateway, world, "PATCH", "/sites/S1", {"alert_thresholds": ["200.00", "50.00", "0.00"]})
    alerts = gateway.app[ALERTS]
    assert await alerts.run() == 3  # 101 at 100.00 is below 200; 102 at 50.00 below 200 and 50
    await reading(gateway, world, 6)  # 40.00
    assert await alerts.run() == 1 and await alerts.run() == 0
    gateway.app[CLOCK].advance(minutes=30)  # type: ignore[attr-defined]
    await reading(gateway, world, 1)  # 30.00: no new threshold
    assert await alerts.run() == 0
    await recharge(gateway, world, "300.00")  # 330.00: every threshold armed again
    assert await alerts.run() == 0
    gateway.app[CLOCK].advance(minutes=30)  # type: ignore[attr-defined]
    await reading(gateway, world, 15)  # 180.00
    assert await alerts.run() == 1
    low = [
        (e["data"]["threshold"], e["data"]["balance"])
        for e in await events(gateway, world)
        if e["type"] == "balance.low" and e["meter_no"] == "101"
    ]
    assert low == [("200.00", "100.00"), ("50.00", "40.00"), ("200.00", "180.00")]


# --- Events listing ---------------------------------------------------------------------------


async def test_events_are_listed_in_order_after_an_event_id(gateway: TestClient, world: World) -> None:
    await admin(gateway, world, "PATCH", "/sites/S1", {"alert_thresholds": "500,300,200"})
    await gateway.app[ALERTS].run()  # three events for 101, then three for 102
    first, second, third = (await events(gateway, world))[:3]
    status, body = await admin(gateway, world, "GET", f"/sites/S1/events?after={first['event_id']}&limit=1")
    assert status == 200 and body["data"] == [second]
    assert (await admin(gateway, world, "GET", "/sites/S1/events?after=evt_nope"))[0] == 404
    assert (await admin(gateway, world, "GET", "/sites/S1/events?limit=0"))[0] == 400
    assert (await admin(gateway, world, "GET", "/sites/S2/events"))[0] == 404
    assert third["data"]["threshold"] == "200.00"


# --- Fixed daily charges ----------------------------------------------------------------------


async def test_the_fixed_charge_is_debited_once_per_meter_day_through_catch_up_and_re_roll(db: Database) -> None:
    created = ist("2025-03-01 09:00")
    await make_site(db, meters=(1, 2), created=created)
    await tariffs.set_tariff(
        db,
        site_id="S1",
        grid=Decimal("8"),
        dg=Decimal("20"),
        fixed_daily=Decimal("5.00"),
        effective_from=None,
        now=created,
    )
    # Down for three days: the catch-up rolls 1, 2 and 3 March (the 1st from 09:00 at the new tariff).
    await days.roll_up_due(db, now=ist("2025-03-04 00:20"))
    await days.roll_up_due(db, now=ist("2025-03-04 00:25"))
    await days.roll_up_date(db, day=dt.date(2025, 3, 2), now=ist("2025-03-04 00:30"))  # by hand, again
    for meter_no in (1, 2):
        entries = [(e.kind, e.amount, e.day) for e in await ledger.list_ledger(db, meter_no=meter_no)]
        assert entries == [
            ("fixed", Decimal("-5.00"), dt.date(2025, 3, 2)),
            ("fixed", Decimal("-5.00"), dt.date(2025, 3, 3)),
        ]  # 1 March started before the tariff with a fixed charge
        check = await ledger.check_ledger(db, meter_no=meter_no)
        assert check.ok and check.balance == Decimal("-10.00")


async def test_a_fixed_charge_that_empties_a_balance_queues_one_cut_by_the_ingest_cut_rule(db: Database) -> None:
    created = ist("2025-03-01 09:00")
    await make_site(db, meters=(1, 2, 3), created=created)
    fixed = Decimal("5.00")
    await tariffs.set_tariff(
        db, site_id="S1", grid=Decimal("8"), dg=Decimal("20"), fixed_daily=fixed, effective_from=None, now=created
    )
    async with db.transaction() as session:
        await session.execute(update(Site).values(auto_cut=True))
        await session.execute(update(Meter).where(Meter.meter_no == 1).values(balance=Decimal("12.00")))
        await session.execute(update(Meter).where(Meter.meter_no == 2).values(balance=Decimal("7.00")))
        await session.execute(update(Meter).where(Meter.meter_no == 3).values(balance=Decimal("3.00"), relay_on=False))

    async def cuts(meter_no: int) -> list[tuple[str, str, dt.datetime]]:
        listed = await command_log.list_commands(db, meter_no=meter_no)
        return [(c.state, c.reason, c.created_at) for c in listed if c.action == "cut"]

    # 2 and 3 March are charged: meter 1 keeps 2.00, meter 2 goes 2.00 then -3.00, meter 3 is off already.
    rolled_at = ist("2025-03-04 00:20")
    await days.roll_up_due(db, now=rolled_at)
    assert await cuts(1) == [] and await cuts(3) == []
    assert await cuts(2) == [("requested", command_log.CUT_REASON, rolled_at)]
    await days.roll_up_due(db, now=ist("2025-03-05 00:20"))  # 4 March: meter 1 at -3.00, meter 2 at -8.00
    assert await cuts(1) == [("requested", command_log.CUT_REASON, ist("2025-03-05 00:20"))]
    assert len(await cuts(2)) == 1  # its cut is still pending: not a second one


# --- Days left --------------------------------------------------------------------------------


async def test_days_left_is_the_balance_over_the_average_daily_charge(
    gateway: TestClient, world: World, db: Database
) -> None:
    status, body = await admin(gateway, world, "GET", "/meters/101")
    assert status == 200 and body["data"]["days_left"] is None  # nothing charged yet
    async with db.transaction() as session:
        await session.execute(update(Meter).where(Meter.meter_no == 101).values(created_at=NOW - dt.timedelta(days=30)))  # type: ignore[arg-type]
    clock: FixedClock = gateway.app[CLOCK]  # type: ignore[assignment]
    for day in (6, 7):  # 6 and 7 February: 2.00 kWh a day at 10.00
        clock.set(ist(f"2025-02-0{day} 10:10"))
        await reading(gateway, world, 2)
    clock.set(NOW)
    status, body = await admin(gateway, world, "GET", "/meters/101")
    # 60.00 left at 40.00 over the last 7 days: 60 / (40 / 7) = 10.5 days
    assert body["data"]["balance"] == "60.00" and body["data"]["days_left"] == "10.5"


# --- The site webhook -------------------------------------------------------------------------


class Receiver:
    """A webhook receiver over a real socket: answers 500 to the first `failures` posts, then 204."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        if len(self.received) <= self.failures:
            return web.Response(status=500)
        return web.Response(status=204)


async def test_site_events_go_to_the_site_webhook_signed_and_retried(
    aiohttp_client: Any, aiohttp_server: Any, database_url: str, mock: MockHeadEnd, world: World
) -> None:
    clock = FixedClock(NOW)
    client = await aiohttp_client(
        create_app(gateway_settings(database_url, mock.url, callback_allow_private=True), clock=clock)
    )
    receiver = Receiver(failures=1)
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = await aiohttp_server(app)
    url = str(server.make_url("/hook"))
    status, body = await admin(client, world, "PUT", "/sites/S1/webhook", {"url": url})
    assert status == 200 and body["data"]["url"] == url
    secret = body["data"]["secret"]
    status, body = await admin(client, world, "GET", "/sites/S1/webhook")
    assert status == 200 and "secret" not in body["data"]

    await admin(client, world, "PATCH", "/sites/S1", {"alert_thresholds": "150"})
    assert await client.app[ALERTS].run() == 2  # 101 at 100.00 and 102 at 50.00
    deliveries = client.app[DELIVERIES]
    await deliveries.run()  # 101's event fails (500) and holds back the site's next one
    assert len(receiver.received) == 1
    clock.advance(seconds=5)  # the first retry is due 5 s later, as for DG callbacks
    await deliveries.run()
    assert len(receiver.received) == 3
    first_try, retry, second = receiver.received
    assert first_try[1] == retry[1]  # the same event, the same bytes
    event = verify(secret, retry[0], retry[1], now=clock.now())
    listed = await events(client, world)
    assert event == {
        "event_id": listed[0]["event_id"],
        "type": "balance.low",
        "site_id": "S1",
        "meter_no": "101",
        "at": "2025-02-08T06:00:00Z",
        "data": {"threshold": "150.00", "balance": "100.00", "unit_no": "A-101"},
    }
    assert verify(secret, second[0], second[1], now=clock.now())["meter_no"] == "102"
    assert (await admin(client, world, "DELETE", "/sites/S1/webhook"))[0] == 200
    assert (await admin(client, world, "GET", "/sites/S1/webhook"))[0] == 404


async def test_a_private_webhook_url_is_refused(gateway: TestClient, world: World) -> None:
    status, body = await admin(gateway, world, "PUT", "/sites/S1/webhook", {"url": "http://127.0.0.1:9/hook"})
    assert status == 422 and "not a public address" in body["message"]
    status, body = await admin(gateway, world, "PUT", "/sites/S1/webhook", {"url": "ftp://example.com/"})
    assert status == 400 and list(body["errors"]) == ["url"]


async def test_a_dg_change_after_its_half_hour_was_billed_is_an_event_not_a_rebill(
    gateway: TestClient, world: World, db: Database
) -> None:
    await dgs.add_dg(db, site_id="S1", dg_no="DG1")
    counted = await late_changes_counted(gateway)
    gateway.app[CLOCK].set(ist("2025-02-08 12:40"))  # type: ignore[attr-defined]
    await reading(gateway, world, 1)  # 12:00-12:30 IST, billed on the grid: 10.00
    late = {"site_id": "S1", "dg_number": "DG1", "timestamp": "2025-02-08T06:35:00Z", "status": "ON"}  # 12:05 IST
    response = await gateway.post("/dg", json=late, headers={"Authorization": f"Bearer {world.keys['ingest']}"})
    assert response.status == 200
    async with db.reader() as session:
        meter = await session.get(Meter, 101)
    assert meter is not None and meter.balance == Decimal("90.00") and meter.dg_kwh == 0  # not re-billed
    [event] = [e for e in await events(gateway, world) if e["type"] == "dg.late_change"]
    assert event["data"] == {
        "dg_no": "DG1",
        "status": "ON",
        "changed_at": "2025-02-08T06:35:00Z",
        "interval_start": "2025-02-08T06:30:00Z",
        "readings_billed": 1,
    }
    assert await late_changes_counted(gateway) == counted + 1


async def late_changes_counted(client: TestClient) -> float:
    """`gateway_dg_late_changes_total` as /metrics says now (the registry is the process's)."""
    text = await (await client.get("/metrics")).text()
    found = re.search(r"^gateway_dg_late_changes_total ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_a_recharge_restores_a_cut_meter_at_the_head_end_within_5_seconds(
    gateway: TestClient, world: World, mock: MockHeadEnd
) -> None:
    await reading(gateway, world, 10.5)  # -5.00
    [cut] = await gateway.app[DISPATCHER].run()
    assert cut.state == "done" and await relay(mock) == "off"
    started = time.monotonic()
    await recharge(gateway, world, "20.00")  # the reply does not wait for the restore
    await gateway.app[DISPATCHER].settle()  # the restore went out on its own (no scheduler runs in tests)
    assert await relay(mock) == "on" and time.monotonic() - started < 5
    print(f"restored at the head-end {time.monotonic() - started:.3f} s after the recharge was sent")
