"""Meter replacement: a unit gets a new meter, the old one is retired and keeps its history.

The unit, its prepaid balance, its consumer details and its sanctioned loads move to the new
meter, which gets its own device token. The registers at both ends are recorded in
`meter_change`, which is what Factech's call 5 lists.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from storage.db.engine import Database
from storage.db.models import Meter, MeterChange, PortalUser, Site, utcnow
from storage.errors import Conflict, InvalidInput, unknown, unknown_site
from storage.money.ledger import add_entry
from storage.registry.keys import hash_secret, new_secret

KWH = Decimal("0.001")


@dataclass(frozen=True)
class Replacement:
    """A recorded change and the new meter's device token, shown only this once."""

    change: MeterChange
    new_meter: Meter
    token: str


async def replace_meter(
    db: Database,
    *,
    site_id: str,
    old_meter_no: int,
    new_meter_no: int,
    meter_change_date: dt.date,
    reading_start_date: dt.date | None = None,
    new_start_grid: Decimal = Decimal("0.000"),
    new_start_dg: Decimal = Decimal("0.000"),
    now: dt.datetime | None = None,
) -> Replacement:
    """Replace an active meter of a site by a new meter number, in one transaction.

    InvalidInput for a change date in the site's future or a reading start before the change;
    NotFound if the old meter is not on this site; Conflict if it is already retired or the new
    number was ever used.
    """
    now = now or utcnow()
    reading_start_date = reading_start_date or meter_change_date
    if reading_start_date < meter_change_date:
        raise InvalidInput(
            "reading_start_date must not be before meter_change_date",
            {"reading_start_date": ["Must not be before meter_change_date."]},
        )
    if new_meter_no <= 0:
        raise InvalidInput("new_meter_no must be a positive integer", {"new_meter_no": ["Must be positive."]})
    # Quantized here so the returned rows read exactly as they will be stored (3 decimals).
    new_start_grid, new_start_dg = new_start_grid.quantize(KWH), new_start_dg.quantize(KWH)
    token = new_secret("mtr")
    try:
        async with db.transaction() as session:
            site = await session.get(Site, site_id)
            # FOR UPDATE: two staff replacing the same meter at once must not both succeed.
            old = await session.get(Meter, old_meter_no, with_for_update=True)
            if site is None:
                raise unknown_site(site_id)
            if old is None or old.site_id != site_id:
                raise unknown("meter", old_meter_no, field="old_meter_no", where=f" on site {site_id!r}")
            site_today = now.astimezone(zoneinfo.ZoneInfo(site.timezone)).date()
            if meter_change_date > site_today:
                raise InvalidInput(
                    f"meter_change_date {meter_change_date} is in the future",
                    {"meter_change_date": ["Must not be in the future."]},
                )
            if not old.active:
                raise Conflict(f"meter {old_meter_no} is already retired", {"old_meter_no": ["Retired."]})
            if await session.get(Meter, new_meter_no) is not None:
                raise Conflict(
                    f"meter {new_meter_no} already exists (meter numbers are never reused)",
                    {"new_meter_no": ["Already exists."]},
                )
            new = Meter(
                meter_no=new_meter_no,
                site_id=site_id,
                unit_no=old.unit_no,
                consumer_name=old.consumer_name,
                fin_no=old.fin_no,
                load_dg=old.load_dg,
                load_grid=old.load_grid,
                grid_kwh=new_start_grid,
                dg_kwh=new_start_dg,
                start_grid=new_start_grid,
                start_dg=new_start_dg,
                token_hash=hash_secret(token),
                created_at=now,
            )
            change = MeterChange(
                site_id=site_id,
                unit_no=old.unit_no,
                old_meter_no=old_meter_no,
                old_start_grid=old.start_grid,
                old_start_dg=old.start_dg,
                old_end_grid=old.grid_kwh,
                old_end_dg=old.dg_kwh,
                new_meter_no=new_meter_no,
                new_start_grid=new_start_grid,
                new_start_dg=new_start_dg,
                balance_moved=old.balance,
                meter_change_date=meter_change_date,
                reading_start_date=reading_start_date,
                created_at=now,
            )
            # The old meter keeps its registers, readings and consumer details as history; only
            # the money leaves it (to a zero balance), so the balance is never counted twice.
            old.active = False
            old.retired_at = now
            session.add_all([new, change])
            await session.flush()  # the new meter before the rows referring to it
            if change.balance_moved:  # the money moves as a pair of ledger adjustments
                moved = change.balance_moved
                add_entry(
                    session,
                    meter=old,
                    kind="adjustment",
                    amount=-moved,
                    reason=f"moved to meter {new_meter_no}",
                    now=now,
                )
                add_entry(
                    session,
                    meter=new,
                    kind="adjustment",
                    amount=moved,
                    reason=f"moved from meter {old_meter_no}",
                    now=now,
                )
            # The resident's portal account follows the unit to the new meter.
            await session.execute(
                update(PortalUser).where(PortalUser.meter_no == old_meter_no).values(meter_no=new_meter_no)  # type: ignore[arg-type]
            )
    except IntegrityError:
        raise Conflict(
            f"meter {new_meter_no} already exists or meter {old_meter_no} was replaced meanwhile",
            {"new_meter_no": ["Already exists."]},
        ) from None
    return Replacement(change=change, new_meter=new, token=token)


async def list_meter_changes(db: Database, *, site_id: str, from_date: dt.date, to_date: dt.date) -> list[MeterChange]:
    """Changes of a site whose change date lies in [from_date, to_date], oldest first."""
    query = (
        select(MeterChange)
        .where(
            MeterChange.site_id == site_id,
            MeterChange.meter_change_date >= from_date,
            MeterChange.meter_change_date <= to_date,
        )
        .order_by(MeterChange.meter_change_date, MeterChange.id)  # type: ignore[arg-type]
    )
    async with db.reader() as session:
        return list((await session.execute(query)).scalars())
