"""Build the OpenAPI document from the app's routes: `build_spec()` → dict, `render()` → YAML text.

Every route of `create_app` is documented or refused: a Factech call from the `Call` its handler
carries (`FACTECH_CALL`, `API_ROLE`, set by `gateway.factech_reads.factech_call`), any other route from
`openapi.other_ops`. A route with neither raises `MissingSpec`, so a new route cannot ship
undocumented. The portal's HTML pages are left out on purpose: they are a browser UI with
cookie sessions and CSRF-protected forms, not an API (listed in the spec's description).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import yaml
from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema, fields

from gateway import __version__
from gateway.app import create_app
from gateway.portal import is_portal_path
from gateway.settings import Settings
from openapi import factech_ops, other_ops
from openapi.account_ops import account_ops
from openapi.fields import PRINTABLE, PRINTABLE_NOT_BLANK, custom_field
from openapi.prepaid_ops import prepaid_ops
from openapi.statement_ops import statement_ops
from schemas import factech_envelopes

JSON = "application/json"
DESCRIPTION = """\
The meter gateway's HTTP API: meters and DG controllers post readings (`/meter`, `/dg`);
iSocietyManager calls Factech's *Third Party Meter Integration* API (`/api/v1/...`, header
`X-API-Key`); staff tools use the admin API (`/api/v1/admin/...`); operators watch `/healthz`
and `/metrics`.

Factech calls keep the document's names and envelopes: `status`, `message`, `count` where the
document has it, `data`, and `Remarks` where the document has it. GET calls read the query
string; POST calls a JSON body, a form body or the query string. Every value in `data` is a
string (kWh and money with two decimals, `date_time` as `YYYY-MM-DD HH:mm:ss` in the site's
timezone).

API keys are checked in this order: valid (401), role (403: `read` < `operate` < `admin`;
`ingest` is for devices only), site scope (404, exactly as if the object did not exist).

Not listed: the web portal's HTML pages (`/`, `/register`, `/profile...`,
`/management-dashboard/...`, `/logout`, `/portal/static/...`): a browser UI with cookie
sessions and CSRF-protected forms, not an API.
"""
TAGS = [
    {"name": "factech", "description": "iSocietyManager's Third Party Meter Integration calls"},
    {"name": "ingest", "description": "Meters, concentrators and DG controllers"},
    {"name": "admin", "description": "Staff tools: sites, meters, DGs, keys (role `admin`)"},
    {"name": "reports", "description": "Days: today's readings, gaps (role `admin`)"},
    {"name": "operations", "description": "Health and metrics"},
    {"name": "docs", "description": "This document and its page"},
]


class MissingSpec(RuntimeError):
    """Routes of the app that the spec does not describe."""


def app_routes(app: web.Application) -> list[tuple[str, str, Any]]:
    """(method, path, handler) of every API route, HEAD and the portal's pages left out."""
    found = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix", "")
        if route.method == "HEAD" or is_portal_path(path):
            continue
        found.append((route.method, path, route.handler))
    return found


class _Builder:
    """One spec being built: apispec plus the helpers that register schemas by name."""

    def __init__(self) -> None:
        self.plugin = plugin = MarshmallowPlugin()
        self.spec = APISpec(
            title="Meter gateway API",
            version=__version__,
            openapi_version="3.1.0",
            plugins=[plugin],
            info={"description": DESCRIPTION, "license": {"name": "MIT", "identifier": "MIT"}},
            tags=TAGS,
        )
        plugin.converter.add_attribute_function(custom_field)  # type: ignore[union-attr]
        self.spec.components.security_scheme(
            "ApiKey", {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "An API key"}
        )
        self.spec.components.security_scheme(
            "IngestBearer",
            {
                "type": "http",
                "scheme": "bearer",
                "description": "A meter's device token, or an API key with role `ingest`",
            },
        )

    def ref(self, schema: type[Schema] | Schema) -> dict[str, Any]:
        """Register a marshmallow schema as a component (once) and answer its `$ref`."""
        name = (schema if isinstance(schema, type) else type(schema)).__name__
        if name not in self.spec.components.schemas:
            self.spec.components.schema(name, schema=schema)
        return {"$ref": f"#/components/schemas/{name}"}

    def field(self, name: str, field: fields.Field) -> dict[str, Any]:
        """A reply that is a bare marshmallow field (a mapping, not an object with fixed keys) as a
        component `name`, and its `$ref`."""
        if name not in self.spec.components.schemas:
            self.spec.components.schema(name, self.plugin.converter.field2property(field))  # type: ignore[union-attr]
        return {"$ref": f"#/components/schemas/{name}"}

    def extend(self, schema: type[Schema], name: str, properties: dict[str, Any]) -> dict[str, Any]:
        """A component `name`: the schema's JSON Schema plus required `properties` (none: at least one
        property, for PATCH bodies). Copied, not `allOf`: the record refuses unknown keys."""
        if name not in self.spec.components.schemas:
            converted = self.plugin.converter.schema2jsonschema(schema())  # type: ignore[union-attr]
            converted["properties"] = {**converted["properties"], **properties}
            if properties:
                converted["required"] = [*converted.get("required", []), *properties]
            else:
                converted["minProperties"] = 1
            self.spec.components.schema(name, converted)
        return {"$ref": f"#/components/schemas/{name}"}

    def factech_operation(self, method: str, handler: Any) -> dict[str, Any]:
        """A Factech call's operation, from the `Call` its handler carries."""
        call: factech_envelopes.Call = handler.FACTECH_CALL
        doc = factech_ops.CALL_DOCS.get(call.number)
        if doc is None:
            raise MissingSpec(f"Factech call {call.number} has no entry in openapi.factech_ops.CALL_DOCS")
        inputs = doc.inputs()
        record = self.ref(doc.record)
        ok = factech_ops.success_schema(call, doc, record)
        example = factech_envelopes.success(call, [doc.example] if doc.many else doc.example).body
        if doc.error_on_ok:
            ok = {"oneOf": [ok, factech_ops.call4_failure_schema(call)]}
        responses: dict[str, Any] = {
            "200": {"description": call.success, "content": {JSON: {"schema": ok, "example": example}}}
        }
        if call.waiting:
            waiting = factech_ops.waiting_schema(call, record)
            responses["202"] = {"description": call.waiting, "content": {JSON: {"schema": waiting}}}
        for status in doc.errors:
            responses[str(status)] = {
                "description": factech_ops.error_body(call, status)["message"],
                "content": {
                    JSON: {
                        "schema": factech_ops.error_schema(call, status),
                        "example": factech_ops.error_body(call, status),
                    }
                },
            }
        operation: dict[str, Any] = {
            "tags": ["factech"],
            "operationId": f"call{call.number}",
            "summary": f"{call.number}. {doc.title}",
            "description": factech_ops.describe(call, doc, handler.API_ROLE),
            "security": [{"ApiKey": []}],
            "responses": responses,
        }
        if method == "GET":
            operation["parameters"] = [{"in": "query", "schema": inputs}]
        else:
            if doc.headers:
                operation["parameters"] = list(doc.headers)
            schema = self.ref(inputs)
            operation["requestBody"] = {
                "required": True,
                "description": other_ops.FORM_TOO,
                "content": {JSON: {"schema": schema}},
            }
        return operation

    def build(self, app: web.Application) -> dict[str, Any]:
        """The whole document for this app's routes."""
        others = {
            **other_ops.ingest_ops(self.ref),
            **other_ops.admin_ops(self.ref, self.extend),
            **account_ops(self.ref, self.extend),
            **prepaid_ops(self.ref),
            **statement_ops(self.ref),
            **other_ops.report_ops(self.ref, self.field),
            **other_ops.ops_and_docs(self.ref),
        }
        paths: dict[str, dict[str, Any]] = {}
        missing = []
        for method, path, handler in app_routes(app):
            if hasattr(handler, "FACTECH_CALL"):
                operation = self.factech_operation(method, handler)
            elif (method, path) in others:
                operation = others[(method, path)]
            else:
                missing.append(f"{method} {path}")
                continue
            operation.setdefault("operationId", other_ops.operation_id(method, path))
            paths.setdefault(path, {})[method.lower()] = operation
        if missing:
            raise MissingSpec("routes without a spec entry (add them to openapi/other_ops.py): " + ", ".join(missing))
        for path, operations in paths.items():
            self.spec.path(path=path, operations=operations)
        return _ascii_url_parameters(self.spec.to_dict())


# Parameters travel in the URL, where a client must percent-encode anything beyond ASCII; a raw
# byte there reaches the gateway as a Latin-1 character (a C1 control for most UTF-8 bytes) and
# is refused. The spec therefore promises printable ASCII for ids in paths and query strings.
_URL_PATTERNS = {
    PRINTABLE: r"^[\x20-\x7e]*$",
    PRINTABLE_NOT_BLANK: r"^[\x20-\x7e]*[\x21-\x7e][\x20-\x7e]*$",
}


def _ascii_url_parameters(spec: dict[str, Any]) -> dict[str, Any]:
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []) if isinstance(operation, dict) else []:
                schema = parameter.get("schema", {})
                if parameter.get("in") in ("path", "query") and schema.get("pattern") in _URL_PATTERNS:
                    schema["pattern"] = _URL_PATTERNS[schema["pattern"]]
    return spec


def build_spec(app: web.Application | None = None) -> dict[str, Any]:
    """The OpenAPI document of the gateway (built from a fresh app when none is given)."""
    return _Builder().build(app or create_app(Settings()))


def _plain(value: Any) -> Any:
    """JSON-ready values: schema defaults such as Decimal("8.00") become numbers."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Decimal):
        return float(value)
    return value


def render(spec: dict[str, Any]) -> str:
    """The document as the committed YAML text (stable key order, wide lines)."""
    spec = _plain(spec)
    header = "# Generated by `python -m openapi` from the gateway's routes and schemas: do not edit.\n"
    return header + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=120)
