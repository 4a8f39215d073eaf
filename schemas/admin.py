"""Admin API wire formats: request bodies (strict: unknown fields are errors) and replies.

Request schemas `load` a JSON or form body; reply schemas `dump` store objects into the JSON the
admin API answers, with money and kWh as exact decimal strings.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, fields, validate

from schemas.fields import (
    Amount,
    Day,
    EventCursor,
    FreeText,
    MeterNumber,
    NoCutHours,
    Text,
    Thresholds,
    Timezone,
    Weekdays,
)

METER_ROLES = ("flat", "incomer", "dg")  # storage.registry.meter_roles; which roles need a dg_no, it checks


class MeterRole(fields.String):
    """What a meter measures: `flat` (billed), or a bulk meter never billed, `incomer` or `dg`."""

    def __init__(self, **kwargs: Any) -> None:
        choices = ", ".join(METER_ROLES)
        kwargs.setdefault("metadata", {"description": f"one of {choices}", "enum": list(METER_ROLES)})
        super().__init__(validate=validate.OneOf(METER_ROLES, error=f"Unknown role; one of {choices}."), **kwargs)


ZERO = Decimal(0)


class AdminBody(Schema):
    """Base: a field the API does not know is an error, so typos are not silently dropped."""

    class Meta:
        unknown = RAISE


class Record(Schema):
    """Base of a reply record: every field is in every reply (so the spec lists them as required,
    and a reply loaded back with its schema must have them all)."""

    def on_bind_field(self, field_name: str, field_obj: fields.Field) -> None:
        field_obj.required = True


class SiteCreate(AdminBody):
    """`POST /api/v1/admin/sites`."""

    site_id = Text(required=True)
    name = Text(required=True, max_length=200)
    region = Text(required=True, max_length=100)
    timezone = Timezone(load_default="Asia/Kolkata")
    tariff_grid = Amount(minimum=ZERO, load_default=Decimal("8.00"))
    tariff_dg = Amount(minimum=ZERO, load_default=Decimal("20.00"))
    auto_cut = fields.Boolean(load_default=True)


class SiteEdit(AdminBody):
    """`PATCH /api/v1/admin/sites/{site_id}` (and `gateway site set`): any of these; the timezone
    cannot change. New tariffs start a tariff row from now; the policy fields are the prepaid
    policy (README, "Prepaid policy")."""

    name = Text(max_length=200)
    region = Text(max_length=100)
    tariff_grid = Amount(minimum=ZERO)
    tariff_dg = Amount(minimum=ZERO)
    auto_cut = fields.Boolean()
    grace_amount = Amount(minimum=ZERO)
    alert_thresholds = Thresholds()
    no_cut_hours = NoCutHours()
    no_cut_weekdays = Weekdays()


class MeterCreate(AdminBody):
    """`POST /api/v1/admin/sites/{site_id}/meters`."""

    meter_no = MeterNumber(required=True)
    unit_no = Text(required=True)
    consumer_name = FreeText(200, load_default="")
    fin_no = FreeText(64, load_default="")
    balance = Amount(load_default=Decimal("0.00"))
    start_grid = Amount(places=3, minimum=ZERO, load_default=Decimal(0))
    start_dg = Amount(places=3, minimum=ZERO, load_default=Decimal(0))
    role = MeterRole(load_default="flat")
    dg_no = Text(max_length=64, load_default=None)


class MeterEdit(AdminBody):
    """`PATCH /api/v1/admin/meters/{meter_no}`: the consumer details, whether the meter may
    post readings without a token (`legacy_ingest`, for old meters that cannot send one), and
    what it measures (`role`, with `dg_no` for a DG's meter; null: no DG)."""

    consumer_name = FreeText(200)
    fin_no = FreeText(64)
    legacy_ingest = fields.Boolean()
    role = MeterRole()
    dg_no = Text(max_length=64, allow_none=True)


class DgCreate(AdminBody):
    """`POST /api/v1/admin/sites/{site_id}/dgs`."""

    dg_number = Text(required=True)
    meter_no = FreeText(64, load_default="")


class KeyCreate(AdminBody):
    """`POST /api/v1/admin/keys`."""

    name = Text(required=True, max_length=100)
    role = Text(required=True, max_length=16)  # the store checks it against its list of roles
    sites = fields.List(Text(), required=True, validate=validate.Length(min=1, max=1000))


class StaffCreate(AdminBody):
    """`POST /api/v1/admin/users`: a staff account for the portal (a password is made if none is given)."""

    username = Text(required=True, max_length=100)
    sites = fields.List(Text(), required=True, validate=validate.Length(min=1, max=1000))
    password = fields.String(load_default=None, validate=validate.Length(max=128))


class PasswordReset(AdminBody):
    """`POST /api/v1/admin/users/{account}/reset-password` (a password is made if none is given)."""

    password = fields.String(load_default=None, validate=validate.Length(max=128))


class MeterChangeCreate(AdminBody):
    """`POST /api/v1/admin/meter-changes`: replace a meter of a site by a new one."""

    site_id = Text(required=True)
    old_meter_no = MeterNumber(required=True)
    new_meter_no = MeterNumber(required=True)
    meter_change_date = Day(required=True)
    reading_start_date = Day(load_default=None)
    new_start_grid = Amount(places=3, minimum=ZERO, load_default=Decimal(0))
    new_start_dg = Amount(places=3, minimum=ZERO, load_default=Decimal(0))


class SiteOut(Record):
    """A site as the admin API shows it."""

    site_id = fields.String(attribute="id")
    name = fields.String()
    region = fields.String()
    timezone = fields.String()
    tariff_grid = fields.Decimal(as_string=True, metadata={"description": "₹/kWh in force now"})
    tariff_dg = fields.Decimal(as_string=True, metadata={"description": "₹/kWh in force now"})
    fixed_daily = fields.Decimal(as_string=True, metadata={"description": "₹ per meter per local day, in force now"})
    auto_cut = fields.Boolean()
    grace_amount = fields.Decimal(as_string=True)
    alert_thresholds = Thresholds()
    no_cut_hours = fields.String()
    no_cut_weekdays = Weekdays()


class MeterOut(Record):
    """A meter as the admin API shows it (never its token hash)."""

    meter_no = MeterNumber()
    site_id = fields.String()
    unit_no = fields.String()
    consumer_name = fields.String()
    fin_no = fields.String()
    balance = fields.Decimal(as_string=True)
    relay_on = fields.Boolean()
    load_dg = fields.Decimal(as_string=True, allow_none=True)
    load_grid = fields.Decimal(as_string=True, allow_none=True)
    grid_kwh = fields.Decimal(as_string=True)
    dg_kwh = fields.Decimal(as_string=True)
    start_grid = fields.Decimal(as_string=True)
    start_dg = fields.Decimal(as_string=True)
    last_reading_at = fields.DateTime(allow_none=True)
    active = fields.Boolean()
    retired_at = fields.DateTime(allow_none=True)
    legacy_ingest = fields.Boolean()
    role = fields.String(metadata={"description": "flat (billed), or a bulk meter never billed: incomer | dg"})
    dg_no = fields.String(allow_none=True, metadata={"description": "the DG a role-dg meter measures"})


class DgOut(Record):
    """A DG as the admin API shows it."""

    site_id = fields.String()
    dg_number = fields.String(attribute="dg_no")
    meter_no = fields.String()
    status = fields.String()
    fuel_litres = fields.Decimal(as_string=True, allow_none=True)
    reading_kwh = fields.Decimal(as_string=True, allow_none=True)


class DgEventOut(Record):
    """A DG callback event and where its delivery stands (pending, delivered, failed)."""

    event_id = fields.String()
    site_id = fields.String()
    dg_number = fields.String(attribute="dg_no")
    status = fields.String()
    at = fields.DateTime()
    state = fields.String()
    next_attempt_at = fields.DateTime(allow_none=True)
    delivered_at = fields.DateTime(allow_none=True)


class DgAttemptOut(Record):
    """One delivery attempt: the HTTP status, or the error that prevented one."""

    attempted_at = fields.DateTime()
    url = fields.String()
    http_status = fields.Integer(allow_none=True)
    error = fields.String()
    latency_ms = fields.Integer()


class DgDeliveryOut(Record):
    """An event with every attempt at it, oldest first."""

    event = fields.Nested(DgEventOut)
    attempts = fields.Nested(DgAttemptOut, many=True)


class Revoked(fields.Boolean):
    """Whether a key is revoked: read off its `revoked_at` (a boolean in the spec, and on load)."""

    def get_value(self, obj: Any, attr: str, accessor: Any = None, default: Any = None) -> bool:
        return obj.revoked_at is not None


class KeyOut(Record):
    """An API key without its secret."""

    name = fields.String()
    role = fields.String()
    sites = fields.List(fields.String())
    created_at = fields.DateTime()
    revoked = Revoked()


class AccountOut(Schema):
    """A portal account (never its password)."""

    kind = fields.String()
    login = fields.String()
    meter_no = fields.Function(lambda a: None if a.meter_no is None else str(a.meter_no))
    sites = fields.List(fields.String())
    disabled = fields.Boolean()
    created_at = fields.DateTime()
    last_login_at = fields.DateTime(allow_none=True)


class MeterChangeOut(Record):
    """A recorded meter change."""

    site_id = fields.String()
    unit_no = fields.String()
    old_meter_no = MeterNumber()
    new_meter_no = MeterNumber()
    old_start_grid = fields.Decimal(as_string=True)
    old_start_dg = fields.Decimal(as_string=True)
    old_end_grid = fields.Decimal(as_string=True)
    old_end_dg = fields.Decimal(as_string=True)
    new_start_grid = fields.Decimal(as_string=True)
    new_start_dg = fields.Decimal(as_string=True)
    balance_moved = fields.Decimal(as_string=True)
    meter_change_date = fields.Date()
    reading_start_date = fields.Date()


class MeterPath(Schema):
    """`{meter_no}` in an admin path."""

    meter_no = MeterNumber(required=True)


class AdjustmentCreate(AdminBody):
    """`POST /api/v1/admin/meters/{meter_no}/adjustments`: a signed amount and why."""

    amount = Amount(required=True)
    reason = Text(required=True, max_length=200)


class LedgerEntryOut(Record):
    """One ledger entry."""

    id = fields.Integer()
    kind = fields.String()
    amount = fields.Decimal(as_string=True)
    balance_after = fields.Decimal(as_string=True)
    reason = fields.String()
    transaction_id = fields.String(allow_none=True)
    created_by = fields.String()
    created_at = fields.DateTime()


class LedgerCheckOut(Record):
    """Both sides of a meter's balance: opening + credits + adjustments − debits = balance."""

    opening = fields.Decimal(as_string=True)
    credits = fields.Decimal(as_string=True)
    adjustments = fields.Decimal(as_string=True)
    debits = fields.Decimal(as_string=True)
    expected = fields.Decimal(as_string=True)
    balance = fields.Decimal(as_string=True)
    ok = fields.Boolean()


class AuditQuery(Schema):
    """`site_id` (optional), `after`: an event id (paging) or an ISO 8601 time."""

    class Meta:
        unknown = EXCLUDE

    site_id = Text()
    after = EventCursor()
