"""The energy audit's wire formats (`GET /api/v1/admin/sites/{site_id}/audit?month=YYYY-MM`):
a site's grid and DG energy bought against what its flats were billed for, per local day and for
the month. Values are decimal strings; null where the data is missing (never a made-up 0).
Its query and reply are in `schemas.statements` (`EnergyAuditQuery`, `EnergyAuditOut`), beside
the site report, which carries its month totals."""

from __future__ import annotations

from marshmallow import fields

from schemas.admin import Record


def _measured(places: int, description: str) -> fields.Decimal:
    """A measured value: null when its data is missing."""
    return fields.Decimal(as_string=True, places=places, allow_none=True, metadata={"description": description})


def _billed(description: str) -> fields.Decimal:
    return fields.Decimal(as_string=True, places=3, metadata={"description": description})


class EnergyBalanceOut(Record):
    """Energy in against energy billed, for a day or the month."""

    incomer_kwh = _measured(3, "The grid incomer's kWh; null without an incomer or its readings")
    flats_grid_kwh = _billed("Σ the flats' grid kWh")
    grid_loss_kwh = _measured(3, "Incomer kWh no flat paid for")
    grid_loss_pct = _measured(2, "The grid loss as a % of the incomer's kWh")
    dg_kwh = _measured(3, "The DGs' kWh (DG meter, else the /dg energy registers); null if unknown")
    flats_dg_kwh = _billed("Σ the flats' DG kWh")
    dg_loss_kwh = _measured(3, "DG kWh no flat paid for")
    dg_loss_pct = _measured(2, "The DG loss as a % of the DGs' kWh")
    fuel_used_litres = _measured(2, "Diesel burnt: the falls of the DGs' fuel levels")
    refill_litres = fields.Decimal(as_string=True, places=2, metadata={"description": "Rises of the fuel levels"})
    dg_kwh_per_litre = _measured(2, "DG kWh per litre burnt")


class EnergyAuditDayOut(EnergyBalanceOut):
    """One local day."""

    day = fields.Date()
