"""The head-end wire protocol, defined once: the gateway's HTTP head-end client sends these and
`mock-meter-server` (standing in for the vendor's head-end) answers them.

Every call is JSON under `/headend/v1` with `Authorization: Bearer <token>` when the head-end has
one. Commands carry a `command_id` and credits a `transaction_id`: a repeat of the same id with
the same parameters returns the first answer and never acts twice, so a client may retry freely;
the same id with other parameters is a 409. Meters are created on first mention, relay on.

| call | method + path | request | reply (200) |
|---|---|---|---|
| relay on/off | `POST /headend/v1/meters/{meter_no}/relay` | `RelayRequest` | `RelayReply` |
| set load | `POST /headend/v1/meters/{meter_no}/load` | `LoadRequest` | `LoadReply` |
| credit | `POST /headend/v1/meters/{meter_no}/credits` | `CreditRequest` | `CreditReply` |
| credit status | `GET /headend/v1/credits/{transaction_id}` | — | `CreditReply` |
| meter status | `GET /headend/v1/meters/{meter_no}/status` | — | `MeterStatusReply` |

Errors answer `ErrorReply` (`{"error": "...", ...}`): 400 invalid body or path (`fields` names
each offending field), 401 missing/wrong bearer token, 404 unknown transaction, 409 id reused with
other parameters, 500/503 head-end failure (safe to retry with the same id), 504 meter unreachable
(nothing was done; `meter_no` says which). A refusal is not an error: it is a 200 whose `result`
(or credit `state`) is `refused`, with a `reason`. Decimals travel as strings ("500.00"), never
JSON numbers, so money and kW stay exact.

The mock's own control calls (`/control/...`) use `FaultsSchema`; the real head-end has none.
"""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

PREFIX = "/headend/v1"
RELAY_PATH = PREFIX + "/meters/{meter_no}/relay"
LOAD_PATH = PREFIX + "/meters/{meter_no}/load"
CREDITS_PATH = PREFIX + "/meters/{meter_no}/credits"
CREDIT_STATUS_PATH = PREFIX + "/credits/{transaction_id}"
STATUS_PATH = PREFIX + "/meters/{meter_no}/status"

CONTROL_FAULTS_PATH = "/control/faults"
CONTROL_RESET_PATH = "/control/reset"
CONTROL_STATE_PATH = "/control/state"

RELAY_STATES = ("on", "off")
RESULTS = ("applied", "refused")
CREDIT_STATES = ("applied", "queued", "refused")

# Ids appear in URL paths, so they stay within characters that need no escaping.
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
METER_NO_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
TOKEN_PATTERN = r"^[0-9]{20}$"


class DecimalString(fields.Field):
    """A decimal carried as a JSON string with at most `places` decimals ("2.50", "500.00").

    JSON numbers are refused on purpose: a float would round money before we ever saw it.
    Dumps always write exactly `places` decimals.
    """

    default_error_messages = {
        "invalid": 'Not a decimal string (write it like "500.00").',
        "places": "At most {places} decimals.",
    }

    def __init__(self, *, places: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.places = places

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        return str(Decimal(value).quantize(Decimal(1).scaleb(-self.places)))

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        try:
            number = Decimal(value.strip())
        except decimal.InvalidOperation as exc:
            raise self.make_error("invalid") from exc
        if not number.is_finite():
            raise self.make_error("invalid")
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and -exponent > self.places:
            raise self.make_error("places", places=self.places)
        return number


def _id(**kwargs: Any) -> fields.String:
    return fields.String(validate=validate.Regexp(ID_PATTERN, error="1-128 of A-Z a-z 0-9 . _ : -"), **kwargs)


def _meter_no(**kwargs: Any) -> fields.String:
    return fields.String(validate=validate.Regexp(METER_NO_PATTERN, error="1-64 of A-Z a-z 0-9 . _ -"), **kwargs)


def _load_kw(**kwargs: Any) -> DecimalString:
    return DecimalString(validate=validate.Range(min=Decimal("0.01"), max=Decimal("1000")), **kwargs)


# --- path parameters -------------------------------------------------------------------------


class MeterPath(Schema):
    """`{meter_no}` in a path."""

    meter_no = _meter_no(required=True)


class TransactionPath(Schema):
    """`{transaction_id}` in a path."""

    transaction_id = _id(required=True)


# --- requests ----------------------------------------------------------------------------------


class RelayRequest(Schema):
    """Switch a meter's supply relay: `on` connects, `off` cuts."""

    command_id = _id(required=True)
    state = fields.String(required=True, validate=validate.OneOf(RELAY_STATES))


class LoadRequest(Schema):
    """Set a meter's sanctioned loads in kW (positive, at most 2 decimals, up to 1000)."""

    command_id = _id(required=True)
    load_dg = _load_kw(required=True)
    load_grid = _load_kw(required=True)


class CreditRequest(Schema):
    """Add prepaid credit to a meter. Amount rules (> 0, under the maximum) answer `refused`."""

    transaction_id = _id(required=True)
    amount = DecimalString(required=True)


# --- replies -----------------------------------------------------------------------------------


class RelayReply(Schema):
    """What the meter did with a relay command. `changed` is false when it already was in `state`."""

    command_id = _id(required=True)
    meter_no = _meter_no(required=True)
    result = fields.String(required=True, validate=validate.OneOf(RESULTS))
    relay = fields.String(required=True, validate=validate.OneOf(RELAY_STATES))
    changed = fields.Boolean(required=True)
    reason = fields.String(required=True, allow_none=True)


class LoadReply(Schema):
    """What the meter did with a load command; loads are the meter's values after it."""

    command_id = _id(required=True)
    meter_no = _meter_no(required=True)
    result = fields.String(required=True, validate=validate.OneOf(RESULTS))
    load_dg = DecimalString(required=True)
    load_grid = DecimalString(required=True)
    reason = fields.String(required=True, allow_none=True)


class CreditReply(Schema):
    """A credit's state. `token` (20 digits) and `applied_at` are set once it is applied."""

    transaction_id = _id(required=True)
    meter_no = _meter_no(required=True)
    state = fields.String(required=True, validate=validate.OneOf(CREDIT_STATES))
    token = fields.String(required=True, allow_none=True, validate=validate.Regexp(TOKEN_PATTERN))
    amount = DecimalString(required=True)
    reason = fields.String(required=True, allow_none=True)
    requested_at = fields.AwareDateTime(required=True, format="iso")
    applied_at = fields.AwareDateTime(required=True, allow_none=True, format="iso")


class MeterStatusReply(Schema):
    """A meter's live state as the head-end reads it."""

    meter_no = _meter_no(required=True)
    relay = fields.String(required=True, validate=validate.OneOf(RELAY_STATES))
    load_dg = DecimalString(required=True)
    load_grid = DecimalString(required=True)
    reachable = fields.Boolean(required=True)


class ErrorReply(Schema):
    """Every non-2xx answer. `fields` (400) maps each offending field to why; `meter_no` on 504."""

    error = fields.String(required=True)
    fields_ = fields.Dict(data_key="fields", keys=fields.String(), values=fields.List(fields.String()))
    meter_no = fields.String()
    command_id = fields.String()
    transaction_id = fields.String()


# --- the mock's control calls ------------------------------------------------------------------


class FaultsSchema(Schema):
    """Fault injection of `mock-meter-server`. On `POST /control/faults` every field is optional
    (a partial update); `GET /control/faults` answers all of them.
    """

    latency_ms = fields.Integer(validate=validate.Range(min=0, max=120_000))
    failure_rate = fields.Float(validate=validate.Range(min=0, max=1))
    drop_rate = fields.Float(validate=validate.Range(min=0, max=1))
    drop_when = fields.String(validate=validate.OneOf(("before", "after")))
    fail_next = fields.Integer(validate=validate.Range(min=0))
    drop_next = fields.Integer(validate=validate.Range(min=0))
    unreachable = fields.List(_meter_no())
    refuse_credits = fields.List(_meter_no())
    refuse_commands = fields.List(_meter_no())
    queue_credits_seconds = fields.Float(validate=validate.Range(min=0, max=7 * 86400))
    max_credit = DecimalString(validate=validate.Range(min=Decimal("0.01")))


def field_errors(error: ValidationError) -> dict[str, list[str]]:
    """A ValidationError's messages flattened to `{field: [why, ...]}` (nested keys joined by dots)."""
    flat: dict[str, list[str]] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            flat.setdefault(prefix or "_schema", []).extend(value)
        else:
            flat.setdefault(prefix or "_schema", []).append(str(value))

    walk("", error.messages)
    return flat
