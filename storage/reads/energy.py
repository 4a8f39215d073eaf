"""How a stored reading's energy and charge divide between grid and DG: the one definition that
every read of readings uses (the rollup, consumption views, statements and reports).

Ingest stores each reading's total (`kwh`, `charge`) and its DG part (`dg_kwh`, `dg_charge`,
from the minutes a DG of the site ran in its half hour: `storage.ingest.rules.DgShare`); the grid part
is the rest. Each function is a SQL expression over `reading`, usable in a select or inside an
aggregate.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from storage.db.models import Reading
from storage.db.types import Energy, Money


def dg_kwh() -> Any:
    """The reading's DG energy (kWh)."""
    return Reading.dg_kwh


def grid_kwh() -> Any:
    """The reading's grid energy (kWh): all of it but the DG part."""
    return sa.type_coerce(Reading.kwh - Reading.dg_kwh, Energy)


def dg_charge() -> Any:
    """What the reading's DG energy cost (₹)."""
    return Reading.dg_charge


def grid_charge() -> Any:
    """What the reading's grid energy cost (₹)."""
    return sa.type_coerce(Reading.charge - Reading.dg_charge, Money)


def measured_kwh() -> Any:
    """All of a reading's energy (kWh), whatever its split: what a bulk meter measured (an
    incomer's is all grid, a DG meter's all DG, however ingest split it by the DG's minutes)."""
    return Reading.kwh
