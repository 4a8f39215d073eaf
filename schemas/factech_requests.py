"""Request schemas of the Factech calls: the document's parameter names, unknown ones ignored.

Each schema `load`s the query string (GET) or the merged query and body (POST) and raises a
`ValidationError` naming every missing or malformed parameter.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates, validates_schema

from schemas.fields import Amount, Day, MeterNumber, Text

MIN_LOAD = Decimal("0.01")  # kW; the head-end protocol's range (schemas.headend)
MAX_LOAD = Decimal("1000")


class FactechQuery(Schema):
    """Base: parameters the document does not name are ignored, as iSocietyManager may add some."""

    class Meta:
        unknown = EXCLUDE


class SiteQuery(FactechQuery):
    """Call 1: `site_id`."""

    site_id = Text(required=True)


class MeterQuery(FactechQuery):
    """Call 2: `meter_no`."""

    meter_no = MeterNumber(required=True)


class SiteMeterQuery(FactechQuery):
    """Calls 6, 7, 8: `site_id`, `meter_no`."""

    site_id = Text(required=True)
    meter_no = MeterNumber(required=True)


class DgQuery(FactechQuery):
    """Calls 10, 12, 13: `site_id`, `dg_number`."""

    site_id = Text(required=True)
    dg_number = Text(required=True)


class DgSensingInput(DgQuery):
    """Call 11: `site_id`, `dg_number`, `url` (http or https; where it may point is the adapter's check)."""

    url = fields.Url(
        required=True,
        schemes={"http", "https"},
        require_tld=False,  # a name inside the receiver's domain or an address is fine here
        validate=validate.Length(max=2000),
        error_messages={"invalid": "Must be an http or https URL."},
    )


class MeterChangesQuery(FactechQuery):
    """Call 5: `site_id`, `from_date`, `to_date` (YYYY-MM-DD, from ≤ to)."""

    site_id = Text(required=True)
    from_date = Day(required=True)
    to_date = Day(required=True)

    @validates_schema
    def dates_in_order(self, data: dict[str, Any], **_kwargs: Any) -> None:
        """A reversed range is a mistake worth telling, not an empty answer."""
        if data["from_date"] > data["to_date"]:
            raise ValidationError("Must not be after to_date.", field_name="from_date")


class RechargeRequest(FactechQuery):
    """Call 3: `site_id`, `meter_no`, `amount` (> 0, at most 2 decimals, at most `maximum`)."""

    site_id = Text(required=True)
    meter_no = MeterNumber(required=True)
    amount = Amount(required=True)

    def __init__(self, *, maximum: Decimal, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.maximum = maximum

    @validates("amount")
    def amount_in_range(self, value: Decimal, **_kwargs: Any) -> None:
        """Money in, within the configured maximum for one recharge."""
        if value <= 0:
            raise ValidationError("Must be greater than zero.")
        if value > self.maximum:
            raise ValidationError(f"Must not exceed {self.maximum}.")


class RechargeStatusQuery(FactechQuery):
    """Call 4: `site_id`, `transaction_id`."""

    site_id = Text(required=True)
    transaction_id = Text(required=True, max_length=128)


class LoadRequest(FactechQuery):
    """Call 9: `site_id`, `meter_no`, `load_dg`, `load_grid` (kW: > 0, at most 2 decimals, up to 1000)."""

    site_id = Text(required=True)
    meter_no = MeterNumber(required=True)
    load_dg = Amount(required=True, validate=validate.Range(min=MIN_LOAD, max=MAX_LOAD))
    load_grid = Amount(required=True, validate=validate.Range(min=MIN_LOAD, max=MAX_LOAD))


IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,128}")  # visible ASCII, as HTTP header values go


def idempotency_key(value: str | None) -> str | None:
    """The `Idempotency-Key` header checked: 1-128 visible ASCII characters, or absent."""
    if value is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(value.strip()):
        raise ValidationError({"Idempotency-Key": ["Must be 1 to 128 visible ASCII characters."]})
    return value.strip()
