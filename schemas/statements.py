"""Statement and report wire formats: the query of a month and a resident's monthly statement.

Records dump the dataclasses of `storage.reads.statements` (by attribute), so the admin API, the
portal and the tests read one shape; money and kWh are decimal strings, times UTC ISO 8601.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import ValidationError, fields, validate

from schemas.admin import AdminBody, Record
from schemas.energy_audit import EnergyAuditDayOut, EnergyBalanceOut
from schemas.fields import Day, MeterNumber

_MONTH = re.compile(r"^(2[0-9]{3})-(0[1-9]|1[0-2])$")


class Month(fields.Field[tuple[int, int]]):
    """A calendar month written exactly `YYYY-MM` (2000-01 to 2999-12), loaded as (year, month)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> tuple[int, int]:
        match = _MONTH.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise ValidationError("Not a valid month: expected YYYY-MM.")
        return int(match.group(1)), int(match.group(2))


class StatementQuery(AdminBody):
    """`GET /api/v1/admin/meters/{meter_no}/statement?month=YYYY-MM[&format=csv]`."""

    month = Month(required=True, metadata={"description": "The calendar month, YYYY-MM, in the site's time zone"})
    format = fields.String(
        load_default="json", validate=validate.OneOf(["json", "csv"]), metadata={"description": "json or csv"}
    )


def _money(description: str = "") -> fields.Decimal:
    return fields.Decimal(as_string=True, places=2, metadata={"description": description} if description else {})


def _kwh() -> fields.Decimal:
    return fields.Decimal(as_string=True, places=3)


class StatementDayOut(Record):
    """A local day's energy, rates and amounts (a day whose tariff changed has a row per tariff)."""

    day = fields.Date()
    grid_kwh = _kwh()
    grid_rate = _money("₹/kWh")
    grid_amount = _money()
    dg_kwh = _kwh()
    dg_rate = _money("₹/kWh")
    dg_amount = _money()
    fixed_charge = _money("The day's fixed charge (positive: taken from the balance)")
    intervals = fields.Integer(metadata={"description": "Half-hour readings received for the day"})


class StatementCreditOut(Record):
    """A recharge."""

    at = fields.DateTime()
    amount = _money()
    transaction_id = fields.String(allow_none=True)
    reason = fields.String()


class StatementAdjustmentOut(Record):
    """An adjustment with its reason (signed)."""

    at = fields.DateTime()
    amount = _money()
    reason = fields.String()
    created_by = fields.String()


class SupplyChangeOut(Record):
    """A cut, deferred cut, restore, or staff stop/start."""

    at = fields.DateTime()
    what = fields.String(
        metadata={"description": "cut | cut deferred | restored | stopped by staff | started by staff"}
    )
    reason = fields.String()


class StatementTotalsOut(Record):
    """The month's sums."""

    grid_kwh = _kwh()
    dg_kwh = _kwh()
    grid_amount = _money()
    dg_amount = _money()
    fixed_charges = _money()
    debits = _money("Energy and fixed charges")
    credits = fields.Decimal(as_string=True, places=2, attribute="total_credits")
    adjustments = fields.Decimal(
        as_string=True, places=2, attribute="total_adjustments", metadata={"description": "Signed"}
    )


class StatementCheckOut(Record):
    """opening + credits − debits ± adjustments = closing, to the paisa."""

    computed_closing = _money("From the listed lines")
    balanced = fields.Boolean(metadata={"description": "The lines account for the closing balance exactly"})
    line = fields.String(attribute="check_line")


class StatementOut(Record):
    """A meter's statement for a calendar month of its site."""

    meter_no = MeterNumber()
    site_id = fields.String()
    unit_no = fields.String()
    consumer_name = fields.String()
    timezone = fields.String()
    month = fields.String(attribute="month_label", metadata={"description": "YYYY-MM"})
    opening_balance = _money()
    closing_balance = _money()
    days = fields.List(fields.Nested(StatementDayOut))
    recharges = fields.List(fields.Nested(StatementCreditOut), attribute="credits")
    adjustments = fields.List(fields.Nested(StatementAdjustmentOut))
    supply = fields.List(fields.Nested(SupplyChangeOut))
    notes = fields.List(fields.String(), metadata={"description": "A meter replaced during the month"})
    # The statement's own sums and check, as nested objects (`totals` and `check` answer the statement).
    totals = fields.Nested(StatementTotalsOut)
    check = fields.Nested(StatementCheckOut)


class SiteReportQuery(AdminBody):
    """`GET /api/v1/admin/sites/{site_id}/report?month=YYYY-MM[&format=csv]`."""

    month = Month(required=True, metadata={"description": "The calendar month, YYYY-MM, in the site's time zone"})
    format = fields.String(
        load_default="json", validate=validate.OneOf(["json", "csv"]), metadata={"description": "json or csv"}
    )


class _MonthSums(Record):
    grid_kwh = _kwh()
    dg_kwh = _kwh()
    grid_amount = _money("Billed for grid energy")
    dg_amount = _money("Billed for DG energy")
    fixed_charges = _money("Billed as fixed daily charges")
    billed = _money("Grid, DG and fixed together")
    recharges = _money()
    adjustments = _money("Signed; includes balances moved by a meter replacement")
    opening_balance = _money()
    closing_balance = _money()
    days_cut = fields.Integer(metadata={"description": "Local days on which the supply was off at some time"})
    intervals = fields.Integer(metadata={"description": "Half hours received"})
    intervals_expected = fields.Integer(metadata={"description": "Half hours of the month in service, up to now"})


class SiteReportRowOut(_MonthSums):
    """One meter's line of a site's month."""

    meter_no = MeterNumber()
    unit_no = fields.String()
    consumer_name = fields.String()


class SiteTotalsOut(_MonthSums):
    """The sums of every line."""

    meters = fields.Integer()


class SiteReportHeaderOut(Record):
    """Which site and month."""

    site_id = fields.String()
    name = fields.String()
    timezone = fields.String()
    month = fields.String(attribute="month.label", metadata={"description": "YYYY-MM"})


class SiteReportOut(SiteReportHeaderOut):
    """A site's month: one line per meter in service during it (by meter number), and the totals."""

    meters = fields.List(fields.Nested(SiteReportRowOut))
    totals = fields.Nested(SiteTotalsOut)
    energy_audit = fields.Nested(EnergyBalanceOut, metadata={"description": "The month's energy audit totals"})


class EnergyAuditOut(SiteReportHeaderOut):
    """A site's energy audit of a month: the days begun so far and the month's totals (null if
    any day's is)."""

    incomer_meters = fields.Integer(metadata={"description": "Meters of role incomer"})
    dg_sources = fields.Dict(
        keys=fields.String(), values=fields.String(), metadata={"description": "DG number → meter | register"}
    )
    days = fields.List(fields.Nested(EnergyAuditDayOut))
    totals = fields.Nested(EnergyBalanceOut)


class EnergyAuditQuery(AdminBody):
    """`GET /api/v1/admin/sites/{site_id}/audit?month=YYYY-MM`."""

    month = Month(required=True, metadata={"description": "The calendar month, YYYY-MM, in the site's time zone"})


class QualityQuery(AdminBody):
    """`GET /api/v1/admin/sites/{site_id}/quality?day=YYYY-MM-DD`."""

    day = Day(required=True, metadata={"description": "The site's local day"})


class QualityFlagOut(Record):
    """One meter's flag of one kind."""

    meter_no = MeterNumber()
    unit_no = fields.String()
    kind = fields.String(metadata={"description": "missing | spike | zero_run | late | conflict"})
    intervals = fields.Integer(metadata={"description": "Half hours (or packets) it concerns"})
    detail = fields.String()


class SiteQualityOut(Record):
    """A site-day's data-quality flags (nothing is changed: flagged only)."""

    site_id = fields.String()
    day = fields.Date()
    meters = fields.Integer(metadata={"description": "Meters in service that day"})
    counts = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={"description": "Flags per kind"})
    flags = fields.List(fields.Nested(QualityFlagOut))
