"""Meters: register, list, read, edit and retire them, and the resident's legacy-ingest token."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db.engine import Database
from storage.db.models import DieselGenerator, LedgerEntry, Meter, Site, utcnow
from storage.errors import Conflict, InvalidInput, unknown_meter, unknown_site
from storage.portal.accounts import unlink_in
from storage.registry.keys import hash_secret, new_secret
from storage.registry.meter_roles import DG_METER, FLAT, METER_ROLES
from storage.registry.sites import check_editable


def check_role(role: str, dg_no: str | None, balance: Decimal = Decimal(0)) -> None:
    """A known role; a DG number for a DG's meter and for no other; no balance on a bulk meter."""
    if role not in METER_ROLES:
        raise InvalidInput(f"unknown meter role {role!r}; one of {', '.join(METER_ROLES)}", {"role": ["Unknown role."]})
    if role == DG_METER and not dg_no:
        raise InvalidInput("a DG's meter (role dg) needs dg_no", {"dg_no": ["Required for role dg."]})
    if role != DG_METER and dg_no is not None:
        raise InvalidInput(f"dg_no is for role dg only, not {role!r}", {"dg_no": ["Only for role dg."]})
    if role != FLAT and balance != 0:
        raise InvalidInput(
            f"a bulk meter ({role}) is never billed: no balance", {"balance": ["Must be 0 for a bulk meter."]}
        )


async def check_dg_of_site(session: AsyncSession, *, site_id: str, dg_no: str | None) -> None:
    """InvalidInput unless `dg_no` (if any) is a DG of the site."""
    if dg_no is not None and await session.get(DieselGenerator, (site_id, dg_no)) is None:
        raise InvalidInput(f"unknown DG {dg_no!r} on site {site_id!r}", {"dg_no": ["Unknown DG of the site."]})


@dataclass(frozen=True)
class NewMeter:
    """A registered meter and its device token, which is shown only this once."""

    meter: Meter
    token: str


async def add_meter(
    db: Database,
    *,
    meter_no: int,
    site_id: str,
    unit_no: str,
    consumer_name: str = "",
    fin_no: str = "",
    balance: Decimal = Decimal("0.00"),
    start_grid: Decimal = Decimal("0.000"),
    start_dg: Decimal = Decimal("0.000"),
    role: str = FLAT,
    dg_no: str | None = None,
) -> NewMeter:
    """Register a meter on a site; it starts ON with its registers at the start values. A bulk
    meter (`role` incomer or dg: `storage.registry.meter_roles`) is never billed, so it has no balance;
    a DG's meter names a DG of the site."""
    if meter_no <= 0:
        raise InvalidInput("meter_no must be a positive integer", {"meter_no": ["Must be positive."]})
    if not unit_no.strip():
        raise InvalidInput("unit_no must not be empty", {"unit_no": ["Must not be empty."]})
    check_role(role, dg_no, balance)
    # Quantized like the balance, so the returned meter reads exactly as stored.
    start_grid, start_dg = start_grid.quantize(Decimal("0.001")), start_dg.quantize(Decimal("0.001"))
    token = new_secret("mtr")
    meter = Meter(
        meter_no=meter_no,
        site_id=site_id,
        unit_no=unit_no,
        consumer_name=consumer_name,
        fin_no=fin_no,
        balance=balance.quantize(Decimal("0.01")),
        grid_kwh=start_grid,
        dg_kwh=start_dg,
        start_grid=start_grid,
        start_dg=start_dg,
        token_hash=hash_secret(token),
        role=role,
        dg_no=dg_no,
    )
    try:
        async with db.transaction() as session:
            if await session.get(Site, site_id) is None:
                raise unknown_site(site_id)
            await check_dg_of_site(session, site_id=site_id, dg_no=dg_no)
            if await session.get(Meter, meter_no) is not None:
                raise Conflict(
                    f"meter {meter_no} already exists (meter numbers are never reused)",
                    {"meter_no": ["Already exists."]},
                )
            session.add(meter)
            await session.flush()  # the meter before the entry referring to it (no ORM relationship orders them)
            # The ledger starts with the balance the meter came with (storage/money/ledger.py).
            opening = LedgerEntry(
                meter_no=meter_no,
                kind="opening",
                amount=meter.balance,
                balance_after=meter.balance,
                reason="balance when registered",
            )
            session.add(opening)
    except IntegrityError:
        raise Conflict(f"meter {meter_no} already exists", {"meter_no": ["Already exists."]}) from None
    return NewMeter(meter=meter, token=token)


async def set_meter_token(db: Database, *, meter_no: int) -> str:
    """Issue a new device token for a meter (the old one stops working)."""
    token = new_secret("mtr")
    async with db.transaction() as session:
        result = await session.execute(
            update(Meter).where(Meter.meter_no == meter_no).values(token_hash=hash_secret(token))  # type: ignore[arg-type]
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise unknown_meter(meter_no)
    return token


async def legacy_meters(db: Database) -> frozenset[int]:
    """The active meters staff let post readings without a token (`meter.legacy_ingest`)."""
    async with db.reader() as session:
        result = await session.execute(
            select(Meter.meter_no).where(Meter.legacy_ingest.is_(True), Meter.active.is_(True))  # type: ignore[attr-defined]
        )
        return frozenset(result.scalars())


async def find_meter_by_token(db: Database, *, token_hash: str) -> int | None:
    """The meter number whose device token has this hash, if any."""
    async with db.reader() as session:
        result = await session.execute(select(Meter.meter_no).where(Meter.token_hash == token_hash))
        return result.scalar_one_or_none()


METER_EDITABLE = ("consumer_name", "fin_no", "legacy_ingest", "role", "dg_no")
ROLE_FIELDS = ("role", "dg_no")  # what the meter measures: not a new resident


async def list_meters(db: Database, *, site_id: str) -> list[Meter]:
    """Every meter of a site, retired ones included, ordered by unit then number."""
    query = select(Meter).where(Meter.site_id == site_id).order_by(Meter.unit_no, Meter.meter_no)  # type: ignore[arg-type]
    async with db.reader() as session:
        return list((await session.execute(query)).scalars())


async def get_meter(db: Database, *, meter_no: int) -> Meter:
    """One meter; NotFound if unknown."""
    async with db.reader() as session:
        meter = await session.get(Meter, meter_no)
    if meter is None:
        raise unknown_meter(meter_no)
    return meter


async def edit_meter(db: Database, *, meter_no: int, changes: dict[str, object]) -> tuple[Meter, bool]:
    """Change a meter's consumer details (name, fin_no), whether it may post without a token, or
    its role (`storage.registry.meter_roles`: a DG's meter names a DG of its site; a bulk meter has no balance).
    A new consumer or FIN is a new resident: the old one's portal account is removed in the same
    transaction (True then), so they no longer see the meter and the new one can claim it."""
    check_editable(changes, METER_EDITABLE)
    async with db.transaction() as session:
        meter = await session.get(Meter, meter_no)
        if meter is None:
            raise unknown_meter(meter_no)
        if "role" in changes or "dg_no" in changes:
            role = str(changes.get("role", meter.role))
            # A meter that stops measuring a DG forgets its DG.
            kept_dg = meter.dg_no if role == DG_METER else None
            dg_no = changes.get("dg_no", kept_dg)
            check_role(role, None if dg_no is None else str(dg_no), meter.balance)
            await check_dg_of_site(session, site_id=meter.site_id, dg_no=None if dg_no is None else str(dg_no))
            changes = {**changes, "role": role, "dg_no": dg_no}
        new_resident = any(
            getattr(meter, field) != value for field, value in changes.items() if field not in ROLE_FIELDS
        )
        for field, value in changes.items():
            setattr(meter, field, value)
        unlinked = await unlink_in(session, meter_no=meter_no) if new_resident else False
    return meter, unlinked


async def retire_meter(db: Database, *, meter_no: int) -> Meter:
    """Take a meter out of service without a replacement; it keeps its history and balance."""
    async with db.transaction() as session:
        meter = await session.get(Meter, meter_no, with_for_update=True)
        if meter is None:
            raise unknown_meter(meter_no)
        if not meter.active:
            raise Conflict(f"meter {meter_no} is already retired", {"meter_no": ["Already retired."]})
        meter.active = False
        meter.retired_at = utcnow()
    return meter
