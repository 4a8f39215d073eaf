"""How a stored reading's energy and charge divide between grid and DG: the one definition that
every read of readings uses (the rollup, consumption views, statements and reports).

Each is a SQL expression over `reading`, usable in a select or inside an aggregate; none of them
reads `reading.source` outside this module.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from storage.models import Energy, Money, Reading

_ZERO_KWH = sa.literal(0, Energy)
_ZERO_MONEY = sa.literal(0, Money)
_ON_DG = Reading.source == "dg"


def dg_kwh() -> Any:
    """The reading's DG energy (kWh)."""
    return sa.case((_ON_DG, Reading.kwh), else_=_ZERO_KWH)


def grid_kwh() -> Any:
    """The reading's grid energy (kWh): all of it but the DG part."""
    return sa.case((_ON_DG, _ZERO_KWH), else_=Reading.kwh)


def dg_charge() -> Any:
    """What the reading's DG energy cost (₹)."""
    return sa.case((_ON_DG, Reading.charge), else_=_ZERO_MONEY)


def grid_charge() -> Any:
    """What the reading's grid energy cost (₹)."""
    return sa.case((_ON_DG, _ZERO_MONEY), else_=Reading.charge)
