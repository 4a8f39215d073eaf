"""Sites, meters, DGs and API keys: the things staff register. One transaction per function."""

from __future__ import annotations

import hashlib
import secrets
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.engine import Database
from storage.errors import Conflict, InvalidInput, NotFound
from storage.meter_roles import DG_METER, FLAT, METER_ROLES
from storage.models import ApiKey, DieselGenerator, LedgerEntry, Meter, Site, utcnow
from storage.tariffs import SiteView, first_tariff, site_view

ROLES = ("read", "operate", "admin", "ingest")
ALL_SITES = "*"
MONEY_MAX = Decimal("1e12")


def new_secret(prefix: str) -> str:
    """A random credential with 256 bits of entropy, tagged so it is recognisable in a leak."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_secret(secret: str) -> str:
    """SHA-256 hex of a credential. Secrets are random, so a fast hash is the right one."""
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_amount(value: object, field: str, *, places: int = 2, minimum: Decimal | None = None) -> Decimal:
    """A Decimal from text or a number, with at most `places` decimals; InvalidInput otherwise."""
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise InvalidInput(f"{field} is not a number", {field: ["Not a valid number."]}) from None
    if not amount.is_finite() or abs(amount) >= MONEY_MAX:
        raise InvalidInput(f"{field} is out of range", {field: ["Not a finite number in range."]})
    if amount.as_tuple().exponent < -places:  # type: ignore[operator]
        raise InvalidInput(f"{field} has more than {places} decimals", {field: [f"At most {places} decimals."]})
    if minimum is not None and amount < minimum:
        raise InvalidInput(f"{field} must be at least {minimum}", {field: [f"Must be >= {minimum}."]})
    return amount


def check_timezone(name: str) -> str:
    """The IANA timezone name if it exists; InvalidInput otherwise."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown timezone {name!r}", {"timezone": ["Unknown IANA timezone."]}) from None
    return name


async def add_site(
    db: Database,
    *,
    site_id: str,
    name: str,
    region: str,
    timezone: str = "Asia/Kolkata",
    tariff_grid: Decimal = Decimal("8.00"),
    tariff_dg: Decimal = Decimal("20.00"),
    auto_cut: bool = True,
) -> SiteView:
    """Register a site, with its first tariff (in force since always). Conflict if the id is taken."""
    if not site_id.strip():
        raise InvalidInput("site_id must not be empty", {"site_id": ["Must not be empty."]})
    check_timezone(timezone)
    for field, tariff in (("tariff_grid", tariff_grid), ("tariff_dg", tariff_dg)):
        parse_amount(tariff, field, minimum=Decimal(0))
    site = Site(
        id=site_id,
        name=name,
        region=region,
        timezone=timezone,
        auto_cut=auto_cut,
    )
    try:
        async with db.transaction() as session:
            if await session.get(Site, site_id) is not None:
                raise Conflict(f"site {site_id!r} already exists", {"site_id": ["Already exists."]})
            session.add(site)
            await session.flush()
            session.add(first_tariff(site_id=site_id, grid=tariff_grid, dg=tariff_dg, created_at=site.created_at))
            await session.flush()
            view = await site_view(session, site, site.created_at)
    except IntegrityError:
        raise Conflict(f"site {site_id!r} already exists", {"site_id": ["Already exists."]}) from None
    return view


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
    meter (`role` incomer or dg: `storage.meter_roles`) is never billed, so it has no balance;
    a DG's meter names a DG of the site."""
    if meter_no <= 0:
        raise InvalidInput("meter_no must be a positive integer", {"meter_no": ["Must be positive."]})
    if not unit_no.strip():
        raise InvalidInput("unit_no must not be empty", {"unit_no": ["Must not be empty."]})
    parse_amount(balance, "balance")
    check_role(role, dg_no, balance)
    # Quantized like the balance, so the returned meter reads exactly as stored.
    start_grid = parse_amount(start_grid, "start_grid", places=3, minimum=Decimal(0)).quantize(Decimal("0.001"))
    start_dg = parse_amount(start_dg, "start_dg", places=3, minimum=Decimal(0)).quantize(Decimal("0.001"))
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
                raise NotFound(f"unknown site {site_id!r}", {"site_id": ["Unknown site."]})
            await check_dg_of_site(session, site_id=site_id, dg_no=dg_no)
            if await session.get(Meter, meter_no) is not None:
                raise Conflict(
                    f"meter {meter_no} already exists (meter numbers are never reused)",
                    {"meter_no": ["Already exists."]},
                )
            session.add(meter)
            await session.flush()  # the meter before the entry referring to it (no ORM relationship orders them)
            # The ledger starts with the balance the meter came with (storage/ledger.py).
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


async def add_dg(db: Database, *, site_id: str, dg_no: str, meter_no: str = "") -> DieselGenerator:
    """Register a diesel generator on a site; it starts OFF."""
    if not dg_no.strip():
        raise InvalidInput("dg_no must not be empty", {"dg_number": ["Must not be empty."]})
    dg = DieselGenerator(site_id=site_id, dg_no=dg_no, meter_no=meter_no)
    try:
        async with db.transaction() as session:
            if await session.get(Site, site_id) is None:
                raise NotFound(f"unknown site {site_id!r}", {"site_id": ["Unknown site."]})
            if await session.get(DieselGenerator, (site_id, dg_no)) is not None:
                raise Conflict(f"DG {dg_no!r} already exists on site {site_id!r}", {"dg_number": ["Already exists."]})
            session.add(dg)
    except IntegrityError:
        raise Conflict(f"DG {dg_no!r} already exists on site {site_id!r}", {"dg_number": ["Already exists."]}) from None
    return dg


@dataclass(frozen=True)
class NewKey:
    """A created or rotated API key; `key` is shown only this once."""

    api_key: ApiKey
    key: str


async def create_key(db: Database, *, name: str, role: str, sites: list[str]) -> NewKey:
    """Create a named API key with a role and a set of sites (["*"] for all)."""
    if not name.strip():
        raise InvalidInput("key name must not be empty", {"name": ["Must not be empty."]})
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}; one of {', '.join(ROLES)}", {"role": ["Unknown role."]})
    if not sites:
        raise InvalidInput("a key needs at least one site (or '*')", {"sites": ["Must not be empty."]})
    key = new_secret("mgk")
    api_key = ApiKey(name=name, key_hash=hash_secret(key), role=role, sites=sorted(set(sites)))
    try:
        async with db.transaction() as session:
            if (await session.execute(select(ApiKey.id).where(ApiKey.name == name))).first():
                raise Conflict(f"key {name!r} already exists", {"name": ["Already exists."]})
            unknown = [s for s in api_key.sites if s != ALL_SITES and await session.get(Site, s) is None]
            if unknown:
                raise NotFound(f"unknown site {unknown[0]!r}", {"sites": [f"Unknown site {unknown[0]!r}."]})
            session.add(api_key)
    except IntegrityError:
        raise Conflict(f"key {name!r} already exists", {"name": ["Already exists."]}) from None
    return NewKey(api_key=api_key, key=key)


async def list_keys(db: Database) -> list[ApiKey]:
    """Every API key, revoked ones included, oldest first."""
    async with db.reader() as session:
        return list((await session.execute(select(ApiKey).order_by(ApiKey.id))).scalars())


async def revoke_key(db: Database, *, name: str) -> ApiKey:
    """Revoke a key by name; it stops working at once. Revoking twice is a Conflict."""
    async with db.transaction() as session:
        api_key = (await session.execute(select(ApiKey).where(ApiKey.name == name))).scalar_one_or_none()
        if api_key is None:
            raise NotFound(f"unknown key {name!r}", {"name": ["Unknown key."]})
        if api_key.revoked_at is not None:
            raise Conflict(f"key {name!r} is already revoked", {"name": ["Already revoked."]})
        api_key.revoked_at = utcnow()
    return api_key


async def rotate_key(db: Database, *, name: str) -> NewKey:
    """Give a live key a new secret; the old secret stops working at once."""
    key = new_secret("mgk")
    async with db.transaction() as session:
        api_key = (await session.execute(select(ApiKey).where(ApiKey.name == name))).scalar_one_or_none()
        if api_key is None:
            raise NotFound(f"unknown key {name!r}", {"name": ["Unknown key."]})
        if api_key.revoked_at is not None:
            raise Conflict(f"key {name!r} is revoked; create a new one", {"name": ["Revoked."]})
        api_key.key_hash = hash_secret(key)
    return NewKey(api_key=api_key, key=key)


async def find_key(db: Database, *, key_hash: str) -> ApiKey | None:
    """The live (not revoked) key with this hash, if any."""
    async with db.reader() as session:
        result = await session.execute(
            select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))  # type: ignore[union-attr]
        )
        return result.scalar_one_or_none()


async def set_meter_token(db: Database, *, meter_no: int) -> str:
    """Issue a new device token for a meter (the old one stops working)."""
    token = new_secret("mtr")
    async with db.transaction() as session:
        result = await session.execute(
            update(Meter).where(Meter.meter_no == meter_no).values(token_hash=hash_secret(token))  # type: ignore[arg-type]
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound(f"unknown meter {meter_no}", {"meter_no": ["Unknown meter."]})
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
