"""More portal test data for a prepaid household (issue 22): recharges with receipts, a DG that
ran, a fixed charge, a zero-balance cut and a staff stop. Built on tests/portaldata.make_world."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import update

from storage.db.engine import Database
from storage.db.models import Command, DgStatusChange, DieselGenerator, LedgerEntry, Meter, Recharge
from tests.daydata import at
from tests.portaldata import CUT, KOLKATA, NEIGHBOUR, RESIDENT

STOPPED = NEIGHBOUR  # stopped by staff (call 7) in `add_prepaid_story`


async def add_prepaid_story(db: Database) -> None:
    """Three recharges of the resident (credited, pending, failed), a fixed charge on Monday
    10th, DG-1 of S1 running 23:50 Tue → 00:20 Wed and 04:17 → 05:07 Wed, the S2 meter cut
    for zero balance and the neighbour stopped by staff."""
    async with db.transaction() as session:
        for minute, amount, state, token, reason in (
            ("2025-02-10 09:15", "500.00", "success", "4821-0093-1174-5520", ""),
            ("2025-02-11 19:02", "200.00", "waiting", None, ""),
            ("2025-02-12 08:40", "100.00", "error", None, "refused by the head-end"),
        ):
            when = at(KOLKATA, minute)
            session.add(
                Recharge(
                    transaction_id=f"TXN{minute[8:10]}{state.upper()}",
                    client="factech",
                    site_id="S1",
                    meter_no=RESIDENT,
                    amount=Decimal(amount),
                    state=state,
                    token=token,
                    reason=reason,
                    created_at=when,
                    updated_at=when,
                )
            )
        session.add(
            LedgerEntry(
                meter_no=RESIDENT,
                kind="fixed",
                amount=Decimal("-5.00"),
                balance_after=Decimal("150.00"),
                reason="fixed charge",
                day=dt.date(2025, 2, 10),
                created_at=at(KOLKATA, "2025-02-11 00:05"),
            )
        )
        session.add(DieselGenerator(site_id="S1", dg_no="DG-1", status="OFF"))
        for minute, status in (
            ("2025-02-11 23:50", "ON"),
            ("2025-02-12 00:20", "OFF"),
            ("2025-02-12 04:17", "ON"),
            ("2025-02-12 05:07", "OFF"),
        ):
            session.add(DgStatusChange(site_id="S1", dg_no="DG-1", at=at(KOLKATA, minute), status=status))
        done = at(KOLKATA, "2025-02-12 07:00")
        for meter_no, action, reason in ((CUT, "cut", "zero balance"), (STOPPED, "stop", "staff: unpaid dues")):
            session.add(
                Command(
                    meter_no=meter_no,
                    action=action,
                    reason=reason,
                    state="done",
                    created_at=done,
                    updated_at=done,
                    finished_at=done,
                )
            )
        await session.flush()
        await session.execute(update(Meter).where(Meter.meter_no == STOPPED).values(relay_on=False))  # type: ignore[arg-type]
