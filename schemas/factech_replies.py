"""The records inside the Factech envelopes' `data`, as the document spells them.

Every value is a string, as in the document: kWh and money with two decimals, times as
`YYYY-MM-DD HH:mm:ss` in the site's timezone, `""` for a value never read. These schemas
describe what `adapters.factech` builds; the spec (`openapi/`) is generated from them, and the
contract suite and schemathesis check every real reply against that spec, so the two cannot
drift apart unnoticed (unknown keys are refused: `additionalProperties: false`).
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

TWO_DECIMALS = r"^(-?[0-9]+\.[0-9]{2})?$"  # "" when never read
LOCAL_TIME = r"^([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2})?$"  # "" when never read
DAY = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
DIGITS = r"^[0-9]{1,18}$"


def _text(pattern: str | None = None, **metadata: Any) -> fields.String:
    """A required string of the record (the document always sends every key)."""
    if pattern:
        metadata["pattern"] = pattern
    return fields.String(required=True, metadata=metadata)


def _one_of(*words: str) -> fields.String:
    return fields.String(required=True, validate=validate.OneOf(words))


class MeterReadingRecord(Schema):
    """Calls 1 and 2: a meter's registers, last reading time, prepaid balance and supply."""

    unit_no = _text(description="Flat no, C A No")
    meter_no = _text(DIGITS)
    dg = _text(TWO_DECIMALS, description="Cumulative DG kWh register")
    grid = _text(TWO_DECIMALS, description="Cumulative grid kWh register")
    date_time = _text(LOCAL_TIME, description="Last reading, site time (YYYY-MM-DD HH:mm:ss)")
    balance = _text(TWO_DECIMALS, description="Prepaid balance")
    status = _one_of("On", "Off")


class RechargeRecord(Schema):
    """Call 3: the recharge, its head-end token and the balance after it."""

    unit_no = _text()
    meter_no = _text(DIGITS)
    amount = _text(TWO_DECIMALS)
    transaction_id = _text()
    token = _text(description="The head-end's credit token; empty until applied")
    date_time = _text(LOCAL_TIME, description="When the credit was applied, site time")
    balance = _text(TWO_DECIMALS)
    remarks = _text()


class RechargeStatusRecord(Schema):
    """Call 4: which recharge, and a remark on where it stands."""

    unit_no = _text()
    meter_no = _text(DIGITS)
    transaction_id = _text()
    remarks = _text()


class MeterChangeRecord(Schema):
    """Call 5: one meter replacement with the old and new meters' registers."""

    unit_no = _text()
    old_meter_no = _text(DIGITS)
    old_start_dg = _text(TWO_DECIMALS)
    old_end_dg = _text(TWO_DECIMALS)
    old_start_grid = _text(TWO_DECIMALS)
    old_end_grid = _text(TWO_DECIMALS)
    new_meter_no = _text(DIGITS)
    new_start_dg = _text(TWO_DECIMALS)
    new_start_grid = _text(TWO_DECIMALS)
    meter_change_date = _text(DAY)
    reading_start_date = _text(DAY, description="New meter reading start date")


class MeterCommandRecord(Schema):
    """Calls 6, 7 and 9: the meter and the state the command left it in."""

    unit_no = _text()
    meter_no = _text(DIGITS)
    status = _one_of("STARTED", "STOPPED", "Load Updated")


class MeterStatusRecord(Schema):
    """Call 8: the relay as the head-end read it just now."""

    unit_no = _text()
    meter_no = _text(DIGITS)
    status = _one_of("ON", "OFF")
    remarks = _text()


class DgReadingRecord(Schema):
    """Call 10: the DG energy meter's register and when it was read."""

    dg_no = _text(description="DG no, DG id")
    meter_no = _text()
    reading = _text(TWO_DECIMALS, description="DG energy register, kWh")
    date_time = _text(LOCAL_TIME)


class DgSensingRecord(Schema):
    """Call 11: the registered URL and the signing secret, shown this once."""

    dg_no = _text()
    url = _text()
    secret = _text(r"^whsec_[A-Za-z0-9+/]+={0,2}$", description="Standard Webhooks signing secret")


class DgStatusRecord(Schema):
    """Call 12: is the DG supply ON or OFF."""

    dg_no = _text()
    status = _one_of("ON", "OFF")


class DgFuelRecord(Schema):
    """Call 13: fuel left, litres, and when it was read (`datetime`, as the document spells it)."""

    dg_no = _text()
    fuel_balance = _text(TWO_DECIMALS)
    datetime = _text(LOCAL_TIME)
