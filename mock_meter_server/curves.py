"""What the simulated meters and DGs measure: pure functions of (seed, device, interval).

Nothing here depends on when or in what order it is asked, so a run with the same `--seed`
produces the same readings whatever the speed or the network did. Each random draw comes from
its own generator seeded by a string naming the device and interval (Python seeds string
seeds through SHA-512, so they are stable across runs and machines).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import random
from zoneinfo import ZoneInfo

HALF_HOUR = dt.timedelta(minutes=30)

# DG fuel use: a small diesel set burns roughly 0.25-0.3 litres per kWh delivered.
LITRES_PER_KWH = 0.28


def rng_for(*parts: object) -> random.Random:
    """A generator seeded by the parts (seed, device, interval...), the same on every run."""
    return random.Random(":".join(str(part) for part in parts))


def floor_half_hour(at: dt.datetime) -> dt.datetime:
    """The half-hour boundary at or before `at` (UTC)."""
    at = at.astimezone(dt.UTC)
    return at.replace(minute=30 if at.minute >= 30 else 0, second=0, microsecond=0)


def _bump(hour: float, centre: float, width: float) -> float:
    """A bell around `centre` o'clock, measured round the clock (23:00 is near 01:00)."""
    distance = min(abs(hour - centre), 24 - abs(hour - centre))
    return math.exp(-0.5 * (distance / width) ** 2)


@dataclasses.dataclass(frozen=True)
class Household:
    """A unit's habits: how much it uses overall and when its peaks come."""

    scale: float  # 0.5 = a small flat, 2 = a large one with air conditioning
    morning: float  # hour of the weekday morning peak
    evening: float  # hour of the evening peak


def household(seed: int, meter_no: str) -> Household:
    """The unit behind a meter (fixed for the meter and the seed)."""
    rng = rng_for(seed, "unit", meter_no)
    return Household(
        scale=min(2.5, max(0.4, rng.lognormvariate(0, 0.35))),
        morning=rng.uniform(6.5, 8.5),
        evening=rng.uniform(19.0, 21.5),
    )


def average_kw(unit: Household, local: dt.datetime) -> float:
    """The unit's typical demand in kW at a local time, before noise.

    Always-on load (fridge, standby), a morning peak, a larger evening peak; at weekends the
    morning peak comes later and people at home add a midday bump.
    """
    hour = local.hour + local.minute / 60
    weekend = local.weekday() >= 5
    kw = 0.25
    kw += 0.9 * _bump(hour, unit.morning + (1.5 if weekend else 0), 1.0)
    kw += 1.5 * _bump(hour, unit.evening, 1.6)
    kw += (0.8 if weekend else 0.2) * _bump(hour, 13.5, 2.0)
    return unit.scale * kw


def interval_kwh(seed: int, meter_no: str, start: dt.datetime, tz: ZoneInfo) -> float:
    """Energy (kWh, two decimals, at least 0.01) a meter records in the half hour from `start`."""
    unit = household(seed, meter_no)
    middle = (start + HALF_HOUR / 2).astimezone(tz)
    noise = max(0.3, rng_for(seed, "kwh", meter_no, start.isoformat()).gauss(1.0, 0.15))
    return max(0.01, round(average_kw(unit, middle) * 0.5 * noise, 2))


@dataclasses.dataclass(frozen=True)
class Quirks:
    """How one packet misbehaves: sent twice, or held back `late_by` intervals."""

    duplicate: bool
    late_by: int


def quirks(seed: int, meter_no: str, start: dt.datetime, dup_rate: float, late_rate: float) -> Quirks:
    """Whether this meter's packet for this interval is duplicated or late (1-6 intervals)."""
    rng = rng_for(seed, "quirk", meter_no, start.isoformat())
    duplicate, late, late_by = rng.random() < dup_rate, rng.random() < late_rate, rng.randint(1, 6)
    return Quirks(duplicate=duplicate, late_by=late_by if late else 0)


@dataclasses.dataclass(frozen=True)
class Outage:
    """A grid outage during which a DG runs: it starts `offset` into the interval."""

    offset: dt.timedelta
    duration: dt.timedelta
    load_kw: float


def outage(seed: int, site_id: str, dg_number: str, start: dt.datetime, rate: float) -> Outage | None:
    """The outage (if any) that starts this DG in the half hour from `start`."""
    rng = rng_for(seed, "outage", site_id, dg_number, start.isoformat())
    if rng.random() >= rate:
        return None
    return Outage(
        offset=dt.timedelta(minutes=rng.uniform(0, 25)),
        duration=dt.timedelta(minutes=rng.uniform(20, 180)),
        load_kw=round(rng.uniform(15, 45), 1),
    )


@dataclasses.dataclass
class Generator:
    """A diesel generator: ON/OFF, its tank, and its energy register (cumulative kWh)."""

    site_id: str
    dg_number: str
    capacity_litres: float = 250.0
    fuel_litres: float = 200.0
    reading_kwh: float = 0.0
    status: str = "OFF"
    load_kw: float = 0.0
    since: dt.datetime | None = None  # when the register and tank were last brought up to date

    def run_until(self, at: dt.datetime) -> None:
        """Burn fuel and count energy for the time ON since the last update."""
        if self.status == "ON" and self.since is not None and at > self.since:
            kwh = self.load_kw * (at - self.since).total_seconds() / 3600
            self.reading_kwh += kwh
            self.fuel_litres = max(0.0, self.fuel_litres - kwh * LITRES_PER_KWH)
        self.since = at

    def switch(self, status: str, at: dt.datetime, load_kw: float = 0.0) -> None:
        """Turn ON (with a load) or OFF at `at`; a low tank is refilled once the set stops."""
        self.run_until(at)
        self.status, self.load_kw = status, load_kw
        if status == "OFF" and self.fuel_litres < 0.25 * self.capacity_litres:
            self.fuel_litres = self.capacity_litres

    def packet(self, at: dt.datetime) -> dict[str, object]:
        """The `POST /dg` body as of `at`."""
        self.run_until(at)
        return {
            "site_id": self.site_id,
            "dg_number": self.dg_number,
            "timestamp": iso_z(at),
            "status": self.status,
            "fuel_litres": round(self.fuel_litres, 2),
            "reading_kWh": round(self.reading_kwh, 2),
        }


def iso_z(at: dt.datetime) -> str:
    """UTC ISO-8601 with a Z, to the second: the seed packet's timestamp form."""
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
