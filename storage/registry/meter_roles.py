"""What a meter measures, and the one rule that follows from it: only flats are billed.

A meter's `role` is `flat` (a unit's prepaid meter: every meter before roles existed), or a bulk
meter of its society: `incomer` (the grid supply of the whole site) or `dg` (a DG's energy meter,
linked to the site's DG `dg_no`). Bulk meters post `/meter` like any other and their readings are
stored, for the energy audit (`storage.reads.energy_audit`); they are never charged, never cut, carry no
fixed charge or alert, and are in no resident's or flats' totals. `billed` is that rule, as SQL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.sql.elements import ColumnElement

FLAT, INCOMER, DG_METER = "flat", "incomer", "dg"
METER_ROLES = (FLAT, INCOMER, DG_METER)
BULK_ROLES = (INCOMER, DG_METER)


def billed(role: Any) -> ColumnElement[bool]:
    """The meter with this `role` column is billed (a flat), as a SQL condition."""
    condition: ColumnElement[bool] = role == FLAT
    return condition
