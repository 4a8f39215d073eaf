"""The spec of the routes other than the Factech calls: ingest, admin, reports, operations, docs.

Keyed by (method, path) as the app's router spells them; `openapi.build` refuses to write a spec
while a route of the app has no entry here (or in the Factech calls). Request bodies are the
marshmallow schemas the handlers load; replies are the schemas they dump, in the admin API's
`{"status": "success", "message", "data"}` envelope.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marshmallow import Schema

from gateway.docs import ASSETS
from openapi.fields import PRINTABLE
from schemas import admin as wire
from schemas import packets

Ref = Callable[[type[Schema] | Schema], dict[str, Any]]  # registers a schema, answers its $ref
Extend = Callable[[type[Schema], str, dict[str, Any]], dict[str, Any]]  # a schema plus properties → $ref
JSON = "application/json"
API_KEY = [{"ApiKey": []}]
INGEST = [{"IngestBearer": []}]

PLAIN_ERROR = {
    "type": "object",
    "required": ["status", "message"],
    "properties": {
        "status": {"const": "error"},
        "message": {"type": "string"},
        "errors": {"type": "object", "description": "field → reasons", "additionalProperties": True},
    },
    "additionalProperties": False,
}
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


def error_responses(statuses: tuple[int, ...]) -> dict[str, Any]:
    """The plain error envelope for each status."""
    responses: dict[str, Any] = {}
    for status in statuses:
        response: dict[str, Any] = {"description": ERROR_TEXT[status], "content": {JSON: {"schema": PLAIN_ERROR}}}
        if status == 503:
            response["headers"] = RETRY_AFTER
        responses[str(status)] = response
    return responses


def admin_ok(message: str, data: dict[str, Any], status: int = 200) -> dict[str, Any]:
    """The admin API's success envelope around `data`."""
    schema = {
        "type": "object",
        "required": ["status", "message", "data"],
        "properties": {"status": {"const": "success"}, "message": {"const": message}, "data": data},
        "additionalProperties": False,
    }
    return {str(status): {"description": message, "content": {JSON: {"schema": schema}}}}


def body(schema: Any, *, form: bool = True) -> dict[str, Any]:
    """A required request body: JSON, and a form body where the handler reads one too."""
    content = {JSON: {"schema": schema}}
    if form:
        content["application/x-www-form-urlencoded"] = {"schema": schema}
    return {"required": True, "content": content}


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
    rejected_item = {
        "type": "object",
        "required": ["index", "id", "errors"],
        "properties": {
            "index": {"type": "integer", "minimum": 0},
            "id": {"description": "The packet's `id` as sent (null when it had none)"},
            "errors": {"type": "object", "additionalProperties": True},
        },
        "additionalProperties": False,
    }
    batch = {
        "type": "object",
        "required": ["status", "message", "data"],
        "properties": {
            "status": {"enum": ["success", "partial", "error"]},
            "message": {"type": "string"},
            "data": {
                "type": "object",
                "required": ["accepted", "duplicates", "rejected"],
                "properties": {
                    "accepted": {"type": "integer", "minimum": 0},
                    "duplicates": {"type": "integer", "minimum": 0},
                    "rejected": {"type": "array", "items": rejected_item},
                },
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    }
    stored = {
        "type": "object",
        "required": ["status", "message", "data"],
        "properties": {
            "status": {"const": "success"},
            "message": {"enum": ["Reading stored", "Duplicate reading"]},
            "data": {
                "type": "object",
                "required": ["id", "interval_start", "duplicate"],
                "properties": {
                    "id": {"type": "integer"},
                    "interval_start": {"type": "string", "format": "date-time"},
                    "duplicate": {"type": "boolean"},
                },
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    }
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
            "the meter's site (`GATEWAY_INGEST_AUTH=off` accepts meters without one)."
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
                    "content": {JSON: {"schema": {"oneOf": [PLAIN_ERROR, batch]}}}},
            **error_responses((401, 403, 404, 409, 413, 503)),
        },
    }  # fmt: skip
    dg_reply = {
        "type": "object",
        "required": ["status", "message", "data"],
        "properties": {
            "status": {"const": "success"},
            "message": {"const": "DG state stored"},
            "data": {
                "type": "object",
                "required": ["site_id", "dg_number", "status_changed"],
                "properties": {
                    "site_id": {"type": "string"},
                    "dg_number": {"type": "string"},
                    "status_changed": {"type": "boolean"},
                },
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    }
    dg = {
        "tags": ["ingest"],
        "summary": "Post a DG controller's status, fuel and energy register",
        "description": "API key with role `ingest`. `reading_kWh` is the DG energy meter's cumulative register.",
        "security": INGEST,
        "requestBody": body(ref(packets.DgPacket), form=False),
        "responses": {
            "200": {"description": "Stored", "content": {JSON: {"schema": dg_reply}}},
            **error_responses((400, 401, 403, 404, 413)),
        },
    }
    return {("POST", "/meter"): meter, ("POST", "/dg"): dg}


def admin_ops(ref: Ref, extend: Extend) -> dict[tuple[str, str], dict[str, Any]]:
    """The admin API (`/api/v1/admin/...`, role `admin`)."""

    def op(summary: str, responses: dict[str, Any], errors: tuple[int, ...], **rest: Any) -> dict[str, Any]:
        if rest.get("parameters") and 400 not in errors:  # a malformed id in the path is refused with 400
            errors = (400, *errors)
        return {
            "tags": ["admin"],
            "summary": summary,
            "security": API_KEY,
            **rest,
            "responses": {**responses, **error_responses(errors)},
        }

    site, meter, dg = ref(wire.SiteOut), ref(wire.MeterOut), ref(wire.DgOut)
    key, event = ref(wire.KeyOut), ref(wire.DgEventOut)
    many = lambda schema: {"type": "array", "items": schema}  # noqa: E731
    # Replies that create a secret show it this once, beside the record.
    token = {"type": "string", "description": "The device token: shown in this reply only"}
    secret = {"type": "string", "description": "The API key: shown in this reply only"}
    meter_token = extend(wire.MeterOut, "MeterOutWithToken", {"token": token})
    change_token = extend(wire.MeterChangeOut, "MeterChangeOutWithToken", {"token": token})
    key_secret = extend(wire.KeyOut, "KeyOutWithKey", {"key": secret})
    # At least one field to change (an empty body is refused).
    site_edit, meter_edit = extend(wire.SiteEdit, "SiteEdit", {}), extend(wire.MeterEdit, "MeterEdit", {})
    base = "/api/v1/admin"
    return {
        ("POST", f"{base}/sites"): op(
            "Register a site (admin key for `*`)",
            links(201, admin_ok("Site created", site, 201),
                  GetSite=("GET", f"{base}/sites/{{site_id}}", {"site_id": "$response.body#/data/site_id"}),
                  EditSite=("PATCH", f"{base}/sites/{{site_id}}", {"site_id": "$response.body#/data/site_id"}),
                  AddMeter=("POST", f"{base}/sites/{{site_id}}/meters", {"site_id": "$response.body#/data/site_id"}),
                  AddDg=("POST", f"{base}/sites/{{site_id}}/dgs", {"site_id": "$response.body#/data/site_id"})),
            (*ADMIN_ERRORS, 409),
            requestBody=body(ref(wire.SiteCreate))),
        ("GET", f"{base}/sites"): op("The key's sites", admin_ok("Sites", many(site)), (401, 403)),
        ("GET", f"{base}/sites/{{site_id}}"): op("One site", admin_ok("Site", site), ADMIN_READ_ERRORS,
                                                 parameters=[SITE_ID]),
        ("PATCH", f"{base}/sites/{{site_id}}"): op(
            "Change a site's name, region, tariffs or auto_cut", admin_ok("Site updated", site), ADMIN_ERRORS,
            parameters=[SITE_ID], requestBody=body(site_edit)),
        ("POST", f"{base}/sites/{{site_id}}/meters"): op(
            "Register a meter",
            links(201, admin_ok("Meter created", meter_token, 201),
                  GetMeter=("GET", f"{base}/meters/{{meter_no}}", {"meter_no": "$response.body#/data/meter_no"}),
                  EditMeter=("PATCH", f"{base}/meters/{{meter_no}}", {"meter_no": "$response.body#/data/meter_no"}),
                  RetireMeter=("POST", f"{base}/meters/{{meter_no}}/retire",
                               {"meter_no": "$response.body#/data/meter_no"})),
            (*ADMIN_ERRORS, 409), parameters=[SITE_ID], requestBody=body(ref(wire.MeterCreate))),
        ("GET", f"{base}/sites/{{site_id}}/meters"): op(
            "The site's meters, retired ones included", admin_ok("Meters", many(meter)), ADMIN_READ_ERRORS,
            parameters=[SITE_ID]),
        ("GET", f"{base}/meters/{{meter_no}}"): op("One meter", admin_ok("Meter", meter), (400, *ADMIN_READ_ERRORS),
                                                  parameters=[METER_NO]),
        ("PATCH", f"{base}/meters/{{meter_no}}"): op(
            "Change a meter's consumer details", admin_ok("Meter updated", meter), ADMIN_ERRORS,
            parameters=[METER_NO], requestBody=body(meter_edit)),
        ("POST", f"{base}/meters/{{meter_no}}/retire"): op(
            "Take a meter out of service", admin_ok("Meter retired", meter), (*ADMIN_ERRORS, 409),
            parameters=[METER_NO]),
        ("GET", f"{base}/meters/{{meter_no}}/ledger"): op(
            "A meter's ledger entries, oldest first, and whether its balance adds up",
            admin_ok("Ledger", {
                "type": "object",
                "required": ["meter_no", "check", "entries"],
                "properties": {"meter_no": {"type": "string"}, "check": ref(wire.LedgerCheckOut),
                               "entries": many(ref(wire.LedgerEntryOut))},
                "additionalProperties": False,
            }),
            (400, *ADMIN_READ_ERRORS), parameters=[METER_NO]),
        ("POST", f"{base}/meters/{{meter_no}}/adjustments"): op(
            "Correct a meter's balance by a signed amount, with a reason",
            admin_ok("Balance adjusted", ref(wire.LedgerEntryOut), 201), (*ADMIN_ERRORS, 409),
            parameters=[METER_NO], requestBody=body(ref(wire.AdjustmentCreate))),
        ("POST", f"{base}/meter-changes"): op(
            "Replace a meter", admin_ok("Meter replaced", change_token, 201),
            (*ADMIN_ERRORS, 409), requestBody=body(ref(wire.MeterChangeCreate))),
        ("POST", f"{base}/sites/{{site_id}}/dgs"): op(
            "Register a diesel generator", admin_ok("DG created", dg, 201), (*ADMIN_ERRORS, 409),
            parameters=[SITE_ID], requestBody=body(ref(wire.DgCreate))),
        ("GET", f"{base}/sites/{{site_id}}/dgs"): op("The site's DGs", admin_ok("DGs", many(dg)), ADMIN_READ_ERRORS,
                                                    parameters=[SITE_ID]),
        ("GET", f"{base}/sites/{{site_id}}/dgs/{{dg_number}}/deliveries"): op(
            "The DG's latest 100 callback events, each with every attempt",
            admin_ok("DG callback deliveries", many(ref(wire.DgDeliveryOut))), ADMIN_READ_ERRORS,
            parameters=[SITE_ID, DG_NUMBER]),
        ("POST", f"{base}/sites/{{site_id}}/dgs/{{dg_number}}/deliveries/{{event_id}}/redeliver"): op(
            "Send a callback event again now", admin_ok("Redelivery queued", event, 202), ADMIN_READ_ERRORS,
            parameters=[SITE_ID, DG_NUMBER, EVENT_ID]),
        ("POST", f"{base}/keys"): op(
            "Create an API key",
            links(201, admin_ok("Key created", key_secret, 201),
                  RotateKey=("POST", f"{base}/keys/{{name}}/rotate", {"name": "$response.body#/data/name"}),
                  RevokeKey=("POST", f"{base}/keys/{{name}}/revoke", {"name": "$response.body#/data/name"})),
            (*ADMIN_ERRORS, 409),
            # JSON only: `sites` is a list, which a form body cannot carry.
            requestBody=body(ref(wire.KeyCreate), form=False)),
        ("GET", f"{base}/keys"): op("Keys within the caller's sites (never secrets)", admin_ok("Keys", many(key)),
                                    (401, 403)),
        ("POST", f"{base}/keys/{{name}}/revoke"): op("Revoke a key", admin_ok("Key revoked", key),
                                                     (*ADMIN_READ_ERRORS, 409), parameters=[KEY_NAME]),
        ("POST", f"{base}/keys/{{name}}/rotate"): op(
            "Give a key a new secret", admin_ok("Key rotated", key_secret),
            (*ADMIN_READ_ERRORS, 409), parameters=[KEY_NAME]),
    }  # fmt: skip


def report_ops() -> dict[tuple[str, str], dict[str, Any]]:
    """The admin reports on days."""
    site_q = {
        "in": "query",
        "name": "site_id",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "pattern": PRINTABLE},
    }
    today = {
        "type": "object",
        "description": 'meter number → {seed label "HH:MM" → kWh}',
        "additionalProperties": {"type": "object", "additionalProperties": {"type": "number"}},
    }
    gaps = {
        "type": "object",
        "required": ["site_id", "day", "timezone", "intervals_expected", "rolled_at", "meters"],
        "properties": {
            "site_id": {"type": "string"},
            "day": {"type": "string", "format": "date"},
            "timezone": {"type": "string"},
            "intervals_expected": {"type": "integer"},
            "rolled_at": {"type": "string", "format": "date-time"},
            "meters": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["meter_no", "intervals", "missing"],
                    "properties": {
                        "meter_no": {"type": "string"},
                        "intervals": {"type": "integer"},
                        "missing": {"type": "integer"},
                    },
                    "additionalProperties": False,
                },
            },
        },
        "additionalProperties": False,
    }
    day_q = {"in": "query", "name": "day", "required": True, "schema": {"type": "string", "format": "date"}}
    return {
        ("GET", "/api/v1/admin/today"): {
            "tags": ["reports"],
            "summary": "The site's current local day as the seed's daily structure",
            "security": API_KEY,
            "parameters": [site_q],
            "responses": {
                "200": {"description": "Every active meter", "content": {JSON: {"schema": today}}},
                **error_responses((400, 401, 403, 404)),
            },
        },
        ("GET", "/api/v1/admin/gaps"): {
            "tags": ["reports"],
            "summary": "Meters with fewer intervals than an ended day has",
            "security": API_KEY,
            "parameters": [site_q, day_q],
            "responses": {
                "200": {"description": "The gaps", "content": {JSON: {"schema": gaps}}},
                **error_responses((400, 401, 403, 404)),
            },
        },
    }


def ops_and_docs() -> dict[tuple[str, str], dict[str, Any]]:
    """Health, metrics, and this very document."""
    health = {
        "type": "object",
        "required": ["status", "version", "database"],
        "properties": {
            "status": {"enum": ["ok", "error"]},
            "version": {"type": "string"},
            "database": {"type": "string"},
            "database_ms": {"type": "number"},
            "migration": {"type": "string", "description": "Present when the schema is not the code's"},
            "writer": {"enum": ["stopped"], "description": "Present when the ingest writer is not running"},
        },
        "additionalProperties": False,
    }
    alive = {
        "type": "object",
        "required": ["status", "version"],
        "properties": {"status": {"enum": ["ok"]}, "version": {"type": "string"}},
        "additionalProperties": False,
    }
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
            "responses": text("application/javascript", "JavaScript"),
        },
        ("GET", "/docs/static/{name}"): {
            "tags": ["docs"],
            "summary": "A Swagger UI asset, from the installed package",
            "parameters": [asset],
            "responses": {"200": {"description": "The file", "content": asset_types}, **error_responses((404,))},
        },
    }
