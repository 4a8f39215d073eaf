"""The manager's prepaid panels of the dashboard (issue 22): a site selector and a search by
unit, meter or consumer; low balances by days left; negative balances; meters cut for zero
balance and meters stopped by staff, apart; recharges collected today and this month; failed
or pending recharges; DG run hours and fuel; and the drill-down of completeness to the missing
meter-intervals of a day (`/management-dashboard/missing`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from gateway.app_keys import CLOCK, DB
from gateway.errors import day_input
from gateway.portal.charts import stacked_bars
from gateway.portal.render import render
from gateway.portal.sessions import current_account
from storage.calendar import local_day
from storage.db.models import Site
from storage.portal.portal_users import Account
from storage.reads import prepaid_fleet
from storage.reads.trend import monthly_trend

routes = web.RouteTableDef()
MISSING = "/management-dashboard/missing"
SEARCH_MAX = 64


async def staff_account(request: web.Request) -> Account:
    """The logged-in staff account; a redirect to the staff login or a 403 otherwise."""
    account = await current_account(request)
    if account is None:
        raise web.HTTPSeeOther("/management-dashboard/login")
    if not account.is_staff:
        raise web.HTTPForbidden(text="The management dashboard is for staff accounts.")
    return account


async def staff_site(request: web.Request, account: Account) -> Site:
    """The site of `?site=` if the account sees it; 404 otherwise (as if it did not exist)."""
    sites = {s.id: s for s in await prepaid_fleet.visible_sites(request.app[DB], only=account.site_filter)}
    site = sites.get(request.query.get("site", ""))
    if site is None:
        raise web.HTTPNotFound(text="There is no site with that id among yours.")
    return site


async def prepaid_panels(request: web.Request, account: Account) -> dict[str, Any]:
    """What the dashboard template's prepaid panels need, for `?site=` and `?q=`."""
    db, now, only = request.app[DB], request.app[CLOCK].now(), account.site_filter
    sites = await prepaid_fleet.visible_sites(db, only=only)
    chosen = request.query.get("site", "")
    if chosen and chosen not in {s.id for s in sites}:
        raise web.HTTPNotFound(text="There is no site with that id among yours.")
    search = request.query.get("q", "").strip()[:SEARCH_MAX]
    site_id = chosen or None
    meters = await prepaid_fleet.meter_money(db, now=now, only=only, site_id=site_id)
    grace = {s.id: s.grace_amount for s in sites}
    found = await prepaid_fleet.meter_money(db, now=now, only=only, site_id=site_id, search=search) if search else []
    trend = await monthly_trend(db, now=now, only=frozenset({chosen}) if chosen else only)
    return {
        "site_choices": sites,
        "chosen_site": chosen,
        "search": search,
        "found": found[: prepaid_fleet.LISTED],
        "found_count": len(found),
        "money": prepaid_fleet.money_lists(meters, grace),
        "collected": await prepaid_fleet.collected(db, now=now, only=only, site_id=site_id),
        "stuck": await prepaid_fleet.stuck_recharges(db, only=only, site_id=site_id),
        "dg_hours": await prepaid_fleet.dg_hours(db, now=now, only=only, site_id=site_id),
        "listed": prepaid_fleet.LISTED,
        "site_zones": {s.id: s.timezone for s in sites},
        "trend_chart": stacked_bars(
            labels=[m.label for m in trend],
            grid=[m.grid for m in trend],
            dg=[m.dg for m in trend],
            x_title="Month (each site's local time)",
            title="Energy per month, the last 12 months",
        ),
        "trend": trend,
    }


@routes.get(MISSING)
async def missing(request: web.Request) -> web.Response:
    """Which meters of a site lack which half hours on a day (yesterday by default)."""
    account = await staff_account(request)
    db, now = request.app[DB], request.app[CLOCK].now()
    site = await staff_site(request, account)
    text = request.query.get("day", "")
    # A bad day is InvalidInput, which the portal's middleware answers with its HTML 400 page.
    day = day_input(text) if text else local_day(site.timezone, now) - dt.timedelta(days=1)
    rows = await prepaid_fleet.missing_intervals(db, site_id=site.id, day=day, now=now, only=account.site_filter)
    return await render(request, "missing.html", {"site": site, "day": day, "rows": rows})
