"""The Factech calls in the spec: each call's envelope and errors come from its `Call` spec.

`adapters.factech` is the one place that knows how the document spells a call's replies; this
module does not restate it. It renders each outcome with that module's own functions
(`success`, `waiting`, `error_reply`) and reads the JSON Schema off the result: the `status`
word, the exact `message`, whether `count`, `data`, `remarks` or `Remarks` appear. What is
written here is only what the code cannot say about itself: the document's titles, the input
and record schemas, which HTTP statuses a call can answer, and example values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from marshmallow import Schema

from gateway.errors import STATUS_BY_KIND
from gateway.settings import Settings
from schemas import factech_envelopes
from schemas import factech_replies as records
from schemas import factech_requests as inputs

KIND_BY_STATUS = {status: kind for kind, status in STATUS_BY_KIND.items()}
# Example reasons in `remarks`/`Remarks`, by kind of error (bad input names its parameters instead).
REASONS = {
    "unauthorized": "Invalid or revoked API key",
    "forbidden": "API key 'isociety-read' has role 'read'; this call needs 'operate'",
    "conflict": "Meter was already STARTED",
    "refused": "refused by the head-end",
}
READ_ERRORS = (400, 401, 403, 404)


@dataclass(frozen=True)
class CallDoc:
    """What the spec says about one call beyond its `Call` spec."""

    title: str  # the document's heading
    inputs: Callable[[], Schema]  # a factory: some schemas take settings (the recharge maximum)
    record: type[Schema]
    example: dict[str, str]
    errors: tuple[int, ...] = READ_ERRORS
    many: bool = False  # `data` is a list of records (with `count`)
    error_on_ok: bool = False  # call 4: a failed recharge is a 200 with the error envelope
    headers: tuple[dict[str, Any], ...] = ()  # header parameters (OpenAPI Parameter objects)


def _settings() -> Settings:
    return Settings()


IDEMPOTENCY_KEY = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "description": "Makes a retry answer the first request's reply instead of recharging again",
    "schema": {"type": "string", "pattern": f"^{inputs.IDEMPOTENCY_KEY.pattern}$"},
}
METER = {
    "unit_no": "A-101",
    "meter_no": "999999999",
    "dg": "12.40",
    "grid": "1534.75",
    "date_time": "2025-02-08 06:01:00",
    "balance": "2450.50",
    "status": "On",
}
# Calls 3, 4 and 6-9 are documented as soon as their routes exist (branch `commands`); their
# input schemas are looked up only then, hence the lambdas.
CALL_DOCS: dict[int, CallDoc] = {
    1: CallDoc("Latest Readings / Balances for Site (All Meters)", inputs.SiteQuery, records.MeterReadingRecord,
               METER, many=True),
    2: CallDoc("Latest Readings / Balances for Single Meter", inputs.MeterQuery, records.MeterReadingRecord, METER),
    3: CallDoc(
        "Recharge Meter",
        lambda: inputs.RechargeRequest(maximum=_settings().recharge_max),  # type: ignore[attr-defined]
        records.RechargeRecord,
        {"unit_no": "A-101", "meter_no": "999999999", "amount": "500.00", "transaction_id": "rch_7f3a9c2e",
         "token": "48213390571246683120", "date_time": "2025-02-08 10:15:02", "balance": "2950.50", "remarks": ""},
        errors=(400, 401, 403, 404, 409, 413, 422, 502, 504),
        headers=(IDEMPOTENCY_KEY,),
    ),
    4: CallDoc(
        "Recharge Meter Status",
        lambda: inputs.RechargeStatusQuery(),  # type: ignore[attr-defined]
        records.RechargeStatusRecord,
        {"unit_no": "A-101", "meter_no": "999999999", "transaction_id": "rch_7f3a9c2e", "remarks": ""},
        error_on_ok=True,
    ),
    5: CallDoc(
        "Meter Changed Between Dates",
        inputs.MeterChangesQuery,
        records.MeterChangeRecord,
        {"unit_no": "B-204", "old_meter_no": "100000007", "old_start_dg": "0.00", "old_end_dg": "84.20",
         "old_start_grid": "0.00", "old_end_grid": "3120.55", "new_meter_no": "100000041", "new_start_dg": "0.00",
         "new_start_grid": "0.00", "meter_change_date": "2018-10-10", "reading_start_date": "2018-10-10"},
        many=True,
    ),
    6: CallDoc("Start Meter", lambda: inputs.SiteMeterQuery(), records.MeterCommandRecord,
               {"unit_no": "A-101", "meter_no": "999999999", "status": "STARTED"},
               errors=(400, 401, 403, 404, 409, 413, 422, 502, 504)),
    7: CallDoc("Stop Meter", lambda: inputs.SiteMeterQuery(), records.MeterCommandRecord,
               {"unit_no": "A-101", "meter_no": "999999999", "status": "STOPPED"},
               errors=(400, 401, 403, 404, 409, 413, 422, 502, 504)),
    8: CallDoc("Check Meter Status", lambda: inputs.SiteMeterQuery(), records.MeterStatusRecord,
               {"unit_no": "A-101", "meter_no": "999999999", "status": "ON", "remarks": ""},
               errors=(400, 401, 403, 404, 502, 504)),
    9: CallDoc("Update Meter Load", lambda: inputs.LoadRequest(), records.MeterCommandRecord,  # type: ignore[attr-defined]
               {"unit_no": "A-101", "meter_no": "999999999", "status": "Load Updated"},
               errors=(400, 401, 403, 404, 413, 422, 502, 504)),
    10: CallDoc("Latest Readings for DG", inputs.DgQuery, records.DgReadingRecord,
                {"dg_no": "DG1", "meter_no": "DG1-EM", "reading": "4312.80", "date_time": "2025-02-08 06:00:00"}),
    11: CallDoc("DG Sensing", inputs.DgSensingInput, records.DgSensingRecord,
                {"dg_no": "DG1", "url": "https://isocietymanager.example/dg-callback",
                 "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
                errors=(400, 401, 403, 404, 413, 422)),
    12: CallDoc("DG Status", inputs.DgQuery, records.DgStatusRecord, {"dg_no": "DG1", "status": "ON"}),
    13: CallDoc("DG Fuel Status", inputs.DgQuery, records.DgFuelRecord,
                {"dg_no": "DG1", "fuel_balance": "182.50", "datetime": "2025-02-08 06:00:00"}),
}  # fmt: skip


def _const_schema(body: dict[str, Any], data: dict[str, Any] | None, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON Schema for an envelope read off a rendered reply: constants stay constants."""
    properties: dict[str, Any] = {}
    for key, value in body.items():
        if key == "data" and data is not None:
            properties[key] = data
        elif key == "count" and data is not None:  # a success: the number of records
            properties[key] = {"type": "string", "pattern": "^[0-9]+$"}
        elif value is None:
            properties[key] = {"type": "null"}
        elif key.lower() == "remarks" and key in optional:
            properties[key] = {"type": "string"}
        else:
            properties[key] = {"type": "string", "const": value}
    return {
        "type": "object",
        "required": [key for key in body if key not in optional],
        "properties": properties,
        "additionalProperties": False,
    }


def success_schema(call: factech_envelopes.Call, doc: CallDoc, record_ref: dict[str, Any]) -> dict[str, Any]:
    """The success envelope, rendered by `factech_envelopes.success` from the example."""
    data = [doc.example] if doc.many else doc.example
    body = factech_envelopes.success(call, data).body
    items = {"type": "array", "items": record_ref} if doc.many else record_ref
    return _const_schema(body, items)


def waiting_schema(call: factech_envelopes.Call, record_ref: dict[str, Any]) -> dict[str, Any]:
    """The optional waiting envelope (HTTP 202)."""
    return _const_schema(factech_envelopes.waiting(call, {}).body, record_ref)


def error_body(call: factech_envelopes.Call, status: int) -> dict[str, Any]:
    """The call's error envelope for this HTTP status, as `factech_envelopes.error_reply` renders it."""
    kind = KIND_BY_STATUS.get(status, "error")
    errors = {"site_id": ["Missing data for required field."]} if kind == "invalid" else None
    reason = REASONS.get(kind, "Meter not Accessible")
    return factech_envelopes.error_reply(call, kind=kind, status=status, reason=reason, errors=errors).body


def error_schema(call: factech_envelopes.Call, status: int) -> dict[str, Any]:
    """The error envelope's schema: `status` and `message` exactly as rendered; a reason is optional
    in a lowercase `remarks` (absent for a plain not-found), required in the document's `Remarks`."""
    body = error_body(call, status)
    if call.remarks_key == "remarks":
        body.setdefault("remarks", "")  # listed (optional) even where this outcome gives no reason
    schema = _const_schema(body, None, optional=("remarks",))
    if call.remarks_key == "Remarks":
        schema["properties"]["Remarks"] = {"type": "string"}
    return schema


def call4_failure_schema(call: factech_envelopes.Call) -> dict[str, Any]:
    """Call 4's answer for a known recharge that failed: 200, the error envelope, "... due to <reason>"."""
    return {
        "type": "object",
        "required": ["status", "message", "data"],
        "properties": {
            "status": {"type": "string", "const": call.error_word},
            "message": {"type": "string", "pattern": f"^{call.failed} due to "},
            "data": {"type": "null"},
        },
        "additionalProperties": False,
    }


def describe(call: factech_envelopes.Call, doc: CallDoc, role: str) -> str:
    """The operation's description: the document's call, its role and its wording."""
    lines = [
        f"Factech call {call.number}: *{doc.title}* (iSocietyManager's Third Party Meter Integration API).",
        "",
        f'API key role: `{role}` or above. Success `message`: "{call.success}". '
        f'Error `status`: "{call.error_word}"; not found: "{call.not_found}".',
        "Every value in `data` is a string, as in the document.",
    ]
    return "\n".join(lines)


def example_amount() -> Decimal:
    """The recharge maximum the spec states (the default of GATEWAY_RECHARGE_MAX)."""
    return _settings().recharge_max
