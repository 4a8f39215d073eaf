"""How the project's own marshmallow fields read in JSON Schema (apispec knows only the stock ones).

Each function is an apispec attribute function: given a field, it returns the JSON Schema
keywords to add. The constraints say what the field's `_deserialize` accepts, as exactly as
JSON Schema can, so that schemathesis's generated "valid" data is accepted and its "invalid"
data refused.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import fields, validate

from schemas import fields as shared
from schemas import packets
from schemas.admin import AdminBody
from schemas.factech_requests import FactechQuery

REQUEST_SCHEMAS = (AdminBody, FactechQuery)  # bodies that may come as forms (gateway.api.request_inputs)
MAX_METER_NO = packets.MAX_METER_NO - 1
# A positive whole number of at most 18 digits, sent as text (Factech sends strings).
METER_NO_TEXT = {"type": "string", "pattern": r"^0*[1-9][0-9]*$", "minLength": 1, "maxLength": 18}
METER_NO_INT = {"type": "integer", "minimum": 1, "maximum": MAX_METER_NO}
# strptime's %Y refuses the year 0; JSON Schema's `date` format would allow it.
DAY_PATTERN = r"^([1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])-[0-9]{2}-[0-9]{2}$"
AMOUNT_LIMIT = 10**12  # `Amount` refuses |x| >= 1e12
LOCAL_TIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}(:[0-9]{2})?$"
# HH:MM-HH:MM, start and end not equal (the lookahead), or empty.
HOURS_PATTERN = r"^(?!([0-9]{2}:[0-9]{2})-\1$)(([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9])?$"
# schemas.fields.printable: ids and names carry no C0/C1 control characters.
PRINTABLE = r"^[^\x00-\x1f\x7f-\x9f]*$"
# schemas.fields.Text: printable, and something left once surrounding spaces are stripped.
PRINTABLE_NOT_BLANK = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"


def _amount(field: shared.Amount) -> dict[str, Any]:
    """A decimal sent as a JSON number or as text, at most `places` decimals, maybe a floor."""
    places = field.max_places
    step = "1" if places == 0 else "0." + "0" * (places - 1) + "1"
    minimum = field.minimum
    sign = "" if minimum is not None and minimum >= 0 else "-?"
    text: dict[str, Any] = {"type": "string", "pattern": rf"^{sign}[0-9]{{1,12}}(\.[0-9]{{1,{places}}})?$"}
    number: dict[str, Any] = {
        "type": "number",
        "multipleOf": float(step),
        "maximum": AMOUNT_LIMIT - float(step),
        "minimum": float(minimum) if minimum is not None else -(AMOUNT_LIMIT - float(step)),
    }
    return {"anyOf": [number, text]}


def custom_field(self: Any, field: fields.Field, ret: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
    """JSON Schema keywords for the project's fields (the first match wins)."""
    extra = _keywords(field)
    if "const" in extra:
        ret.pop("enum", None)
    if "anyOf" in extra:  # the stock mapping's `type` (Decimal: number) would contradict the other branch
        for key in ("type", "format"):
            ret.pop(key, None)
    if field.allow_none:  # OpenAPI 3.1 spells nullable as a JSON Schema type "null"
        if "anyOf" in extra:
            extra["anyOf"] = [*extra["anyOf"], {"type": "null"}]
        elif isinstance(extra.get("type"), str):
            extra["type"] = [extra["type"], "null"]
    return extra


def _keywords(field: fields.Field) -> dict[str, Any]:
    fixed = [validator for validator in field.validators if isinstance(validator, validate.Equal)]
    if fixed:  # a reply's fixed word (schemas.replies.word): `const`, not a one-word enum
        return {"type": "string", "const": fixed[0].comparable}
    if isinstance(field, fields.Boolean) and isinstance(field.parent, REQUEST_SCHEMAS):
        # marshmallow also takes its truthy/falsy words and 0/1, which form bodies need.
        # One type per branch (code generators refuse an enum mixing numbers and strings), and the
        # words as a pattern: as enum members "true", "True" and "TRUE" collide in generated code.
        numbers = sorted(word for word in field.truthy | field.falsy if isinstance(word, int))
        words = sorted(word for word in field.truthy | field.falsy if isinstance(word, str))
        pattern = "^(" + "|".join(re.escape(word) for word in words) + ")$"
        return {
            "anyOf": [{"type": "boolean"}, {"type": "integer", "enum": numbers}, {"type": "string", "pattern": pattern}]
        }
    if isinstance(field, fields.Url):
        return {"format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]+"}
    if isinstance(field, shared.MeterNumber):
        return {"anyOf": [METER_NO_TEXT, METER_NO_INT]}
    if isinstance(field, packets.MeterNo):
        return dict(METER_NO_INT)
    if isinstance(field, packets.Timestamp):
        return {"type": "string", "format": "date-time"}
    if isinstance(field, packets.Kwh):
        # The maximum is the gateway's GATEWAY_MAX_INTERVAL_KWH; the spec states the default.
        return {"type": "number", "minimum": 0, "maximum": float(field.parent.max_kwh)}  # type: ignore[union-attr]
    if isinstance(field, shared.LocalDateTime):
        return {"type": "string", "pattern": LOCAL_TIME_PATTERN, "description": "Site-local time YYYY-MM-DD HH:mm:ss"}
    if isinstance(field, shared.NoCutHours):
        return {"type": "string", "pattern": HOURS_PATTERN}
    if isinstance(field, shared.Weekdays):
        names = {"type": "string", "enum": list(shared.WEEKDAYS)}
        if isinstance(field.parent, REQUEST_SCHEMAS):
            days = "(" + "|".join(shared.WEEKDAYS) + ")"
            return {
                "anyOf": [{"type": "string", "pattern": rf"^({days}(,{days})*)?$"}, {"type": "array", "items": names}]
            }
        return {"type": "array", "items": names}
    if isinstance(field, shared.Thresholds):
        amounts = _amount(shared.Amount())
        if isinstance(field.parent, REQUEST_SCHEMAS):
            text = r"-?[0-9]{1,12}(\.[0-9]{1,2})?"
            listed = {"type": "string", "pattern": rf"^({text}(,{text}){{0,{shared.MAX_THRESHOLDS - 1}}})?$"}
            many = {"type": "array", "items": amounts, "maxItems": shared.MAX_THRESHOLDS}
            return {"anyOf": [many, listed]}
        return {"type": "array", "items": {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{2}$"}}
    if isinstance(field, shared.Day):
        return {"type": "string", "format": "date", "pattern": DAY_PATTERN}
    if isinstance(field, shared.Amount):
        return _amount(field)
    if isinstance(field, shared.Text):
        # Surrounding spaces are stripped and what is left may not be empty.
        return {"minLength": 1, "pattern": PRINTABLE_NOT_BLANK}
    if isinstance(field, fields.String) and (
        isinstance(field, shared.FreeText) or shared.printable in field.validators
    ):
        return {"pattern": PRINTABLE}
    if isinstance(field, fields.Decimal) and field.as_string:  # replies: exact decimals as text
        return {"type": ["string", "null"] if field.allow_none else "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"}
    return {}
