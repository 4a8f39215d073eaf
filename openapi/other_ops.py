"""The spec of the routes other than the Factech calls: ingest, admin, reports, operations, docs.

Keyed by (method, path) as the app's router spells them; `openapi.build` refuses to write a spec
while a route of the app has no entry here (or in the Factech calls). Request bodies are the
marshmallow schemas the handlers load; replies are the marshmallow schemas of `schemas.replies`
and `schemas.admin_replies` (nothing here restates a reply's fields).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from marshmallow import Schema

from gateway.docs import ASSETS
from openapi.fields import PRINTABLE
from schemas import admin as wire
from schemas import admin_replies as admin_reply
from schemas import packets, replies

Ref = Callable[[type[Schema] | Schema], dict[str, Any]]  # registers a schema, answers its $ref
Extend = Callable[[type[Schema], str, dict[str, Any]], dict[str, Any]]  # a schema plus properties → $ref
Field = Callable[[str, Any], dict[str, Any]]  # registers a marshmallow field as a named component, answers its $ref
JSON = "application/json"
API_KEY = [{"ApiKey": []}]
INGEST = [{"IngestBearer": []}]

ERROR_TEXT = {
    400: "Bad input: malformed JSON or invalid fields (`errors` names them)",
    401: "No, unknown or revoked credentials",
    403: "The credentials lack the role",
    404: "Not found (also for objects outside the key's sites)",
    409: "Conflict with what is stored",
    413: "Body over GATEWAY_MAX_BODY_BYTES (or a batch over GATEWAY_MAX_BATCH)",
    422: "Refused",
    503: "Overloaded: retry after `Retry-After` seconds",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
ADMIN_ERRORS = (400, 401, 403, 404, 413)
ADMIN_READ_ERRORS = (401, 403, 404)


def error_responses(ref: Ref, statuses: tuple[int, ...]) -> dict[str, Any]:
    """The plain error envelope for each status."""
    responses: dict[str, Any] = {}
    for status in statuses:
        schema = ref(replies.ErrorReply)
        response: dict[str, Any] = {"description": ERROR_TEXT[status], "content": {JSON: {"schema": schema}}}
        if status == 503:
            response["headers"] = RETRY_AFTER
        responses[str(status)] = response
    return responses


def reply(ref: Ref, schema: type[Schema], status: int = 200, description: str = "") -> dict[str, Any]:
    """A success reply described by a reply schema (its fixed `message`, if any, is the description)."""
    message = schema._declared_fields.get("message")
    description = description or (message.dump_default if message is not None else "") or schema.__doc__ or ""
    return {str(status): {"description": description, "content": {JSON: {"schema": ref(schema)}}}}


# One media type per body: with JSON and a form under one schema, code generators cannot tell the
# two apart (openapi-python-client 0.29 generated code that does not even import). The form is
# named in words instead; the gateway reads it exactly as it reads the JSON object.
FORM_TOO = "A JSON object; the same fields are also accepted as a form body (application/x-www-form-urlencoded)."


def body(schema: Any, *, form: bool = True) -> dict[str, Any]:
    """A required JSON request body (saying so where the handler reads a form body too)."""
    request_body: dict[str, Any] = {"required": True, "content": {JSON: {"schema": schema}}}
    if form:
        request_body["description"] = FORM_TOO
    return request_body


def operation_id(method: str, path: str) -> str:
    """A stable operationId from the route: `post_api_v1_admin_sites_site_id_meters`."""
    return method.lower() + "_" + "_".join(part.strip("{}") for part in path.split("/") if part).replace("-", "_")


def links(status: int, responses: dict[str, Any], **targets: tuple[str, str, dict[str, str]]) -> dict[str, Any]:
    """Add OpenAPI links to a created object's reply: name → (method, path, {param: from body})."""
    responses[str(status)]["links"] = {
        name: {"operationId": operation_id(method, path), "parameters": params}
        for name, (method, path, params) in targets.items()
    }
    return responses


def path_param(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"in": "path", "name": name, "required": True, "schema": schema, "description": description}


SITE_ID = path_param("site_id", {"type": "string", "minLength": 1, "maxLength": 64, "pattern": PRINTABLE}, "Site id")
METER_NO = path_param("meter_no", {"type": "string", "pattern": r"^0*[1-9][0-9]*$", "maxLength": 18}, "Meter number")
DG_NUMBER = path_param(
    "dg_number", {"type": "string", "minLength": 1, "maxLength": 64, "pattern": PRINTABLE}, "DG number"
)
EVENT_ID = path_param(
    "event_id", {"type": "string", "minLength": 1, "pattern": PRINTABLE}, "Callback event id (`evt_...`)"
)
KEY_NAME = path_param("name", {"type": "string", "minLength": 1, "maxLength": 100, "pattern": PRINTABLE}, "Key name")


def ingest_ops(ref: Ref) -> dict[tuple[str, str], dict[str, Any]]:
    """`POST /meter` and `POST /dg`."""
    packet = ref(packets.MeterPacket)
    stored, batch, error = ref(replies.ReadingStoredReply), ref(replies.BatchReply), ref(replies.ErrorReply)
    meter_body = {
        "oneOf": [packet, {"type": "array", "items": packet, "minItems": 1, "maxItems": 5000}],
    }
    meter_example = {"id": 999999999, "timestamp": "2025-02-08T00:31:00Z", "reading_kWh": 5.5}
    meter = {
        "tags": ["ingest"],
        "summary": "Post a meter's half-hourly packet, or a concentrator's array of packets",
        "description": (
            "The seed's packet. `timestamp` floored to the half hour is the interval's end; packets more than "
            "5 minutes ahead or older than GATEWAY_MAX_PACKET_AGE_DAYS (35) are refused. The reply comes after "
            "the commit. Auth: the meter's device token (its own id only) or an API key with role `ingest` for "
            "the meter's site. Without credentials, only meters staff flagged `legacy_ingest` may post."
        ),
        "security": INGEST,
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": meter_body, "examples": {"packet": {"value": meter_example}}}},
        },
        "responses": {
            "200": {"description": "Stored (or a duplicate), or a batch with nothing rejected",
                    "content": {JSON: {"schema": {"oneOf": [stored, batch]}}}},
            "207": {"description": "A batch with some packets rejected", "content": {JSON: {"schema": batch}}},
            "400": {"description": ERROR_TEXT[400] + "; a batch with every packet rejected",
                    "content": {JSON: {"schema": {"oneOf": [error, batch]}}}},
            **error_responses(ref, (401, 403, 404, 409, 413, 503)),
        },
    }  # fmt: skip
    dg = {
        "tags": ["ingest"],
        "summary": "Post a DG controller's status, fuel and energy register",
        "description": "API key with role `ingest`. `reading_kWh` is the DG energy meter's cumulative register.",
        "security": INGEST,
        "requestBody": body(ref(packets.DgPacket), form=False),
        "responses": {
            **reply(ref, replies.DgStoredReply, description="Stored"),
            **error_responses(ref, (400, 401, 403, 404, 413)),
        },
    }
    return {("POST", "/meter"): meter, ("POST", "/dg"): dg}


def admin_op(ref: Ref, summary: str, responses: dict[str, Any], errors: tuple[int, ...], **rest: Any) -> dict[str, Any]:
    """One admin operation (role `admin`) with its success replies and these error statuses."""
    if rest.get("parameters") and 400 not in errors:  # a malformed id in the path is refused with 400
        errors = (400, *errors)
    return {
        "tags": ["admin"],
        "summary": summary,
        "security": API_KEY,
        **rest,
        "responses": {**responses, **error_responses(ref, errors)},
    }


def admin_ops(ref: Ref, extend: Extend) -> dict[tuple[str, str], dict[str, Any]]:
    """The admin API (`/api/v1/admin/...`, role `admin`)."""

    op, ok = functools.partial(admin_op, ref), functools.partial(reply, ref)

    # At least one field to change (an empty body is refused).
    site_edit, meter_edit = extend(wire.SiteEdit, "SiteEdit", {}), extend(wire.MeterEdit, "MeterEdit", {})
    base = "/api/v1/admin"
    return {
        ("POST", f"{base}/sites"): op(
            "Register a site (admin key for `*`)",
            links(201, ok(admin_reply.SiteCreated, 201),
                  GetSite=("GET", f"{base}/sites/{{site_id}}", {"site_id": "$response.body#/data/site_id"}),
                  EditSite=("PATCH", f"{base}/sites/{{site_id}}", {"site_id": "$response.body#/data/site_id"}),
                  AddMeter=("POST", f"{base}/sites/{{site_id}}/meters", {"site_id": "$response.body#/data/site_id"}),
                  AddDg=("POST", f"{base}/sites/{{site_id}}/dgs", {"site_id": "$response.body#/data/site_id"})),
            (*ADMIN_ERRORS, 409),
            requestBody=body(ref(wire.SiteCreate))),
        ("GET", f"{base}/sites"): op("The key's sites", ok(admin_reply.Sites), (401, 403)),
        ("GET", f"{base}/sites/{{site_id}}"): op("One site", ok(admin_reply.SiteReply), ADMIN_READ_ERRORS,
                                                 parameters=[SITE_ID]),
        ("PATCH", f"{base}/sites/{{site_id}}"): op(
            "Change a site's name, region, tariffs or auto_cut", ok(admin_reply.SiteUpdated), ADMIN_ERRORS,
            parameters=[SITE_ID], requestBody=body(site_edit)),
        ("POST", f"{base}/sites/{{site_id}}/meters"): op(
            "Register a meter",
            links(201, ok(admin_reply.MeterCreated, 201),
                  GetMeter=("GET", f"{base}/meters/{{meter_no}}", {"meter_no": "$response.body#/data/meter_no"}),
                  EditMeter=("PATCH", f"{base}/meters/{{meter_no}}", {"meter_no": "$response.body#/data/meter_no"}),
                  RetireMeter=("POST", f"{base}/meters/{{meter_no}}/retire",
                               {"meter_no": "$response.body#/data/meter_no"})),
            (*ADMIN_ERRORS, 409), parameters=[SITE_ID], requestBody=body(ref(wire.MeterCreate))),
        ("GET", f"{base}/sites/{{site_id}}/meters"): op(
            "The site's meters, retired ones included", ok(admin_reply.Meters), ADMIN_READ_ERRORS,
            parameters=[SITE_ID]),
        ("GET", f"{base}/meters/{{meter_no}}"): op("One meter", ok(admin_reply.MeterReply), (400, *ADMIN_READ_ERRORS),
                                                  parameters=[METER_NO]),
        ("PATCH", f"{base}/meters/{{meter_no}}"): op(
            "Change a meter's consumer details", ok(admin_reply.MeterUpdated), ADMIN_ERRORS,
            parameters=[METER_NO], requestBody=body(meter_edit)),
        ("POST", f"{base}/meters/{{meter_no}}/retire"): op(
            "Take a meter out of service", ok(admin_reply.MeterRetired), (*ADMIN_ERRORS, 409),
            parameters=[METER_NO]),
        ("GET", f"{base}/meters/{{meter_no}}/ledger"): op(
            "A meter's ledger entries, oldest first, and whether its balance adds up",
            ok(admin_reply.Ledger),
            (400, *ADMIN_READ_ERRORS), parameters=[METER_NO]),
        ("POST", f"{base}/meters/{{meter_no}}/adjustments"): op(
            "Correct a meter's balance by a signed amount, with a reason",
            ok(admin_reply.BalanceAdjusted, 201), (*ADMIN_ERRORS, 409),
            parameters=[METER_NO], requestBody=body(ref(wire.AdjustmentCreate))),
        ("POST", f"{base}/meter-changes"): op(
            "Replace a meter", ok(admin_reply.MeterReplaced, 201),
            (*ADMIN_ERRORS, 409), requestBody=body(ref(wire.MeterChangeCreate))),
        ("POST", f"{base}/sites/{{site_id}}/dgs"): op(
            "Register a diesel generator", ok(admin_reply.DgCreated, 201), (*ADMIN_ERRORS, 409),
            parameters=[SITE_ID], requestBody=body(ref(wire.DgCreate))),
        ("GET", f"{base}/sites/{{site_id}}/dgs"): op("The site's DGs", ok(admin_reply.Dgs), ADMIN_READ_ERRORS,
                                                    parameters=[SITE_ID]),
        ("GET", f"{base}/sites/{{site_id}}/dgs/{{dg_number}}/deliveries"): op(
            "The DG's latest 100 callback events, each with every attempt",
            ok(admin_reply.DgDeliveries), ADMIN_READ_ERRORS,
            parameters=[SITE_ID, DG_NUMBER]),
        ("POST", f"{base}/sites/{{site_id}}/dgs/{{dg_number}}/deliveries/{{event_id}}/redeliver"): op(
            "Send a callback event again now", ok(admin_reply.RedeliveryQueued, 202), ADMIN_READ_ERRORS,
            parameters=[SITE_ID, DG_NUMBER, EVENT_ID]),
        ("POST", f"{base}/keys"): op(
            "Create an API key",
            links(201, ok(admin_reply.KeyCreated, 201),
                  RotateKey=("POST", f"{base}/keys/{{name}}/rotate", {"name": "$response.body#/data/name"}),
                  RevokeKey=("POST", f"{base}/keys/{{name}}/revoke", {"name": "$response.body#/data/name"})),
            (*ADMIN_ERRORS, 409),
            # JSON only: `sites` is a list, which a form body cannot carry.
            requestBody=body(ref(wire.KeyCreate), form=False)),
        ("GET", f"{base}/keys"): op("Keys within the caller's sites (never secrets)", ok(admin_reply.Keys),
                                    (401, 403)),
        ("POST", f"{base}/keys/{{name}}/revoke"): op("Revoke a key", ok(admin_reply.KeyRevoked),
                                                     (*ADMIN_READ_ERRORS, 409), parameters=[KEY_NAME]),
        ("POST", f"{base}/keys/{{name}}/rotate"): op(
            "Give a key a new secret", ok(admin_reply.KeyRotated),
            (*ADMIN_READ_ERRORS, 409), parameters=[KEY_NAME]),
    }  # fmt: skip


def report_ops(ref: Ref, field: Field) -> dict[tuple[str, str], dict[str, Any]]:
    """The admin reports on days, and the audit trail."""
    site_q = {
        "in": "query",
        "name": "site_id",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "pattern": PRINTABLE},
    }
    day_q = {"in": "query", "name": "day", "required": True, "schema": {"type": "string", "format": "date"}}
    today = field("TodayReadings", replies.TODAY_READINGS)
    return {
        ("GET", "/api/v1/admin/today"): {
            "tags": ["reports"],
            "summary": "The site's current local day as the seed's daily structure",
            "security": API_KEY,
            "parameters": [site_q],
            "responses": {
                "200": {"description": "Every active meter", "content": {JSON: {"schema": today}}},
                **error_responses(ref, (400, 401, 403, 404)),
            },
        },
        ("GET", "/api/v1/admin/audit"): {
            "tags": ["reports"],
            "summary": "The audit trail of the key's sites: who changed what, when, from where (500 at a time)",
            "security": API_KEY,
            "parameters": [
                {**site_q, "required": False},
                {
                    "in": "query",
                    "name": "after",
                    "required": False,
                    "description": "Events after this event id (paging), or after this date-time with its zone",
                    "schema": {"type": "string", "maxLength": 40},
                },
            ],
            "responses": {
                **reply(ref, replies.AuditReply, description="Events, oldest first"),
                **error_responses(ref, (400, 401, 403, 404)),
            },
        },
        ("GET", "/api/v1/admin/gaps"): {
            "tags": ["reports"],
            "summary": "Meters with fewer intervals than an ended day has",
            "security": API_KEY,
            "parameters": [site_q, day_q],
            "responses": {
                **reply(ref, replies.GapsReport, description="The gaps"),
                **error_responses(ref, (400, 401, 403, 404)),
            },
        },
    }


def ops_and_docs(ref: Ref) -> dict[tuple[str, str], dict[str, Any]]:
    """Health, metrics, and this very document."""
    health = ref(replies.Health)
    alive = ref(replies.Alive)
    text = lambda media, what: {"200": {"description": what, "content": {media: {"schema": {"type": "string"}}}}}  # noqa: E731
    asset = path_param("name", {"enum": sorted(ASSETS)}, "A Swagger UI file")
    asset_types = {media: {"schema": {"type": "string"}} for media in sorted(set(ASSETS.values()))}
    ready = {
        "tags": ["operations"],
        "summary": "Readiness: the database answers at the code's migration and the ingest writer runs",
        "responses": {
            "200": {"description": "Ready", "content": {JSON: {"schema": health}}},
            "503": {"description": "Not ready; the body says what is wrong", "content": {JSON: {"schema": health}}},
        },
    }
    return {
        ("GET", "/livez"): {
            "tags": ["operations"],
            "summary": "Liveness: the process answers (nothing else is checked)",
            "responses": {"200": {"description": "Alive", "content": {JSON: {"schema": alive}}}},
        },
        ("GET", "/readyz"): ready,
        ("GET", "/healthz"): {**ready, "summary": "The same as /readyz (kept for existing probes)"},
        ("GET", "/metrics"): {
            "tags": ["operations"],
            "summary": "Prometheus metrics (of every worker under --workers N)",
            "responses": text("text/plain", "Prometheus text exposition"),
        },
        ("GET", "/openapi.json"): {
            "tags": ["docs"],
            "summary": "This OpenAPI document",
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {JSON: {"schema": {"type": "object"}}}}},
        },
        ("GET", "/docs"): {"tags": ["docs"], "summary": "The API's docs page", "responses": text("text/html", "HTML")},
        ("GET", "/docs/init.js"): {
            "tags": ["docs"],
            "summary": "The docs page's start-up script",
            "responses": text("text/javascript", "JavaScript"),
        },
        ("GET", "/docs/static/{name}"): {
            "tags": ["docs"],
            "summary": "A Swagger UI asset, from the installed package",
            "parameters": [asset],
            "responses": {"200": {"description": "The file", "content": asset_types}, **error_responses(ref, (404,))},
        },
    }
