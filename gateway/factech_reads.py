"""Factech API routes (iSocietyManager's third-party meter integration): reads and call 11.

Each handler is thin: authenticate, parse with the call's schema, call one store function,
check the object's site against the key, hand the result to the mapping in `adapters.factech`.
Errors are raised, never built here: `factech_call` gives each route its call's
`ERROR_RENDERER`, so the error middleware answers in that call's envelope.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from aiohttp import web

from adapters import factech
from adapters.webhooks import check_target
from gateway.api import authenticated, json_reply, request_inputs
from gateway.app_keys import CLOCK, DB, SETTINGS
from gateway.audit import record_change
from gateway.auth import Principal
from schemas import factech_envelopes
from schemas.dg_callback import new_secret
from schemas.factech_requests import DgQuery, DgSensingInput, MeterChangesQuery, MeterQuery, SiteQuery
from storage.dg import dg_events
from storage.errors import DomainError, NotFound
from storage.reads import latest
from storage.registry import meter_changes

routes = web.RouteTableDef()
NOT_FOUND = "Not Found"  # the document's words for an unknown object, and for another site's

CallHandler = Callable[[web.Request, Principal], Awaitable[factech_envelopes.Reply]]


def respond(reply: factech_envelopes.Reply) -> web.Response:
    """Send a mapped reply."""
    return json_reply(reply.body, reply.status, reply.headers or None)


def render_call_error(
    call: factech_envelopes.Call, _request: web.Request, error: DomainError, status: int
) -> web.Response:
    """The error middleware's hook: a domain error in this call's envelope."""
    retry_after = getattr(error, "retry_after", None)
    reply = factech_envelopes.error_reply(
        call,
        kind=error.kind,
        status=status,
        reason=error.message,
        errors=error.errors,
        headers={"Retry-After": str(retry_after)} if retry_after else None,
    )
    return respond(reply)


def factech_call(
    call: factech_envelopes.Call, role: str
) -> Callable[[CallHandler], Callable[..., Awaitable[web.StreamResponse]]]:
    """Make a handler a Factech call: API key with `role`, replies and errors in the call's envelope."""

    def wrap(handler: CallHandler) -> Callable[..., Awaitable[web.StreamResponse]]:
        @authenticated(role)
        @functools.wraps(handler)
        async def endpoint(request: web.Request, principal: Principal) -> web.StreamResponse:
            return respond(await handler(request, principal))

        endpoint.ERROR_RENDERER = functools.partial(render_call_error, call)  # type: ignore[attr-defined]
        endpoint.FACTECH_CALL = call  # type: ignore[attr-defined]  # the spec generator documents the call from it
        return endpoint

    return wrap


@routes.get("/api/v1/site/readings")
@factech_call(factech_envelopes.SITE_READINGS, role="read")
async def site_readings(request: web.Request, principal: Principal) -> factech_envelopes.Reply:
    """Call 1: latest readings and balances of every active meter of a site."""
    args = SiteQuery().load(request.query)
    principal.check_site(args["site_id"], NotFound(NOT_FOUND))
    return factech.site_readings(await latest.site_meters(request.app[DB], site_id=args["site_id"]))


@routes.get("/api/v1/meter/reading")
@factech_call(factech_envelopes.METER_READING, role="read")
async def meter_reading(request: web.Request, principal: Principal) -> factech_envelopes.Reply:
    """Call 2: latest reading and balance of one meter."""
    args = MeterQuery().load(request.query)
    meter = await latest.meter_state(request.app[DB], meter_no=args["meter_no"])
    principal.check_site(meter.site_id, NotFound(NOT_FOUND))
    return factech.meter_reading(meter)


@routes.get("/api/v1/meter/changes")
@factech_call(factech_envelopes.METER_CHANGES, role="read")
async def changed_meters(request: web.Request, principal: Principal) -> factech_envelopes.Reply:
    """Call 5: meters changed between two dates (inclusive)."""
    args = MeterChangesQuery().load(request.query)
    principal.check_site(args["site_id"], NotFound(NOT_FOUND))
    changes = await meter_changes.list_meter_changes(
        request.app[DB], site_id=args["site_id"], from_date=args["from_date"], to_date=args["to_date"]
    )
    return factech.meter_changes(changes)


async def _dg(request: web.Request, principal: Principal) -> latest.DgState:
    args = DgQuery().load(request.query)
    principal.check_site(args["site_id"], NotFound(NOT_FOUND))
    return await latest.dg_state(request.app[DB], site_id=args["site_id"], dg_no=args["dg_number"])


@routes.get("/api/v1/dg/reading")
@factech_call(factech_envelopes.DG_READING, role="read")
async def dg_reading(request: web.Request, principal: Principal) -> factech_envelopes.Reply:
    """Call 10: the DG energy meter's latest register."""
    return factech.dg_reading(await _dg(request, principal))


@routes.get("/api/v1/dg/status")
@factech_call(factech_envelopes.DG_STATUS, role="read")
async def dg_status(request: web.Request, principal: Principal) -> factech_envelopes.Reply:
    """Call 12: is the DG ON or OFF."""
    return factech.dg_status(await _dg(request, principal))


@routes.get("/api/v1/dg/fuel")
@factech_call(factech_envelopes.DG_FUEL, role="read")
async def dg_fuel(request: web.Request, principal: Principal) -> factech_envelopes.Reply:
    """Call 13: fuel left in the DG."""
    return factech.dg_fuel(await _dg(request, principal))


@routes.post("/api/v1/dg/sensing")
@factech_call(factech_envelopes.DG_SENSING, role="operate")
async def dg_sensing(request: web.Request, principal: Principal) -> factech_envelopes.Reply:
    """Call 11: the URL to call back on every ON/OFF change of the DG; a new secret each time."""
    args = DgSensingInput().load(await request_inputs(request))
    principal.check_site(args["site_id"], NotFound(NOT_FOUND))
    db = request.app[DB]
    await latest.dg_state(db, site_id=args["site_id"], dg_no=args["dg_number"])  # 404 before any DNS lookup
    await check_target(args["url"], allow_private=request.app[SETTINGS].callback_allow_private)
    subscription = await dg_events.subscribe(
        db,
        site_id=args["site_id"],
        dg_no=args["dg_number"],
        url=args["url"],
        secret=new_secret(),
        now=request.app[CLOCK].now(),
    )
    await record_change(
        request, "dg.sensing", site_id=args["site_id"], target=args["dg_number"], details={"url": args["url"]}
    )
    return factech.dg_sensing(subscription)
