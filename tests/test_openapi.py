"""The committed spec is what the code generates, covers every route, and is served with its docs."""

from __future__ import annotations

import pytest
import yaml
from aiohttp import web
from openapi_spec_validator import OpenAPIV31SpecValidator

from gateway.app import create_app
from gateway.settings import Settings
from openapi import factech_ops
from openapi.__main__ import SPEC_PATH
from openapi.build import MissingSpec, build_spec, render
from schemas import factech_envelopes

COMMITTED = SPEC_PATH.read_text("utf-8")


@pytest.fixture(scope="module")
def spec() -> dict:
    return build_spec()


def test_committed_spec_is_what_the_code_generates(spec: dict) -> None:
    assert SPEC_PATH.read_text("utf-8") == render(spec), "openapi/openapi.yaml is stale: run `make openapi`"


def test_the_committed_spec_passes_a_standard_openapi_3_1_validator() -> None:
    """What code generators and API gateways check first (openapi-spec-validator, every error listed)."""
    errors = [error.message for error in OpenAPIV31SpecValidator(yaml.safe_load(COMMITTED)).iter_errors()]
    assert errors == []


def test_nullable_fields_are_nullable_the_3_1_way(spec: dict) -> None:
    """A field that may be null says so with the type "null" (3.1 has no `nullable`), and a
    default of null is allowed by its own schema."""
    bodies = spec["components"]["schemas"]
    assert bodies["MeterChangeCreate"]["properties"]["reading_start_date"]["type"] == ["string", "null"]
    assert bodies["MeterOut"]["properties"]["retired_at"]["type"] == ["string", "null"]
    assert "nullable" not in COMMITTED


def test_a_route_without_a_spec_entry_is_refused() -> None:
    app = create_app(Settings())

    async def undocumented(_request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/api/v1/undocumented", undocumented)
    with pytest.raises(MissingSpec, match="GET /api/v1/undocumented"):
        build_spec(app)


def test_every_factech_call_of_the_app_is_an_operation(spec: dict) -> None:
    operation_ids = {op.get("operationId") for path in spec["paths"].values() for op in path.values()}
    app = create_app(Settings())
    calls = {
        route.handler.FACTECH_CALL.number for route in app.router.routes() if hasattr(route.handler, "FACTECH_CALL")
    }
    assert calls >= {1, 2, 5, 10, 11, 12, 13}
    assert {f"call{n}" for n in calls} <= operation_ids


def test_error_examples_are_the_documents_own(spec: dict) -> None:
    """The Factech document's error envelopes, verbatim, as rendered for the spec."""
    assert factech_ops.error_body(factech_envelopes.SITE_READINGS, 404) == {
        "status": "error",
        "message": "Not Found",
        "count": "0",
        "data": None,
    }
    assert factech_ops.error_body(factech_envelopes.METER_CHANGES, 404) == {
        "status": "Error",
        "message": "Not Details",
        "count": "0",
        "data": None,
    }
    assert factech_ops.error_body(factech_envelopes.DG_READING, 404) == {
        "status": "Error",
        "message": "Not Found",
        "data": None,
    }
    ok = spec["paths"]["/api/v1/dg/status"]["get"]["responses"]["200"]["content"]["application/json"]
    assert ok["example"]["message"] == "DG Status" and ok["schema"]["properties"]["message"]["const"] == "DG Status"


def test_the_portal_is_left_out_on_purpose(spec: dict) -> None:
    assert not [path for path in spec["paths"] if path.startswith(("/profile", "/register", "/management"))]
    assert "Not listed: the web portal" in spec["info"]["description"]


async def test_spec_and_docs_are_served_from_the_package(aiohttp_client, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    client = await aiohttp_client(create_app(Settings(database_url=sqlite_url)))
    response = await client.get("/openapi.json")
    assert response.status == 200
    assert await response.json() == yaml.safe_load(COMMITTED)
    page = await client.get("/docs")
    assert page.status == 200 and "/docs/static/swagger-ui-bundle.js" in await page.text()
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    for name in ("swagger-ui-bundle.js", "swagger-ui.css"):
        asset = await client.get(f"/docs/static/{name}")
        assert asset.status == 200 and len(await asset.read()) > 10_000
    assert (await client.get("/docs/static/../../setup.cfg")).status == 404
    assert (await client.get("/docs/static/swagger-editor.js")).status == 404
