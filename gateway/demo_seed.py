"""The demo's data: two sites in two regions, their meters and DGs, a meter change, and keys.

Seeding is "make sure it exists": every object is created only if missing, so the first run
builds everything, later runs (and a run after an interrupted first one) change nothing. Keys
are shown once by the store, so the demo keeps its keys and the head-end token in a state file
(`demo.json`, mode 0600) beside the database; a key missing from that file, or no longer valid,
is rotated and the file rewritten.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from storage.db.engine import Database
from storage.errors import Conflict, DomainError
from storage.registry import dgs, meter_changes
from storage.registry import keys as key_registry
from storage.registry import meters as meter_registry
from storage.registry import sites as site_registry

STATE_VERSION = 1
TIMEZONE = "Asia/Kolkata"
DG_NO = "DG1"
SEED_METER = 999999999  # the seed document's meter: Aashima, fin_no A3389127I
NAMES = (
    "Rohan", "Priya", "Vikram", "Ananya", "Arjun", "Meera", "Kabir", "Isha", "Farhan", "Lakshmi",
    "Nikhil", "Sneha", "Aditya", "Pooja", "Rahul", "Kavya", "Sanjay", "Divya", "Imran", "Neha",
)  # fmt: skip


@dataclass(frozen=True)
class DemoMeter:
    """A meter the demo registers."""

    meter_no: int
    unit_no: str
    name: str
    fin_no: str
    balance: Decimal


@dataclass(frozen=True)
class DemoSite:
    """A site the demo registers, with its meters and one DG."""

    site_id: str
    name: str
    region: str
    meters: list[DemoMeter]
    dg_no: str = DG_NO


@dataclass(frozen=True)
class MeterSwap:
    """The meter change the demo records, so call 5 has something to show."""

    site_id: str
    old_meter_no: int
    new_meter_no: int


@dataclass
class DemoState:
    """What the demo keeps between runs (the secrets the store shows only once)."""

    meters: int
    headend_token: str
    keys: dict[str, str] = field(default_factory=dict)  # key name -> key
    meter_change_date: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The state file's content."""
        return {
            "version": STATE_VERSION,
            "meters": self.meters,
            "headend_token": self.headend_token,
            "keys": self.keys,
            "meter_change_date": self.meter_change_date,
        }


def _meter(meter_no: int, index: int, site_rng: random.Random) -> DemoMeter:
    """One resident: tower letters of ten flats each (A-101 ... A-110, B-101 ...)."""
    unit = f"{chr(ord('A') + index // 10)}-{101 + index % 10}"
    fin = f"{site_rng.choice('STFG')}{site_rng.randrange(10**6, 10**7)}{site_rng.choice('ABCDEFGHIJZ')}"
    balance = Decimal(site_rng.randrange(1500_00, 5000_00)) / 100
    return DemoMeter(meter_no, unit, NAMES[index % len(NAMES)], fin, balance)


def layout(total_meters: int) -> tuple[list[DemoSite], MeterSwap]:
    """The demo's sites for `total_meters` meters: three quarters at GREENPARK (North, with the
    seed's meter 999999999 first), the rest at BLUEHILLS (South), whose last meter is replaced.
    Deterministic, so every run describes the same demo.
    """
    north = max(1, round(total_meters * 3 / 4))
    south = max(1, total_meters - north)
    rng = random.Random("GREENPARK")
    green = [DemoMeter(SEED_METER, "A-101", "Aashima", "A3389127I", Decimal("2500.00"))]
    green += [_meter(100000000 + i, i, rng) for i in range(1, north)]
    rng = random.Random("BLUEHILLS")
    blue = [_meter(200000001 + i, i, rng) for i in range(south)]
    sites = [
        DemoSite("GREENPARK", "Green Park Residency", "North", green),
        DemoSite("BLUEHILLS", "Blue Hills Enclave", "South", blue),
    ]
    swap = MeterSwap("BLUEHILLS", blue[-1].meter_no, blue[-1].meter_no + 1)
    return sites, swap


def key_specs(sites: list[DemoSite]) -> dict[str, tuple[str, list[str]]]:
    """Key name -> (role, sites): read/operate/admin for every site, an ingest key per site."""
    specs = {f"demo-{role}": (role, [key_registry.ALL_SITES]) for role in ("read", "operate", "admin")}
    specs.update({f"demo-ingest-{site.site_id}": ("ingest", [site.site_id]) for site in sites})
    return specs


def load_state(path: Path) -> dict[str, Any]:
    """The state file's content, or {} when there is none (first run, or data reset)."""
    try:
        loaded = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise DomainError(f"cannot read {path}: {exc}; delete it to rotate the demo keys") from None
    return loaded if isinstance(loaded, dict) else {}


def save_state(path: Path, state: DemoState) -> None:
    """Write the state file whole, readable by its owner only (it holds keys)."""
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # also when the file existed with wider rights
        json.dump(state.as_json(), out, indent=2)
        out.write("\n")
    partial.replace(path)


async def _created(create: Any) -> bool:
    """Run a create call; True if it created, False if the object was already there."""
    try:
        await create
    except Conflict:
        return False
    return True


async def ensure_site(db: Database, site: DemoSite) -> int:
    """Create the site, its meters and its DG where missing; returns how many meters were new."""
    await _created(
        site_registry.add_site(db, site_id=site.site_id, name=site.name, region=site.region, timezone=TIMEZONE)
    )
    created = 0
    for m in site.meters:
        created += await _created(
            meter_registry.add_meter(
                db,
                meter_no=m.meter_no,
                site_id=site.site_id,
                unit_no=m.unit_no,
                consumer_name=m.name,
                fin_no=m.fin_no,
                balance=m.balance,
            )
        )
    await _created(dgs.add_dg(db, site_id=site.site_id, dg_no=site.dg_no))
    return created


async def ensure_swap(db: Database, swap: MeterSwap, recorded: str | None, *, now: dt.datetime | None = None) -> str:
    """Record the meter change once (dated the site's today); returns its date.

    `now` is the instant of the change (default: the wall clock), for a simulation that replays
    the demo's month on an injected clock (tests/test_demo_month.py).
    """
    now = now or dt.datetime.now(dt.UTC)
    today = now.astimezone(ZoneInfo(TIMEZONE)).date()
    try:
        await meter_changes.replace_meter(
            db,
            site_id=swap.site_id,
            old_meter_no=swap.old_meter_no,
            new_meter_no=swap.new_meter_no,
            meter_change_date=today,
            now=now,
        )
    except Conflict:  # done by an earlier run
        return recorded or today.isoformat()
    return today.isoformat()


async def ensure_key(db: Database, *, name: str, role: str, sites: list[str], known: str | None) -> str:
    """The key for this name: the known one if it still works, else a new or rotated secret."""
    if known is not None:
        live = await key_registry.find_key(db, key_hash=key_registry.hash_secret(known))
        if live is not None and live.name == name:
            return known
    try:
        return (await key_registry.create_key(db, name=name, role=role, sites=sites)).key
    except Conflict:
        pass  # the key exists but its secret was lost (state file deleted): give it a new one
    try:
        return (await key_registry.rotate_key(db, name=name)).key
    except Conflict:
        raise DomainError(f"demo key {name!r} was revoked; delete the data directory to reset the demo") from None


async def ensure_demo(
    db: Database, *, state_path: Path, meters: int, progress: Callable[[str], None]
) -> tuple[list[DemoSite], MeterSwap, DemoState]:
    """Make sure every demo object exists and the state file holds working keys."""
    stored = load_state(state_path)
    total = int(stored.get("meters") or meters)
    if stored and total != meters:
        progress(f"demo: keeping the {total} meters of the first run (delete the data directory to change)")
    sites, swap = layout(total)
    state = DemoState(
        meters=total,
        headend_token=str(stored.get("headend_token") or secrets.token_urlsafe(24)),
        meter_change_date=stored.get("meter_change_date"),
    )
    for site in sites:
        created = await ensure_site(db, site)
        verb = "seeded" if created else "reusing"
        progress(f"demo: {verb} site {site.site_id} ({site.region}): {len(site.meters)} meters, {site.dg_no}")
    state.meter_change_date = await ensure_swap(db, swap, state.meter_change_date)
    known: dict[str, str] = stored.get("keys") or {}
    for name, (role, key_sites) in key_specs(sites).items():
        state.keys[name] = await ensure_key(db, name=name, role=role, sites=key_sites, known=known.get(name))
    save_state(state_path, state)
    progress(f"demo: keys and head-end token in {state_path} (mode 0600)")
    return sites, swap, state


async def active_meters(db: Database, *, site_id: str) -> list[int]:
    """The site's meters that take readings (a replaced meter is retired)."""
    return [m.meter_no for m in await meter_registry.list_meters(db, site_id=site_id) if m.active]


async def dg_register(db: Database, *, site_id: str, dg_no: str) -> Decimal:
    """The DG's stored energy register (0 before its first post)."""
    for dg in await dgs.list_dgs(db, site_id=site_id):
        if dg.dg_no == dg_no and dg.reading_kwh is not None:
            return dg.reading_kwh
    return Decimal(0)
