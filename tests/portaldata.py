"""Test data and helpers for the portal: two regions, residents' meters with readings, forms."""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Awaitable, Callable
from decimal import Decimal

from aiohttp.test_utils import TestClient
from sqlalchemy import update

from gateway.settings import Settings
from storage import days
from storage.db.engine import Database
from storage.db.models import Meter, PortalUser, Site
from storage.money.tariffs import first_tariff
from storage.portal import passwords
from tests.daydata import add_readings, at, whole_day

KOLKATA = "Asia/Kolkata"
# Wednesday 12 February 2025, 10:47 in Kolkata: the week began on Monday the 10th.
NOW = at(KOLKATA, "2025-02-12 10:47")
RESIDENT = 999999999
NEIGHBOUR = 555555555
CUT = 111111111
PASSWORD = "correct horse battery"
STAFF = "manager"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def make_world(db: Database) -> None:
    """Sites in two regions; meters with rolled and unrolled days and today's readings."""
    created = at(KOLKATA, "2025-01-01 00:00")
    async with db.transaction() as session:
        session.add(Site(id="S1", name="Palm Court", region="North", timezone=KOLKATA, created_at=created))
        session.add(Site(id="S2", name="River View", region="South", timezone=KOLKATA, created_at=created))
        await session.flush()
        for site_id in ("S1", "S2"):
            session.add(first_tariff(site_id=site_id, grid=Decimal("8.00"), dg=Decimal("20.00"), created_at=created))
        for meter_no, site, fin, balance in (
            (RESIDENT, "S1", "A3389127I", "150.00"),
            (NEIGHBOUR, "S1", "A1234567I", "80.00"),
            (CUT, "S2", "B7654321Z", "-5.00"),
        ):
            session.add(
                Meter(
                    meter_no=meter_no,
                    site_id=site,
                    unit_no=f"U{meter_no % 1000}",
                    consumer_name=f"Resident {meter_no % 1000}",
                    fin_no=fin,
                    balance=Decimal(balance),
                    created_at=created,
                )
            )
    async with db.transaction() as session:
        await session.execute(update(Meter).where(Meter.meter_no == CUT).values(relay_on=False))
        await session.execute(
            update(Meter).where(Meter.meter_no == RESIDENT).values(last_reading_at=at(KOLKATA, "2025-02-12 10:31"))
        )
    late = at(KOLKATA, "2025-02-12 00:05")
    # January: the last day of the previous month, rolled.
    await add_readings(db, RESIDENT, whole_day(KOLKATA, "2025-01-31"), received_at=late, kwh="0.100")
    # Monday 10th: rolled; 0.5 kWh grid per half hour = 24 kWh.
    await add_readings(db, RESIDENT, whole_day(KOLKATA, "2025-02-10"), received_at=late, kwh="0.500")
    await add_readings(db, NEIGHBOUR, whole_day(KOLKATA, "2025-02-10"), received_at=late, kwh="1.000")
    await add_readings(db, CUT, whole_day(KOLKATA, "2025-02-10")[:24], received_at=late, kwh="0.200")
    for site in ("S1", "S2"):
        for day in ("2025-01-31", "2025-02-10"):
            await days.roll_up_day(db, site_id=site, day=dt.date.fromisoformat(day), now=late)
    # Tuesday 11th: not rolled yet (read from readings): 40 grid x 0.5 + 8 DG x 1.25 = 30 kWh.
    tuesday = whole_day(KOLKATA, "2025-02-11")
    await add_readings(db, RESIDENT, tuesday[:40], received_at=late, kwh="0.500")
    await add_readings(db, RESIDENT, tuesday[40:], received_at=late, kwh="1.250", source="dg")
    # Today until 10:30: 21 half hours; the last two (09:30, 10:00) are DG.
    today = whole_day(KOLKATA, "2025-02-12")[:21]
    await add_readings(db, RESIDENT, today[:19], received_at=NOW, kwh="0.250")
    await add_readings(db, RESIDENT, today[19:], received_at=NOW, kwh="0.750", source="dg")
    await add_readings(db, NEIGHBOUR, today[:10], received_at=NOW, kwh="2.000")


@functools.cache
def password_hash() -> str:
    """PASSWORD hashed once per test run (Argon2 is slow on purpose)."""
    return passwords.hash_password_now(PASSWORD)


async def add_accounts(db: Database) -> None:
    """The resident's account and a staff account, both with PASSWORD (registration itself is
    tested through the form)."""
    async with db.transaction() as session:
        session.add(PortalUser(is_staff=False, meter_no=RESIDENT, password_hash=password_hash()))
        session.add(PortalUser(is_staff=True, username=STAFF, password_hash=password_hash(), sites=["*"]))


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a page."""
    found = CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def submit(client: TestClient, path: str, data: dict[str, str], *, form_page: str | None = None):  # type: ignore[no-untyped-def]
    """GET the page with the form (for its CSRF token), then POST the form; redirects not followed."""
    page = await client.get(form_page or path)
    token = csrf_of(await page.text())
    return await client.post(path, data={**data, "csrf_token": token}, allow_redirects=False)


async def log_in(client: TestClient, login: str = str(RESIDENT), password: str = PASSWORD, *, staff: bool = False):  # type: ignore[no-untyped-def]
    """Log in through the form; returns the response (a 303 on success)."""
    path = "/management-dashboard/login" if staff else "/profile"
    return await submit(client, path, {"login": login, "password": password})


def portal_settings(database_url: str, **overrides: object) -> Settings:
    """Gateway settings for portal tests: no scheduler (the clock is fixed; rolls are explicit)."""
    return Settings(database_url=database_url, scheduler=False, **overrides)  # type: ignore[arg-type]


async def seed_world(database_url: str, *stories: Callable[[Database], Awaitable[object]]) -> None:
    """The portal's world and accounts in the database at `database_url`, then each story."""
    db = Database(database_url)
    try:
        await make_world(db)
        await add_accounts(db)
        for story in stories:
            await story(db)
    finally:
        await db.dispose()
