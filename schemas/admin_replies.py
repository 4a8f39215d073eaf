"""The admin API's replies: `{"status": "success", "message": <fixed per call>, "data": ...}`.

`data` is dumped by the record schemas of `schemas.admin` (`SiteOut`, `MeterOut`, ...); the
envelopes here name each call's fixed message and its data, for the spec (`openapi/`) and for
the tests, which load real replies with them. A secret (device token, API key) rides beside
the record only in the reply that creates it.
"""

from __future__ import annotations

from marshmallow import Schema, fields

from schemas import admin as wire
from schemas import policy, statements
from schemas.replies import Reply, word


class MeterWithTokenOut(wire.MeterOut):
    """A new meter and its device token (shown in this reply only)."""

    token = fields.String(required=True, metadata={"description": "The device token: shown in this reply only"})


class MeterChangeWithTokenOut(wire.MeterChangeOut):
    """A meter change and the new meter's device token (shown in this reply only)."""

    token = fields.String(required=True, metadata={"description": "The device token: shown in this reply only"})


class KeyWithSecretOut(wire.KeyOut):
    """A key and its secret (shown in this reply only)."""

    key = fields.String(required=True, metadata={"description": "The API key: shown in this reply only"})


class MeterEditedOut(wire.MeterOut):
    """A meter after an edit, and whether a new consumer or FIN removed the old resident's account."""

    resident_unlinked = fields.Boolean(
        required=True, metadata={"description": "A new consumer or FIN removed the old resident's portal account"}
    )


class AccountWithPasswordOut(wire.AccountOut):
    """A portal account and its new password (shown in this reply only)."""

    password = fields.String(required=True, metadata={"description": "The password: shown in this reply only"})


class MeterDetailOut(wire.MeterOut):
    """One meter with how long its balance lasts at its recent spend."""

    days_left = fields.Decimal(
        as_string=True,
        required=True,
        allow_none=True,
        metadata={"description": "Balance ÷ the average daily charge of the last 7 local days; null without charges"},
    )


class WebhookWithSecretOut(policy.WebhookOut):
    """A site webhook and its signing secret (shown in this reply only)."""

    secret = fields.String(required=True, metadata={"description": "The signing secret: shown in this reply only"})


class SiteDateOut(Schema):
    """A site and a date (a holiday removed)."""

    site_id = fields.String(required=True)
    date = fields.Date(required=True)


class SiteIdOut(Schema):
    """A site (its webhook removed)."""

    site_id = fields.String(required=True)


class LedgerOut(Schema):
    """A meter's ledger, oldest entry first, and whether its balance adds up."""

    meter_no = fields.String(required=True)
    check = fields.Nested(wire.LedgerCheckOut, required=True)
    entries = fields.List(fields.Nested(wire.LedgerEntryOut), required=True)


def _envelope(name: str, message: str, record: type[Schema], *, many: bool = False) -> type[Schema]:
    """The success envelope of one call: a named schema class, so the spec has a component per reply."""
    data = fields.List(fields.Nested(record), required=True) if many else fields.Nested(record, required=True)
    return Reply.from_dict({"status": word("success"), "message": word(message), "data": data}, name=name)


SiteCreated = _envelope("SiteCreated", "Site created", wire.SiteOut)
Sites = _envelope("Sites", "Sites", wire.SiteOut, many=True)
SiteReply = _envelope("SiteReply", "Site", wire.SiteOut)
SiteUpdated = _envelope("SiteUpdated", "Site updated", wire.SiteOut)
MeterCreated = _envelope("MeterCreated", "Meter created", MeterWithTokenOut)
Meters = _envelope("Meters", "Meters", wire.MeterOut, many=True)
MeterReply = _envelope("MeterReply", "Meter", MeterDetailOut)
MeterUpdated = _envelope("MeterUpdated", "Meter updated", MeterEditedOut)
MeterRetired = _envelope("MeterRetired", "Meter retired", wire.MeterOut)
Ledger = _envelope("Ledger", "Ledger", LedgerOut)
BalanceAdjusted = _envelope("BalanceAdjusted", "Balance adjusted", wire.LedgerEntryOut)
MeterReplaced = _envelope("MeterReplaced", "Meter replaced", MeterChangeWithTokenOut)
DgCreated = _envelope("DgCreated", "DG created", wire.DgOut)
Dgs = _envelope("Dgs", "DGs", wire.DgOut, many=True)
DgDeliveries = _envelope("DgDeliveries", "DG callback deliveries", wire.DgDeliveryOut, many=True)
RedeliveryQueued = _envelope("RedeliveryQueued", "Redelivery queued", wire.DgEventOut)
KeyCreated = _envelope("KeyCreated", "Key created", KeyWithSecretOut)
Keys = _envelope("Keys", "Keys", wire.KeyOut, many=True)
KeyRevoked = _envelope("KeyRevoked", "Key revoked", wire.KeyOut)
KeyRotated = _envelope("KeyRotated", "Key rotated", KeyWithSecretOut)
Accounts = _envelope("Accounts", "Accounts", wire.AccountOut, many=True)
AccountCreated = _envelope("AccountCreated", "Account created", AccountWithPasswordOut)
AccountReply = _envelope("AccountReply", "Account", wire.AccountOut)
AccountDisabled = _envelope("AccountDisabled", "Account disabled", wire.AccountOut)
AccountEnabled = _envelope("AccountEnabled", "Account enabled", wire.AccountOut)
PasswordReset = _envelope("PasswordReset", "Password reset", AccountWithPasswordOut)
AccountRemoved = _envelope("AccountRemoved", "Account removed", wire.AccountOut)
ResidentUnlinked = _envelope("ResidentUnlinked", "Resident unlinked", wire.AccountOut)
TariffAdded = _envelope("TariffAdded", "Tariff added", policy.TariffOut)
Tariffs = _envelope("Tariffs", "Tariffs", policy.TariffOut, many=True)
HolidayAdded = _envelope("HolidayAdded", "Holiday added", policy.HolidayOut)
Holidays = _envelope("Holidays", "Holidays", policy.HolidayOut, many=True)
HolidayRemoved = _envelope("HolidayRemoved", "Holiday removed", SiteDateOut)
SiteEvents = _envelope("SiteEvents", "Events", policy.SiteEventOut, many=True)
WebhookSet = _envelope("WebhookSet", "Webhook set", WebhookWithSecretOut)
WebhookReply = _envelope("WebhookReply", "Webhook", policy.WebhookOut)
WebhookRemoved = _envelope("WebhookRemoved", "Webhook removed", SiteIdOut)
StatementReply = _envelope("StatementReply", "Statement", statements.StatementOut)
SiteReport = _envelope("SiteReport", "Site report", statements.SiteReportOut)
SiteQuality = _envelope("SiteQuality", "Data quality", statements.SiteQualityOut)
EnergyAuditReply = _envelope("EnergyAuditReply", "Energy audit", statements.EnergyAuditOut)
