"""Admin API for a site's prepaid policy: tariff history, holidays, events and the site webhook.

Policy settings themselves (grace, alert thresholds, no-cut hours and weekdays) are fields of
`PATCH /api/v1/admin/sites/{site_id}` (gateway/admin.py). Same scoping and envelopes as the rest
of the admin API.
"""

from __future__ import annotations

from aiohttp import web
from marshmallow import ValidationError

from adapters.webhooks import check_target
from gateway.admin import admin_only, ok, site_in_scope
from gateway.api import request_inputs
from gateway.app_keys import CLOCK, DB, SETTINGS
from gateway.audit import record_change
from gateway.auth import Principal
from schemas import policy as wire
from schemas.dg_callback import new_secret
from schemas.fields import Day
from storage.errors import InvalidInput
from storage.money import policy, site_events, tariffs
from storage.registry import sites

routes = web.RouteTableDef()


@routes.post("/api/v1/admin/sites/{site_id}/tariffs")
@admin_only
async def add_tariff(request: web.Request, principal: Principal) -> web.Response:
    """A new tariff row from `effective_from` (site local time; default now); never in the past."""
    site_id = site_in_scope(request, principal)
    args = wire.TariffCreate().load(await request_inputs(request))
    row = await tariffs.set_tariff(
        request.app[DB], site_id=site_id, now=request.app[CLOCK].now(), created_by=principal.name, **args
    )
    await record_change(request, "tariff.set", site_id=site_id, target=site_id, details=args)
    return ok("Tariff added", wire.TariffOut().dump(row), 201)


@routes.get("/api/v1/admin/sites/{site_id}/tariffs")
@admin_only
async def list_tariffs(request: web.Request, principal: Principal) -> web.Response:
    """The site's tariff history, oldest first."""
    site_id = site_in_scope(request, principal)
    rows = await tariffs.list_tariffs(request.app[DB], site_id=site_id)
    return ok("Tariffs", wire.TariffOut(many=True).dump(rows))


@routes.post("/api/v1/admin/sites/{site_id}/holidays")
@admin_only
async def add_holiday(request: web.Request, principal: Principal) -> web.Response:
    """A holiday (no zero-balance cuts that local day); adding it again renames it."""
    site_id = site_in_scope(request, principal)
    args = wire.HolidayCreate().load(await request_inputs(request))
    holiday = await policy.add_holiday(request.app[DB], site_id=site_id, day=args["date"], name=args["name"])
    await record_change(request, "holiday.add", site_id=site_id, target=args["date"].isoformat(), details=args)
    return ok("Holiday added", wire.HolidayOut().dump(holiday), 201)


@routes.get("/api/v1/admin/sites/{site_id}/holidays")
@admin_only
async def list_holidays(request: web.Request, principal: Principal) -> web.Response:
    """The site's holidays by date."""
    site_id = site_in_scope(request, principal)
    holidays = await policy.list_holidays(request.app[DB], site_id=site_id)
    return ok("Holidays", wire.HolidayOut(many=True).dump(holidays))


@routes.delete("/api/v1/admin/sites/{site_id}/holidays/{date}")
@admin_only
async def remove_holiday(request: web.Request, principal: Principal) -> web.Response:
    """Remove a holiday."""
    site_id = site_in_scope(request, principal)
    try:
        day = Day().deserialize(request.match_info["date"])
    except ValidationError as err:
        raise InvalidInput("Invalid input: date", {"date": [str(m) for m in err.messages]}) from None  # type: ignore[union-attr]
    await policy.remove_holiday(request.app[DB], site_id=site_id, day=day)
    await record_change(request, "holiday.remove", site_id=site_id, target=day.isoformat())
    return ok("Holiday removed", {"site_id": site_id, "date": day.isoformat()})


@routes.get("/api/v1/admin/sites/{site_id}/events")
@admin_only
async def list_events(request: web.Request, principal: Principal) -> web.Response:
    """The site's events in order, after `after` (an event id) when given, at most `limit`."""
    site_id = site_in_scope(request, principal)
    args = wire.EventQuery().load(request.query)
    events = await site_events.list_events(request.app[DB], site_id=site_id, **args)
    return ok("Events", wire.SiteEventOut(many=True).dump(events))


@routes.put("/api/v1/admin/sites/{site_id}/webhook")
@admin_only
async def set_webhook(request: web.Request, principal: Principal) -> web.Response:
    """Where the site's events are POSTed (same URL rules as DG callbacks); the secret is in this
    reply only, and a new one is issued each time."""
    site_id = site_in_scope(request, principal)
    args = wire.WebhookSet().load(await request_inputs(request))
    db = request.app[DB]
    await sites.get_site(db, site_id=site_id)  # 404 for an unknown site before any DNS lookup
    await check_target(args["url"], allow_private=request.app[SETTINGS].callback_allow_private)
    secret = new_secret()
    hook = await site_events.set_webhook(
        db, site_id=site_id, url=args["url"], secret=secret, now=request.app[CLOCK].now()
    )
    return ok("Webhook set", {**wire.WebhookOut().dump(hook), "secret": secret})


@routes.get("/api/v1/admin/sites/{site_id}/webhook")
@admin_only
async def get_webhook(request: web.Request, principal: Principal) -> web.Response:
    """The site's webhook, without its secret."""
    site_id = site_in_scope(request, principal)
    hook = await site_events.get_webhook(request.app[DB], site_id=site_id)
    return ok("Webhook", wire.WebhookOut().dump(hook))


@routes.delete("/api/v1/admin/sites/{site_id}/webhook")
@admin_only
async def delete_webhook(request: web.Request, principal: Principal) -> web.Response:
    """Stop delivering the site's events."""
    site_id = site_in_scope(request, principal)
    await site_events.delete_webhook(request.app[DB], site_id=site_id)
    await record_change(request, "webhook.delete", site_id=site_id, target=site_id)
    return ok("Webhook removed", {"site_id": site_id})
