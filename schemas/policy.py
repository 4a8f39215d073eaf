"""Prepaid policy wire formats: tariffs, site policy settings, holidays, site events, webhooks.

Used alike by the admin API, the CLI (`gateway tariff|site set|site holiday`) and tests, so a
value is checked in one place and the store receives typed, normalized values.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from schemas.admin import ZERO, AdminBody
from schemas.fields import Amount, Day, FreeText, MeterNumber

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
_HOURS = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)", re.ASCII)
_LOCAL = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?", re.ASCII)
MAX_THRESHOLDS = 10


class LocalDateTime(fields.Field[dt.datetime]):
    """A site-local wall-clock time `YYYY-MM-DD HH:mm:ss` (seconds optional), naive: the store
    places it in the site's timezone."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dt.datetime:
        if not isinstance(value, str) or not _LOCAL.fullmatch(value.strip()):
            raise ValidationError("Not a valid local time: expected YYYY-MM-DD HH:mm:ss.")
        try:
            return dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValidationError("Not a valid local time: no such date or time.") from None

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


class NoCutHours(fields.String):
    """`HH:MM-HH:MM` local (may wrap midnight, e.g. 18:00-08:00), or empty for none; normalized."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).strip().replace(" ", "")
        if not text:
            return ""
        found = _HOURS.fullmatch(text)
        if not found:
            raise ValidationError("Not valid hours: expected HH:MM-HH:MM (24-hour, e.g. 18:00-08:00) or empty.")
        if found.group(1, 2) == found.group(3, 4):
            raise ValidationError("Start and end must differ.")
        return text


class Weekdays(fields.Field[str]):
    """Weekdays as `sat,sun` (or a JSON list of names), or empty for none; normalized to Monday-first order."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, str):
            names = [part.strip().lower() for part in value.split(",") if part.strip()]
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            names = [item.strip().lower() for item in value]
        else:
            raise ValidationError("Not valid weekdays: expected names like 'sat,sun'.")
        unknown = [name for name in names if name not in WEEKDAYS]
        if unknown:
            raise ValidationError(f"Unknown weekday {unknown[0][:10]!r}: use {', '.join(WEEKDAYS)}.")
        return ",".join(day for day in WEEKDAYS if day in names)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> list[str]:
        return [day for day in (value or "").split(",") if day]


class Thresholds(fields.Field[list[str]]):
    """Alert thresholds: ₹ amounts as a list (`["200.00", "50.00", "0.00"]`) or text (`200,50,0`);
    normalized to distinct two-decimal strings, highest first."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[str]:
        if isinstance(value, str):
            items: list[Any] = [part for part in value.split(",") if part.strip()]
        elif isinstance(value, list):
            items = value
        else:
            raise ValidationError("Not valid thresholds: expected a list of amounts like [\"200.00\", \"0.00\"].")
        if len(items) > MAX_THRESHOLDS:
            raise ValidationError(f"At most {MAX_THRESHOLDS} thresholds.")
        amount = Amount()
        try:
            values = {amount.deserialize(item) for item in items}
        except ValidationError as err:
            raise ValidationError(f"Not a valid amount in the list: {' '.join(map(str, err.messages))}") from None
        return [str(v.quantize(Decimal("0.01"))) for v in sorted(values, reverse=True)]

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> list[str]:
        return list(value or [])


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


class SitePolicyEdit(AdminBody):
    """The policy fields of `PATCH /api/v1/admin/sites/{site_id}` and `gateway site set`."""

    grace_amount = Amount(minimum=ZERO)
    alert_thresholds = Thresholds()
    no_cut_hours = NoCutHours()
    no_cut_weekdays = Weekdays()


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
