"""The API's contract, served: `/openapi.json` and a readable page at `/docs`.

The spec is the committed `openapi/openapi.yaml`, read as data from the installed package: the
gateway never imports the generator (`openapi` imports the gateway to build it). The page is
Swagger UI, its assets served from the installed `swagger-ui-py` package, so it works with no
internet and nothing from a CDN.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import web

from gateway.compression import StaticAsset

routes = web.RouteTableDef()

# The few Swagger UI files the page needs, and their content types (nothing else is served).
ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",  # RFC 9239: application/javascript is obsolete
    "favicon-32x32.png": "image/png",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}
PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Meter gateway API</title>
  <link rel="icon" type="image/png" href="/docs/static/favicon-32x32.png">
  <link rel="stylesheet" href="/docs/static/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/static/swagger-ui-bundle.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
"""
# An external script, not an inline one: the page's CSP allows scripts from this origin only.
INIT_JS = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    docExpansion: "none",
    tryItOutEnabled: false,
  });
};
"""


def _package_dir(name: str) -> Path:
    """An installed package's folder, found without importing the package."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def spec_json() -> bytes:
    """The committed spec as JSON bytes (parsed once per process)."""
    document: dict[str, Any] = yaml.safe_load((_package_dir("openapi") / "openapi.yaml").read_text("utf-8"))
    return orjson.dumps(document)


@routes.get("/openapi.json")
async def openapi_json(_request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of this gateway."""
    return web.Response(body=spec_json(), content_type="application/json")


@routes.get("/docs")
async def docs_page(_request: web.Request) -> web.Response:
    """A readable page of the API (Swagger UI)."""
    return web.Response(text=PAGE, content_type="text/html", headers=SECURITY_HEADERS)


@routes.get("/docs/init.js")
async def docs_init(_request: web.Request) -> web.Response:
    """The page's start-up script: load `/openapi.json`."""
    return web.Response(text=INIT_JS, content_type="text/javascript")


@routes.get("/docs/static/{name}")
async def docs_asset(request: web.Request) -> web.StreamResponse:
    """One of the Swagger UI files, from the installed package."""
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return await _asset(name).response(request)


@functools.cache
def _asset(name: str) -> StaticAsset:
    return StaticAsset(_package_dir("swagger_ui") / "static" / name, ASSETS[name])
