"""The portal world of tests/portaldata.py with an energy audit to show (February 2025, S1):
the grid incomer's readings on the 10th and 11th, and DG1's fuel and register samples.

    Feb 10  incomer 48 × 1.600 = 76.8 kWh; flats 24 + 48 = 72 grid      → loss 4.8 (6.25 %)
    Feb 11  incomer 48 × 0.500 = 24.0 kWh; flats 20 grid                → loss 4.0 (16.67 %)
            DG1 20:00 fuel 40.00, register 500.0; 23:00 fuel 36.00, 512.0 → 12.0 kWh vs the
            flats' 10.0 DG (2.0, 16.67 %), 4.00 l burnt: 3.00 kWh/l
    Feb 12  08:00 fuel 90.00 (a refill of 54.00), register 512.0        → DG 0.0, flats 1.5 DG
    (other days: no incomer reading, no DG sample → not measured)
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import insert

from storage.db.engine import Database
from storage.db.models import DgSample, Meter, PortalUser, Reading
from storage.registry import dgs
from tests.daydata import at, whole_day
from tests.portaldata import KOLKATA, password_hash

INCOMER = 777000001
S2_STAFF = "s2-manager"
FEB_10 = {"incomer": "76.80", "flats": "72.00", "loss": "4.80", "pct": "6.25"}


async def add_audit_story(db: Database) -> None:
    """The incomer, DG1 and their data; a staff account that sees S2 only."""
    created = at(KOLKATA, "2025-01-01 00:00")
    async with db.transaction() as session:
        session.add(Meter(meter_no=INCOMER, site_id="S1", unit_no="Incomer", role="incomer", created_at=created))
        session.add(PortalUser(is_staff=True, username=S2_STAFF, password_hash=password_hash(), sites=["S2"]))
    await dgs.add_dg(db, site_id="S1", dg_no="DG1")
    received = at(KOLKATA, "2025-02-12 00:05")
    rows = [
        {"meter_no": INCOMER, "interval_start": start, "kwh": Decimal(kwh), "source": "grid", "charge": Decimal(0),
         "received_at": received}
        for day, kwh in (("2025-02-10", "1.600"), ("2025-02-11", "0.500"))
        for start in whole_day(KOLKATA, day)
    ]  # fmt: skip
    samples = [
        DgSample(site_id="S1", dg_no="DG1", at=at(KOLKATA, when), fuel_litres=Decimal(fuel), reading_kwh=Decimal(kwh))
        for when, fuel, kwh in (("2025-02-11 20:00", "40", "500"), ("2025-02-11 23:00", "36", "512"),
                                ("2025-02-12 08:00", "90", "512"))
    ]  # fmt: skip
    async with db.transaction() as session:
        await session.execute(insert(Reading), rows)
        session.add_all(samples)


def days_of_february() -> list[dt.date]:
    """The days of February 2025 begun by the portal world's now (the 12th)."""
    return [dt.date(2025, 2, day) for day in range(1, 13)]
