"""The management dashboard (staff only, each seeing the sites of their account): region-wise and
site-wise consumption for a period with charts, top consumers, meters silent for over an hour,
meters cut for zero balance, and data completeness (intervals seen of those expected).
"""

from __future__ import annotations

from aiohttp import web

from gateway.app_keys import CLOCK, DB
from gateway.portal.access import log_in
from gateway.portal.charts import stacked_bars
from gateway.portal.prepaid_dashboard import prepaid_panels
from gateway.portal.render import PERIOD_NAMES, error_page, render
from gateway.portal.resident import DEFAULT_PERIOD, unknown_period
from gateway.portal.sessions import current_account
from storage.calendar import PERIODS
from storage.reads import fleet

routes = web.RouteTableDef()
HOME = "/management-dashboard/"
LOGIN = "/management-dashboard/login"


def staff_login_page() -> dict[str, object]:
    """What the staff login template needs besides errors."""
    return {"errors": {}, "login": "", "action": LOGIN, "login_label": "Username", "staff": True}


@routes.get("/management-dashboard")
async def without_slash(request: web.Request) -> web.StreamResponse:
    """The seed writes the dashboard with a trailing slash."""
    raise web.HTTPMovedPermanently(HOME)


@routes.get(LOGIN)
async def login_form(request: web.Request) -> web.Response:
    """Staff log in with their username."""
    account = await current_account(request)
    if account is not None and account.is_staff:
        raise web.HTTPSeeOther(HOME)
    return await render(request, "login.html", staff_login_page())


@routes.post(LOGIN)
async def login(request: web.Request) -> web.StreamResponse:
    """Check the username and password; start a session."""
    return await log_in(request, template="login.html", context=staff_login_page())


@routes.get(HOME)
async def dashboard(request: web.Request) -> web.Response:
    """Everything staff look at, for the chosen period (today by default)."""
    account = await current_account(request)
    if account is None:
        raise web.HTTPSeeOther(LOGIN)
    if not account.is_staff:
        return await error_page(request, 403, "The management dashboard is for staff accounts.")
    period = request.query.get("period", DEFAULT_PERIOD)
    if period not in PERIODS:
        return await unknown_period(request, period, HOME)
    db, now, only = request.app[DB], request.app[CLOCK].now(), account.site_filter
    panels = await prepaid_panels(request, account)
    if panels["chosen_site"]:  # the site selector narrows every panel
        only = frozenset({panels["chosen_site"]})
    sites = await fleet.site_usage(db, period=period, now=now, only=only)
    regions = fleet.region_usage(sites)
    silent_count, silent = await fleet.silent_meters(db, now=now, only=only)
    cut_count, cut = await fleet.cut_meters(db, only=only)
    name = PERIOD_NAMES[period]
    charts = {
        "regions": stacked_bars(
            labels=[r.name for r in regions],
            grid=[r.grid for r in regions],
            dg=[r.dg for r in regions],
            x_title="Region",
            title=f"{name}: energy per region",
        ),
        "sites": stacked_bars(
            labels=[f"{s.name} ({s.site_id})" for s in sites],
            grid=[s.grid for s in sites],
            dg=[s.dg for s in sites],
            x_title="Site",
            title=f"{name}: energy per site",
        ),
    }
    return await render(
        request,
        "dashboard.html",
        {
            "period": period,
            "regions": regions,
            "sites": sites,
            "charts": charts,
            "top": await fleet.top_consumers(db, period=period, now=now, only=only),
            "silent": silent,
            "silent_count": silent_count,
            "cut": cut,
            "cut_count": cut_count,
            "completeness": await fleet.completeness(db, now=now, only=only),
            **panels,
        },
    )
