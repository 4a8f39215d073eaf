"""Reply wire formats outside the Factech calls: ingest, reports, health and the plain error envelope.

The spec (`openapi/`) is generated from these schemas, so what it promises and what they say are
one thing. Loading a reply with its schema checks it: unknown keys are refused and every key the
reply always carries is required. The reports and `/healthz` dump through them; `POST /meter`,
`POST /dg` and the error envelope build plain dicts (the ingest hot path answers thousands a
second, and marshmallow's dump would cost more than the rest of the reply), which the tests load
with these schemas.
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, fields, validate


class Reply(Schema):
    """Base of a reply: nothing beyond its fields (JSON Schema `additionalProperties: false`)."""

    class Meta:
        unknown = RAISE


def word(text: str, **metadata: Any) -> fields.String:
    """A key whose value is always `text` (the spec's `const`; dumped even when not given)."""
    return fields.String(required=True, validate=validate.Equal(text), dump_default=text, metadata=metadata)


def one_of(*words: str, **metadata: Any) -> fields.String:
    """A key whose value is one of `words`."""
    return fields.String(required=True, validate=validate.OneOf(words), metadata=metadata)


def count(**metadata: Any) -> fields.Integer:
    """A required whole number, 0 or more."""
    return fields.Integer(required=True, strict=True, validate=validate.Range(min=0), metadata=metadata)


class ErrorReply(Reply):
    """Every error outside the Factech calls (`gateway.errors.json_error`)."""

    status = word("error")
    message = fields.String(required=True, metadata={"description": "What is wrong, in words"})
    errors = fields.Dict(keys=fields.String(), metadata={"description": "field → reasons"})


class ReadingStored(Reply):
    """The interval a single packet was stored for."""

    id = fields.Integer(required=True, strict=True, metadata={"description": "The meter number"})
    interval_start = fields.DateTime(required=True, metadata={"description": "Start of the half hour, UTC"})
    duplicate = fields.Boolean(required=True, metadata={"description": "The same value was already stored"})


class ReadingStoredReply(Reply):
    """`POST /meter` with one packet: stored, or a duplicate of what is stored."""

    status = word("success")
    message = one_of("Reading stored", "Duplicate reading")
    data = fields.Nested(ReadingStored, required=True)


class RejectedPacket(Reply):
    """A packet of a batch that was not stored, and why."""

    index = count(description="Its position in the array, from 0")
    id = fields.Raw(required=True, allow_none=True, metadata={"description": "Its `id` as sent (null if none)"})
    errors = fields.Dict(keys=fields.String(), required=True, metadata={"description": "field → reasons"})


class BatchResult(Reply):
    """What became of a batch's packets."""

    accepted = count(description="Packets stored")
    duplicates = count(description="Packets already stored with the same value")
    rejected = fields.List(fields.Nested(RejectedPacket), required=True)


class BatchReply(Reply):
    """`POST /meter` with an array: success (200), partial (207) or error (400, every packet rejected)."""

    status = one_of("success", "partial", "error")
    message = fields.String(required=True)
    data = fields.Nested(BatchResult, required=True)


class DgStored(Reply):
    """The DG whose state was stored."""

    site_id = fields.String(required=True)
    dg_number = fields.String(required=True)
    status_changed = fields.Boolean(required=True, metadata={"description": "ON/OFF changed: a callback is queued"})


class DgStoredReply(Reply):
    """`POST /dg`."""

    status = word("success")
    message = word("DG state stored")
    data = fields.Nested(DgStored, required=True)


# `GET /api/v1/admin/today`: the seed's daily structure, meter number → {"HH:MM" → kWh}.
TODAY_READINGS = fields.Dict(
    keys=fields.String(),
    values=fields.Dict(keys=fields.String(), values=fields.Float()),
    metadata={"description": 'meter number → {seed label "HH:MM" → kWh}'},
)


class MeterGap(Reply):
    """A meter with fewer intervals than the day has."""

    meter_no = fields.String(required=True)
    intervals = count(description="Intervals stored")
    missing = count(description="Intervals missing")


class GapsReport(Reply):
    """`GET /api/v1/admin/gaps`: the meters of an ended day with missing intervals."""

    site_id = fields.String(required=True)
    day = fields.Date(required=True)
    timezone = fields.String(required=True)
    intervals_expected = count(description="48; 46 or 50 on a DST change day")
    rolled_at = fields.DateTime(required=True, metadata={"description": "When the day was rolled up"})
    meters = fields.List(fields.Nested(MeterGap), required=True)


class AuditEventOut(Reply):
    """One entry of the audit trail: who changed what, when, from where."""

    id = fields.Integer(required=True, strict=True)
    at = fields.DateTime(required=True)
    actor = fields.String(required=True, metadata={"description": "key:<name>, user:<name> or cli:<os user>"})
    address = fields.String(required=True)
    action = fields.String(required=True, metadata={"examples": ["meter.recharge"]})
    site_id = fields.String(required=True, allow_none=True)
    target = fields.String(required=True)
    details = fields.Dict(required=True)


class AuditReply(Reply):
    """`GET /api/v1/admin/audit`: events, oldest first, 500 at a time."""

    status = word("success")
    message = word("Audit trail")
    count = count()
    data = fields.List(fields.Nested(AuditEventOut), required=True)


class Health(Reply):
    """`GET /readyz` (and `/healthz`): 200 when the database answers at the code's migration and the
    ingest writer runs; 503 otherwise, saying what is wrong."""

    status = one_of("ok", "error")
    version = fields.String(required=True)
    database = fields.String(required=True, metadata={"description": "Its dialect, or why it is unreachable"})
    database_ms = fields.Float(metadata={"description": "How long the database took to answer (when it did)"})
    migration = fields.String(metadata={"description": "Present when the schema is not the code's"})
    writer = fields.String(
        validate=validate.OneOf(["stopped"]), metadata={"description": "Present when the ingest writer is not running"}
    )


class Alive(Reply):
    """`GET /livez`: the process answers."""

    status = word("ok")
    version = fields.String(required=True)
