"""Factech envelopes on the wire: how iSocietyManager's document spells each call's replies.

What lives here and nowhere else: each call's success message and error wording (`error` or
`Error`, "Not Found", "Not Details", ...), which error envelopes carry `"count": "0"`, `data` or
a capitalised `Remarks`, and the HTTP status of each outcome. `adapters.factech` fills these
envelopes with store results; the gateway's error middleware hands domain errors to
`error_reply`; the OpenAPI spec reads each call's schema off the same functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.fields import describe_errors

HTTP_OK = 200
HTTP_WAITING = 202  # a recharge accepted but not yet applied by the head-end


@dataclass(frozen=True)
class Call:
    """How the document spells one call's replies."""

    number: int
    success: str  # success `message`
    error_word: str  # error `status`: the document writes "error" for some calls, "Error" for others
    not_found: str  # `message` when the object is unknown or outside the key's sites
    failed: str = "Operation Not Successful"  # `message` when the operation was refused or failed
    count_on_error: bool = False  # the error envelope carries "count": "0"
    # Calls 6, 7, 9 answer errors as {status, message, Remarks} (no data); the others carry
    # `data: null` and put a reason, when there is one to give, in a lowercase `remarks`.
    remarks_key: str = "remarks"
    waiting: str = ""  # `message` of the optional waiting case (recharges)


SITE_READINGS = Call(1, "Meter Readings and Balances", "error", "Not Found", count_on_error=True)
METER_READING = Call(2, "Meter Readings and Balance", "Error", "Not Found", count_on_error=True)
RECHARGE = Call(
    3,
    "Meter Recharged",
    "Error",
    "Not Found",
    failed="Not Recharged",
    count_on_error=True,
    waiting="Recharge request is pending",
)
RECHARGE_STATUS = Call(
    4,
    "Recharge success",
    "error",
    "No such record found",
    failed="Recharge was not successful",  # the handler appends " due to <reason>"
    waiting="Recharge request is pending",
)
METER_CHANGES = Call(5, "Meter Changed Details", "Error", "Not Details", count_on_error=True)
START_METER = Call(6, "Meter Started", "Error", "Operation Not Successful", remarks_key="Remarks")
STOP_METER = Call(7, "Meter Stopped", "Error", "Operation Not Successful", remarks_key="Remarks")
METER_STATUS = Call(8, "Meter Status success", "error", "No such record found", failed="Not able to connect to Meter")
UPDATE_LOAD = Call(9, "Meter load updated", "Error", "Operation Not Successful", remarks_key="Remarks")
DG_READING = Call(10, "DG Readings", "Error", "Not Found")
DG_SENSING = Call(11, "DG Sensing URL configured", "Error", "Not Found", failed="Not Configured")
# The document's error message of calls 12 and 13 is cut off after "Not "; "Not Found" is meant.
DG_STATUS = Call(12, "DG Status", "Error", "Not Found")
DG_FUEL = Call(13, "DG Status", "Error", "Not Found")

CALLS = {
    call.number: call
    for call in (
        SITE_READINGS,
        METER_READING,
        RECHARGE,
        RECHARGE_STATUS,
        METER_CHANGES,
        START_METER,
        STOP_METER,
        METER_STATUS,
        UPDATE_LOAD,
        DG_READING,
        DG_SENSING,
        DG_STATUS,
        DG_FUEL,
    )
}

# Error `message` by domain-error kind, for kinds the document gives no per-call text for.
_MESSAGE_BY_KIND = {
    "invalid": "Invalid input",
    "too_large": "Invalid input",
    "unauthorized": "Unauthorized",
    "forbidden": "Forbidden",
}


@dataclass(frozen=True)
class Reply:
    """A JSON body, its HTTP status and any extra headers."""

    body: dict[str, Any]
    status: int = HTTP_OK
    headers: dict[str, str] = field(default_factory=dict)


def success(call: Call, data: Any, *, status: int = HTTP_OK) -> Reply:
    """The success envelope; a list of records also gets `count` (as a string, as documented)."""
    body: dict[str, Any] = {"status": "success", "message": call.success}
    if isinstance(data, list):
        body["count"] = str(len(data))
    body["data"] = data
    return Reply(body, status)


def waiting(call: Call, data: Any) -> Reply:
    """The optional waiting envelope (202): accepted, not yet applied."""
    return Reply({"status": "waiting", "message": call.waiting, "data": data}, HTTP_WAITING)


def error_reply(
    call: Call,
    *,
    kind: str,
    status: int,
    reason: str = "",
    errors: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """The call's error envelope for a domain error of `kind`, answered with HTTP `status`.

    The reason goes in `Remarks` (calls 6, 7, 9, always present as in the document) or in a
    lowercase `remarks` (other calls; omitted for a plain not-found, whose document envelope has
    none). For bad input the reason names each offending parameter.
    """
    if kind == "not_found":
        message = call.not_found
    else:
        message = _MESSAGE_BY_KIND.get(kind, call.failed)
    if kind in ("invalid", "too_large") and errors:
        reason = describe_errors(errors)
    body: dict[str, Any] = {"status": call.error_word, "message": message}
    if call.remarks_key == "Remarks":
        body["Remarks"] = reason or message
    else:
        if call.count_on_error:
            body["count"] = "0"
        body["data"] = None
        if reason and kind != "not_found":
            body["remarks"] = reason
    return Reply(body, status, dict(headers or {}))
