"""The web portal: server-rendered pages for residents and the management dashboard.

`setup(app)` wires it into the gateway: templates (Jinja, autoescaped), cookie sessions, the
login rate limiter and the routes. For portal paths only, the gateway's middleware hands the
request to `portal_reply`, which loads the session and turns every error into an HTML page (the
JSON error envelope never sees them; other paths, such as the ingest hot path, skip the portal
entirely).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import session_middleware

from gateway.app_keys import SETTINGS
from gateway.compression import StaticAsset
from gateway.portal import access, dashboard, prepaid_dashboard, resident, site_month
from gateway.portal import statement as statement_pages
from gateway.portal.ratelimit import AddressLimiter, ClaimGuesses, UnknownLogins
from gateway.portal.render import environment_options, error_page
from gateway.portal.sessions import COOKIE_NAME, SECURE_COOKIE_NAME, cookie_storage, unreadable_cookie
from storage.errors import DomainError, NotFound

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SESSIONS = web.AppKey("portal_sessions", Callable[[web.Request, Handler], Awaitable[web.StreamResponse]])
STATIC = Path(__file__).parent / "static"
# plotly.js-basic-dist-min 4.1.1 from npm (MIT, licence beside it): the same plotly.js version as
# the full bundle of the `plotly` package, built with only the trace types the portal draws.
PLOTLY_BASIC = STATIC / "vendor" / "plotly-basic.min.js"
PORTAL_PREFIXES = ("/register", "/profile", "/management-dashboard", "/logout", "/portal/")
ERROR_STATUS = {"invalid": 400, "unauthorized": 401, "forbidden": 403, "not_found": 404, "conflict": 409}
# Scripts and styles only from this gateway; Plotly adds <style> elements, hence 'unsafe-inline'
# for styles (scripts stay strict). Forms post only here; no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def is_portal_path(path: str) -> bool:
    """True for the portal's pages and files."""
    return path in ("/", "/favicon.ico") or path.startswith(PORTAL_PREFIXES)


def setup(app: web.Application) -> None:
    """Add the portal to the gateway app (called by `create_app`)."""
    aiohttp_jinja2.setup(app, **environment_options())
    app[SESSIONS] = session_middleware(cookie_storage(app[SETTINGS]))
    app[access.ADDRESSES] = AddressLimiter()
    app[access.CLAIMS] = ClaimGuesses()
    app[access.UNKNOWN] = UnknownLogins()
    app.add_routes(access.routes)  # first: /profile/password before /profile/{meter_id}
    app.add_routes(resident.routes)
    app.add_routes(statement_pages.routes)
    app.add_routes(dashboard.routes)
    app.add_routes(prepaid_dashboard.routes)
    app.add_routes(site_month.routes)
    app.router.add_get("/portal/static/plotly.min.js", plotly_js)
    app.router.add_get("/portal/static/{name:portal\\.(?:css|js)}", portal_asset)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_static("/portal/static/", STATIC)


async def portal_reply(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A portal path's reply: its session loaded, every error it raises as an HTML page
    (`gateway.middleware` calls this for paths `is_portal_path` names, and only for those)."""

    async def html_errors(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            # aiohttp's default text is "404: Not Found": the page then says it in its own words.
            default = not exc.text or exc.text.startswith(f"{exc.status}:")
            page = await error_page(request, exc.status, "" if default else exc.text)
            for name in ("Retry-After", "Allow"):
                if name in exc.headers:
                    page.headers[name] = exc.headers[name]
            return page
        except NotFound:
            return await error_page(request, 404, "There is nothing here.")
        except DomainError as error:
            return await error_page(request, ERROR_STATUS.get(error.kind, 400), error.message)

    if unreadable_cookie(request):  # ours are ASCII; anything else is refused, and cleared
        return unreadable_cookie_page()
    response = await request.app[SESSIONS](request, html_errors)
    response.headers.update(SECURITY_HEADERS)
    return response


def unreadable_cookie_page() -> web.Response:
    """400 for a session cookie holding bytes we never send; the reply clears it, so a reload works."""
    response = web.Response(
        status=400,
        content_type="text/html",
        text="<!doctype html><title>Bad cookie · Meter portal</title><p>Your browser sent a portal cookie this "
        'site cannot read. It has been cleared: <a href="/">start again</a>.</p>',
        headers={"Cache-Control": "no-store", **SECURITY_HEADERS},
    )
    for name in (COOKIE_NAME, SECURE_COOKIE_NAME):
        response.del_cookie(name, path="/", secure=name == SECURE_COOKIE_NAME)
    return response


async def plotly_js(request: web.Request) -> web.StreamResponse:
    """Plotly.js, the partial "basic" bundle (bar and scatter traces, all the pages draw: 395 kB on
    the wire instead of the full bundle's 1.47 MB), gzipped once; no CDN, the portal works offline."""
    return await _plotly_asset().response(request)


async def portal_asset(request: web.Request) -> web.StreamResponse:
    """The portal's own stylesheet and script, gzipped once."""
    return await _portal_asset(request.match_info["name"]).response(request)


@functools.cache
def _portal_asset(name: str) -> StaticAsset:
    return StaticAsset(STATIC / name, "text/css" if name.endswith(".css") else "application/javascript")


@functools.cache
def _plotly_asset() -> StaticAsset:
    return StaticAsset(PLOTLY_BASIC, "application/javascript")


async def favicon(request: web.Request) -> web.FileResponse:
    """The portal's icon where browsers look for it unasked (an SVG: every current browser draws it)."""
    return web.FileResponse(
        STATIC / "favicon.svg", headers={"Content-Type": "image/svg+xml", "Cache-Control": "public, max-age=86400"}
    )
