"""Factech calls that act through the head-end: recharge (3, 4), start/stop (6, 7), status (8), load (9).

Thin like the read side (`gateway.factech_reads`): parse, check the key's site, hand over to one
operation, map the result. Head-end outcomes that are not a success become domain errors here,
with the document's words: "Meter not Accessible" (504 unreachable, 502 no usable answer), a
refusal (422), "Meter was already STARTED/STOPPED" (409).
"""

from __future__ import annotations

from aiohttp import web

from adapters import factech, operations
from adapters.headend import Outcome, Result
from gateway.api import request_inputs
from gateway.app_keys import CLOCK, DB, DISPATCHER, HEADEND, SETTINGS
from gateway.audit import record_change
from gateway.auth import Principal
from gateway.factech_reads import factech_call
from schemas import factech_envelopes
from schemas.factech_requests import LoadRequest, RechargeRequest, RechargeStatusQuery, SiteMeterQuery, idempotency_key
from storage.errors import Conflict, HeadEndFailed, HeadEndUnreachable, NotFound, Refused
from storage.money import command_log, recharge

routes = web.RouteTableDef()

NOT_ACCESSIBLE = "Meter not Accessible"
METER_NOT_FOUND = "Meter not Found"  # the same words for an unknown meter and another site's


def raise_unless_applied(result: Result, refused: str) -> None:
    """The head-end's answer as the caller's error, unless it did the thing."""
    if result.outcome is Outcome.UNREACHABLE:
        raise HeadEndUnreachable(NOT_ACCESSIBLE)
    if result.outcome is Outcome.REFUSED:
        raise Refused(refused)
    if not result.applied:
        raise HeadEndFailed(NOT_ACCESSIBLE)


@routes.post("/api/v1/meter/recharge")
@factech_call(factech_envelopes.RECHARGE, role="operate")
async def recharge_meter(request: web.Request, principal: Principal) -> factech_envelopes.Reply:
    """Call 3: credit a prepaid meter; `Idempotency-Key` makes a retry answer the first request."""
    key = idempotency_key(request.headers.get("Idempotency-Key"))
    args = RechargeRequest(maximum=request.app[SETTINGS].recharge_max).load(await request_inputs(request))
    principal.check_site(args["site_id"], NotFound(METER_NOT_FOUND))
    app = request.app
    view = await operations.recharge(
        app[DB], app[HEADEND], app[CLOCK], client=principal.name, idempotency_key=key, **args
    )
    reply = factech.recharged(view)  # a refusal raises here: only credits applied or waiting are audited
    await record_change(
        request,
        "meter.recharge",
        site_id=args["site_id"],
        target=args["meter_no"],
        details={
            "amount": args["amount"],
            "transaction_id": view.recharge.transaction_id,
            "state": view.recharge.state,
            "idempotency_key": key,
        },
    )
    if view.recharge.state == "success":
        app[DISPATCHER].kick()  # a restore it queued goes out now, not at the dispatcher's next tick
    return reply


@routes.get("/api/v1/meter/recharge-status")
@factech_call(factech_envelopes.RECHARGE_STATUS, role="read")
async def recharge_status(request: web.Request, principal: Principal) -> factech_envelopes.Reply:
    """Call 4: a recharge's state by transaction id."""
    args = RechargeStatusQuery().load(request.query)
    principal.check_site(args["site_id"], NotFound(recharge.NO_SUCH_RECORD))
    view = await recharge.recharge_view(request.app[DB], transaction_id=args["transaction_id"], site_id=args["site_id"])
    return factech.recharge_status(view)


async def _command(
    request: web.Request, principal: Principal, call: factech_envelopes.Call, action: str, refused: str
) -> factech_envelopes.Reply:
    inputs = await request_inputs(request)
    args = (LoadRequest() if action == "load" else SiteMeterQuery()).load(inputs)
    principal.check_site(args["site_id"], NotFound(METER_NOT_FOUND))
    params = {"load_dg": str(args["load_dg"]), "load_grid": str(args["load_grid"])} if action == "load" else {}
    db, clock = request.app[DB], request.app[CLOCK]
    opened = await command_log.open_command(
        db,
        site_id=args["site_id"],
        meter_no=args["meter_no"],
        action=action,
        params=params,
        reason=f"call {call.number} by {principal.name}",
        now=clock.now(),
    )
    _sent, result = await operations.send_command(db, request.app[HEADEND], opened.command, clock)
    raise_unless_applied(result, refused)
    if action in command_log.RELAY_ACTIONS and result.changed is False:
        # The head-end knew better than our record: it already was so (the record now agrees).
        raise Conflict(command_log.ALREADY[command_log.RELAY_ACTIONS[action]])
    await record_change(request, f"meter.{action}", site_id=args["site_id"], target=args["meter_no"], details=params)
    return factech.meter_command(call, unit_no=opened.unit_no, meter_no=args["meter_no"])


@routes.post("/api/v1/meter/start")
@factech_call(factech_envelopes.START_METER, role="operate")
async def start_meter(request: web.Request, principal: Principal) -> factech_envelopes.Reply:
    """Call 6: connect the meter's supply."""
    return await _command(request, principal, factech_envelopes.START_METER, "start", "Meter was not STARTED")


@routes.post("/api/v1/meter/stop")
@factech_call(factech_envelopes.STOP_METER, role="operate")
async def stop_meter(request: web.Request, principal: Principal) -> factech_envelopes.Reply:
    """Call 7: cut the meter's supply."""
    return await _command(request, principal, factech_envelopes.STOP_METER, "stop", "Meter was not STOPPED")


@routes.post("/api/v1/meter/load")
@factech_call(factech_envelopes.UPDATE_LOAD, role="operate")
async def update_load(request: web.Request, principal: Principal) -> factech_envelopes.Reply:
    """Call 9: set the sanctioned DG and grid loads (kW)."""
    return await _command(request, principal, factech_envelopes.UPDATE_LOAD, "load", "Meter Load was not updated")


@routes.get("/api/v1/meter/status")
@factech_call(factech_envelopes.METER_STATUS, role="read")
async def meter_status(request: web.Request, principal: Principal) -> factech_envelopes.Reply:
    """Call 8: ask the head-end for the relay now, and record what it says."""
    args = SiteMeterQuery().load(request.query)
    principal.check_site(args["site_id"], NotFound(METER_NOT_FOUND))
    db = request.app[DB]
    meter = await command_log.site_meter(db, site_id=args["site_id"], meter_no=args["meter_no"])
    result = await request.app[HEADEND].meter_status(meter.meter_no)
    raise_unless_applied(result, NOT_ACCESSIBLE)
    assert result.relay_on is not None
    await command_log.record_status(
        db, meter_no=meter.meter_no, relay_on=result.relay_on, load_dg=result.load_dg, load_grid=result.load_grid
    )
    return factech.meter_status(unit_no=meter.unit_no, meter_no=meter.meter_no, relay_on=result.relay_on)
