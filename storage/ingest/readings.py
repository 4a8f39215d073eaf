"""What ingest records, in Python's terms: a validated reading, its outcome, and the conversions
of a packet's timestamp and kWh. The rules deciding the outcome and effects are SQL
(`storage.ingest.rules`); `storage.ingest.run` records groups of readings with them.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple

WATT_HOUR = Decimal("0.001")


def wh_of(kwh: float) -> int:
    """Watt-hours from a packet's kWh: its decimal value rounded half-up to the watt-hour kept."""
    scaled = kwh * 1000
    nearest = round(scaled)
    if abs(scaled - nearest) < 1e-6:
        # At most 3 decimals (the usual case): nowhere near a half, so this is the exact answer
        # the Decimal below would give, at a fifth of the cost.
        return nearest
    return int(Decimal(repr(kwh)).quantize(WATT_HOUR, rounding=ROUND_HALF_UP).scaleb(3))


class Outcome(enum.Enum):
    """What became of one reading."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    UNKNOWN_METER = "unknown_meter"
    RETIRED_METER = "retired_meter"


class NewReading(NamedTuple):
    """A validated reading waiting to be recorded. `sites` limits which sites it may touch."""

    meter_no: int
    interval_start: dt.datetime
    wh: int
    source: str | None = None
    sites: frozenset[str] | None = None  # None: any site


@dataclass(frozen=True, slots=True)
class ReadingResult:
    """The outcome of one reading; `stored_kwh` is the kept value on a conflict."""

    outcome: Outcome
    stored_kwh: Decimal | None = None


UNKNOWN = ReadingResult(Outcome.UNKNOWN_METER)
RETIRED = ReadingResult(Outcome.RETIRED_METER)
STORED = ReadingResult(Outcome.STORED)
DUPLICATE = ReadingResult(Outcome.DUPLICATE)
