"""Prepaid policy wire formats: tariffs, site policy settings, holidays, site events, webhooks.

Used alike by the admin API, the CLI (`gateway tariff|site set|site holiday`) and tests, so a
value is checked in one place and the store receives typed, normalized values.
"""

from __future__ import annotations

from decimal import Decimal

from marshmallow import Schema, fields, validate

from schemas.admin import ZERO, AdminBody
from schemas.fields import Amount, Day, FreeText, LocalDateTime, MeterNumber


class TariffCreate(AdminBody):
    """`POST /api/v1/admin/sites/{site_id}/tariffs` and `gateway tariff set`."""

    grid = Amount(required=True, minimum=ZERO)
    dg = Amount(required=True, minimum=ZERO)
    fixed_daily = Amount(minimum=ZERO, load_default=Decimal("0.00"))
    effective_from = LocalDateTime(load_default=None)  # None: now


class TariffOut(Schema):
    """A tariff row as the admin API and the CLI show it (`effective_from` in the site's local time)."""

    site_id = fields.String()
    grid = fields.Decimal(as_string=True)
    dg = fields.Decimal(as_string=True)
    fixed_daily = fields.Decimal(as_string=True)
    effective_from = LocalDateTime()
    created_by = fields.String()


class HolidayCreate(AdminBody):
    """`POST /api/v1/admin/sites/{site_id}/holidays` and `gateway site holiday add`."""

    date = Day(required=True)
    name = FreeText(100, load_default="")


class HolidayOut(Schema):
    """A holiday of a site."""

    date = fields.Date(attribute="day")
    name = fields.String()


class EventQuery(AdminBody):
    """`GET /api/v1/admin/sites/{site_id}/events?after=EVENT_ID&limit=N`."""

    after = fields.String(load_default=None, validate=validate.Length(min=1, max=40))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class SiteEventOut(Schema):
    """A site event: what happened, to which meter, when, with its details."""

    event_id = fields.String()
    type = fields.String()
    site_id = fields.String()
    meter_no = MeterNumber(allow_none=True)
    at = fields.DateTime()
    data = fields.Dict()


class WebhookSet(AdminBody):
    """`PUT /api/v1/admin/sites/{site_id}/webhook`."""

    url = fields.String(required=True, validate=validate.Length(min=1, max=2000))


class WebhookOut(Schema):
    """A site's webhook (its secret only in the reply that sets it)."""

    site_id = fields.String()
    url = fields.String()
    created_at = fields.DateTime()
