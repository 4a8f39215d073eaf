"""Admin API under `/api/v1/admin/`: what the CLI does, over HTTP, for keys with role `admin`.

Everything is scoped to the key's sites: objects of other sites answer 404 as if unknown.
Creating a site, or a key for every site, needs an admin key for `*`. Replies are
`{"status": "success", "message", "data"}`; errors take the plain middleware envelope
`{"status": "error", "message", "errors"}`. Secrets (device tokens, API keys) appear only in the
reply that creates them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from marshmallow import ValidationError

from gateway.api import authenticated, json_reply, request_inputs
from gateway.app_keys import CLOCK, DB, DELIVERIES, KEYS, LEGACY, SETTINGS
from gateway.audit import record_change
from gateway.auth import Principal
from schemas import admin as wire
from schemas.fields import printable
from storage.db.models import Meter
from storage.dg import dg_events
from storage.errors import Forbidden, InvalidInput, unknown, unknown_meter
from storage.money import ledger, policy
from storage.registry import dgs, meter_changes
from storage.registry import keys as key_registry
from storage.registry import meters as meter_registry
from storage.registry import sites as site_registry

routes = web.RouteTableDef()
admin_only = authenticated("admin")


def ok(message: str, data: Any, status: int = 200) -> web.Response:
    """The admin API's success envelope."""
    return json_reply({"status": "success", "message": message, "data": data}, status)


def _require_all_sites(principal: Principal, what: str) -> None:
    if key_registry.ALL_SITES not in principal.sites:
        raise Forbidden(f"{what} needs an admin key for every site ('*')")


# Objects of other sites answer exactly as unknown ones do in the store (same message, same errors).


def _path(request: web.Request, name: str) -> str:
    """A path parameter, refused (400) if it holds control characters (PostgreSQL cannot even compare NUL)."""
    value = request.match_info[name]
    try:
        printable(value)
    except ValidationError as err:
        raise InvalidInput(f"Invalid input: {name}", {name: [str(m) for m in err.messages]}) from None
    return value


def site_in_scope(request: web.Request, principal: Principal) -> str:
    """The `{site_id}` of the path, NotFound unless the key covers it."""
    site_id = _path(request, "site_id")
    principal.check_site(site_id)
    return site_id


async def _meter_in_scope(request: web.Request, principal: Principal) -> Meter:
    meter_no = wire.MeterPath().load(request.match_info)["meter_no"]
    meter = await meter_registry.get_meter(request.app[DB], meter_no=meter_no)
    principal.check_site(meter.site_id, unknown_meter(meter_no))
    return meter


def _key_site(sites: list[str]) -> str | None:
    """The site a key's audit events belong to: its one site, or None (gateway-wide) for several or '*'."""
    return sites[0] if len(sites) == 1 and sites[0] != key_registry.ALL_SITES else None


async def _key_in_scope(request: web.Request, principal: Principal) -> str:
    name = _path(request, "name")
    if not principal.covers((await key_registry.get_key(request.app[DB], name=name)).sites):
        raise unknown("key", name, field="name")
    return name


# Sites


@routes.post("/api/v1/admin/sites")
@admin_only
async def create_site(request: web.Request, principal: Principal) -> web.Response:
    """Register a site (admin key for '*' only)."""
    _require_all_sites(principal, "creating a site")
    args = wire.SiteCreate().load(await request_inputs(request))
    site = await site_registry.add_site(request.app[DB], **args)
    await record_change(request, "site.create", site_id=site.id, target=site.id, details=args)
    return ok("Site created", wire.SiteOut().dump(site), 201)


@routes.get("/api/v1/admin/sites")
@admin_only
async def list_sites(request: web.Request, principal: Principal) -> web.Response:
    """The sites this key covers."""
    only = None if key_registry.ALL_SITES in principal.sites else principal.sites
    sites = await site_registry.list_sites(request.app[DB], only=only)
    return ok("Sites", wire.SiteOut(many=True).dump(sites))


@routes.get("/api/v1/admin/sites/{site_id}")
@admin_only
async def get_site(request: web.Request, principal: Principal) -> web.Response:
    """One site."""
    site_id = site_in_scope(request, principal)
    return ok("Site", wire.SiteOut().dump(await site_registry.get_site(request.app[DB], site_id=site_id)))


@routes.patch("/api/v1/admin/sites/{site_id}")
@admin_only
async def edit_site(request: web.Request, principal: Principal) -> web.Response:
    """Change a site's name, region, tariffs or auto_cut."""
    site_id = site_in_scope(request, principal)
    changes = wire.SiteEdit().load(await request_inputs(request))
    site = await site_registry.edit_site(
        request.app[DB], site_id=site_id, changes=changes, now=request.app[CLOCK].now()
    )
    await record_change(request, "site.edit", site_id=site_id, target=site_id, details=changes)
    return ok("Site updated", wire.SiteOut().dump(site))


# Meters


@routes.post("/api/v1/admin/sites/{site_id}/meters")
@admin_only
async def create_meter(request: web.Request, principal: Principal) -> web.Response:
    """Register a meter on a site; its device token is in this reply only."""
    site_id = site_in_scope(request, principal)
    args = wire.MeterCreate().load(await request_inputs(request))
    created = await meter_registry.add_meter(request.app[DB], site_id=site_id, **args)
    await record_change(request, "meter.create", site_id=site_id, target=created.meter.meter_no, details=args)
    return ok("Meter created", {**wire.MeterOut().dump(created.meter), "token": created.token}, 201)


@routes.get("/api/v1/admin/sites/{site_id}/meters")
@admin_only
async def list_meters(request: web.Request, principal: Principal) -> web.Response:
    """Every meter of a site, retired ones included."""
    site_id = site_in_scope(request, principal)
    await site_registry.get_site(request.app[DB], site_id=site_id)  # 404 for an unknown site, not []
    meters = await meter_registry.list_meters(request.app[DB], site_id=site_id)
    return ok("Meters", wire.MeterOut(many=True).dump(meters))


@routes.get("/api/v1/admin/meters/{meter_no}")
@admin_only
async def get_meter(request: web.Request, principal: Principal) -> web.Response:
    """One meter, with `days_left` at its recent daily spend (null without charges)."""
    meter = await _meter_in_scope(request, principal)
    db = request.app[DB]
    site = await site_registry.get_site(db, site_id=meter.site_id)
    left = await policy.meter_days_left(db, meter=meter, timezone=site.timezone, now=request.app[CLOCK].now())
    return ok("Meter", {**wire.MeterOut().dump(meter), "days_left": None if left is None else str(left)})


@routes.patch("/api/v1/admin/meters/{meter_no}")
@admin_only
async def edit_meter(request: web.Request, principal: Principal) -> web.Response:
    """Change a meter's consumer details; a new consumer or FIN removes the old resident's portal account."""
    meter = await _meter_in_scope(request, principal)
    changes = wire.MeterEdit().load(await request_inputs(request))
    meter, unlinked = await meter_registry.edit_meter(request.app[DB], meter_no=meter.meter_no, changes=changes)
    if "legacy_ingest" in changes:
        request.app[LEGACY].clear()  # this process at once; others by NOTIFY (PostgreSQL) or within seconds
    await record_change(request, "meter.edit", site_id=meter.site_id, target=meter.meter_no, details=changes)
    return ok("Meter updated", {**wire.MeterOut().dump(meter), "resident_unlinked": unlinked})


@routes.post("/api/v1/admin/meters/{meter_no}/retire")
@admin_only
async def retire_meter(request: web.Request, principal: Principal) -> web.Response:
    """Take a meter out of service without a replacement."""
    meter = await _meter_in_scope(request, principal)
    meter = await meter_registry.retire_meter(request.app[DB], meter_no=meter.meter_no)
    await record_change(request, "meter.retire", site_id=meter.site_id, target=meter.meter_no)
    return ok("Meter retired", wire.MeterOut().dump(meter))


@routes.post("/api/v1/admin/meter-changes")
@admin_only
async def replace_meter(request: web.Request, principal: Principal) -> web.Response:
    """Replace a meter: the unit, balance and consumer move; the new meter's token is in this reply only."""
    args = wire.MeterChangeCreate().load(await request_inputs(request))
    principal.check_site(args["site_id"])
    replaced = await meter_changes.replace_meter(request.app[DB], now=request.app[CLOCK].now(), **args)
    data = {**wire.MeterChangeOut().dump(replaced.change), "token": replaced.token}
    await record_change(request, "meter.replace", site_id=args["site_id"], target=args["old_meter_no"], details=args)
    return ok("Meter replaced", data, 201)


# The ledger


@routes.get("/api/v1/admin/meters/{meter_no}/ledger")
@admin_only
async def meter_ledger(request: web.Request, principal: Principal) -> web.Response:
    """A meter's ledger entries, oldest first, and whether its balance adds up."""
    meter = await _meter_in_scope(request, principal)
    db = request.app[DB]
    entries = await ledger.list_ledger(db, meter_no=meter.meter_no)
    check = await ledger.check_ledger(db, meter_no=meter.meter_no)
    data = {"meter_no": str(meter.meter_no), "check": wire.LedgerCheckOut().dump(check)}
    return ok("Ledger", {**data, "entries": wire.LedgerEntryOut(many=True).dump(entries)})


@routes.post("/api/v1/admin/meters/{meter_no}/adjustments")
@admin_only
async def adjust_balance(request: web.Request, principal: Principal) -> web.Response:
    """Correct a meter's balance by a signed amount, with a reason (recorded in the ledger)."""
    meter = await _meter_in_scope(request, principal)
    args = wire.AdjustmentCreate().load(await request_inputs(request))
    entry = await ledger.adjust_balance(
        request.app[DB], meter_no=meter.meter_no, created_by=principal.name, now=request.app[CLOCK].now(), **args
    )
    await record_change(request, "meter.adjust", site_id=meter.site_id, target=meter.meter_no, details=args)
    return ok("Balance adjusted", wire.LedgerEntryOut().dump(entry), 201)


# DGs


@routes.post("/api/v1/admin/sites/{site_id}/dgs")
@admin_only
async def create_dg(request: web.Request, principal: Principal) -> web.Response:
    """Register a diesel generator on a site."""
    site_id = site_in_scope(request, principal)
    args = wire.DgCreate().load(await request_inputs(request))
    dg = await dgs.add_dg(request.app[DB], site_id=site_id, dg_no=args["dg_number"], meter_no=args["meter_no"])
    await record_change(request, "dg.create", site_id=site_id, target=dg.dg_no, details=args)
    return ok("DG created", wire.DgOut().dump(dg), 201)


@routes.get("/api/v1/admin/sites/{site_id}/dgs")
@admin_only
async def list_dgs(request: web.Request, principal: Principal) -> web.Response:
    """The DGs of a site."""
    site_id = site_in_scope(request, principal)
    await site_registry.get_site(request.app[DB], site_id=site_id)
    return ok("DGs", wire.DgOut(many=True).dump(await dgs.list_dgs(request.app[DB], site_id=site_id)))


@routes.get("/api/v1/admin/sites/{site_id}/dgs/{dg_number}/deliveries")
@admin_only
async def list_dg_deliveries(request: web.Request, principal: Principal) -> web.Response:
    """The DG's latest 100 callback events (newest first), each with every attempt at it."""
    site_id = site_in_scope(request, principal)
    deliveries = await dg_events.list_deliveries(request.app[DB], site_id=site_id, dg_no=_path(request, "dg_number"))
    return ok("DG callback deliveries", wire.DgDeliveryOut(many=True).dump(deliveries))


@routes.post("/api/v1/admin/sites/{site_id}/dgs/{dg_number}/deliveries/{event_id}/redeliver")
@admin_only
async def redeliver_dg_event(request: web.Request, principal: Principal) -> web.Response:
    """Send one event again (same id and body), now, with a fresh round of retries."""
    site_id = site_in_scope(request, principal)
    event = await dg_events.redeliver(
        request.app[DB],
        site_id=site_id,
        dg_no=_path(request, "dg_number"),
        event_id=_path(request, "event_id"),
        now=request.app[CLOCK].now(),
    )
    if request.app[SETTINGS].scheduler:
        request.app[DELIVERIES].kick()
    await record_change(
        request, "dg.redeliver", site_id=site_id, target=event.event_id, details={"dg_number": event.dg_no}
    )
    return ok("Redelivery queued", wire.DgEventOut().dump(event), 202)


# API keys


@routes.post("/api/v1/admin/keys")
@admin_only
async def create_key(request: web.Request, principal: Principal) -> web.Response:
    """Create an API key for sites this key covers; the key is in this reply only."""
    args = wire.KeyCreate().load(await request_inputs(request))
    if key_registry.ALL_SITES in args["sites"]:
        _require_all_sites(principal, "a key for every site")
    principal.check_sites(args["sites"])  # worded as the store words a site that does not exist
    created = await key_registry.create_key(request.app[DB], **args)
    await record_change(request, "key.create", site_id=_key_site(args["sites"]), target=args["name"], details=args)
    return ok("Key created", {**wire.KeyOut().dump(created.api_key), "key": created.key}, 201)


@routes.get("/api/v1/admin/keys")
@admin_only
async def list_keys(request: web.Request, principal: Principal) -> web.Response:
    """The keys whose sites this key covers (never their secrets)."""
    keys = [k for k in await key_registry.list_keys(request.app[DB]) if principal.covers(k.sites)]
    return ok("Keys", wire.KeyOut(many=True).dump(keys))


@routes.post("/api/v1/admin/keys/{name}/revoke")
@admin_only
async def revoke_key(request: web.Request, principal: Principal) -> web.Response:
    """Revoke a key; it stops working at once in this process (others: within the cache's seconds)."""
    name = await _key_in_scope(request, principal)
    revoked = await key_registry.revoke_key(request.app[DB], name=name)
    request.app[KEYS].clear()
    await record_change(request, "key.revoke", site_id=_key_site(revoked.sites), target=name)
    return ok("Key revoked", wire.KeyOut().dump(revoked))


@routes.post("/api/v1/admin/keys/{name}/rotate")
@admin_only
async def rotate_key(request: web.Request, principal: Principal) -> web.Response:
    """Give a key a new secret, in this reply only; the old secret stops working."""
    name = await _key_in_scope(request, principal)
    rotated = await key_registry.rotate_key(request.app[DB], name=name)
    request.app[KEYS].clear()
    await record_change(request, "key.rotate", site_id=_key_site(rotated.api_key.sites), target=name)
    return ok("Key rotated", {**wire.KeyOut().dump(rotated.api_key), "key": rotated.key})
