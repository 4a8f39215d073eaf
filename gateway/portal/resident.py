"""Resident pages: the landing page, login, the meter's profile and consumption.

A resident sees only their own meter: any other meter number in the URL answers 404, exactly
as a meter that does not exist. Staff may open the pages of any meter of their sites.
"""

from __future__ import annotations

import csv
import datetime as dt
import io

from aiohttp import web

from gateway.app_keys import CLOCK, DB
from gateway.portal import access
from gateway.portal.charts import stacked_bars
from gateway.portal.render import PERIOD_NAMES, error_page, render
from gateway.portal.sessions import current_account
from schemas.fields import meter_number
from storage.calendar import HALF_HOUR, PERIODS, zone
from storage.money import policy
from storage.portal import portal_users
from storage.reads import consumption, meter_views
from storage.reads.consumption import Consumption

routes = web.RouteTableDef()
# A recharge's state as a resident reads it (storage/money/recharge.py: requested → success | waiting | error).
RECHARGE_STATES = {"success": "Credited", "waiting": "Pending", "requested": "Pending", "error": "Failed"}
DEFAULT_PERIOD = "current-day"
# The seed implementation's path words (/profile/{id}/consumption/today) → our period names.
PATH_PERIODS = {
    "today": "current-day",
    "day": "current-day",
    "hour": "prev-hr",
    "last-hour": "prev-hr",
    "week": "current-week",
    "month": "current-month",
    "last-month": "prev-month",
    "previous-month": "prev-month",
    **{name: name for name in PERIODS},
}


async def viewable_meter(request: web.Request) -> int:
    """The meter number in the URL, if the logged-in user may see it; 404 otherwise."""
    account = await current_account(request)
    if account is None:
        raise web.HTTPSeeOther("/profile")
    meter_no = meter_number(request.match_info["meter_id"], dashes=True)
    if meter_no is None or (not account.is_staff and account.meter_no != meter_no):
        raise web.HTTPNotFound(text="There is no meter at this address for your account.")
    if account.is_staff:  # staff see the meters of their sites only, as API keys do
        site_id = await portal_users.meter_site(request.app[DB], meter_no=meter_no)
        if site_id is None or not account.sees_site(site_id):
            raise web.HTTPNotFound(text="There is no meter at this address for your account.")
    return meter_no


# --- Pages -------------------------------------------------------------------------------------


@routes.get("/")
async def landing(request: web.Request) -> web.Response:
    """New user (register) or existing user (log in)."""
    return await render(request, "landing.html", {})


@routes.get("/profile")
async def login_form(request: web.Request) -> web.Response:
    """Log in with the meter number and password (a logged-in resident goes to their meter)."""
    account = await current_account(request)
    if account is not None and account.meter_no is not None:
        raise web.HTTPSeeOther(f"/profile/{account.meter_no}")
    return await render(request, "login.html", resident_login_page())


def resident_login_page() -> dict[str, object]:
    """What the resident login template needs besides errors."""
    return {"errors": {}, "login": "", "action": "/profile", "login_label": "Meter number", "staff": False}


@routes.post("/profile")
async def login(request: web.Request) -> web.StreamResponse:
    """Check the meter number and password; start a session."""
    return await access.log_in(request, template="login.html", context=resident_login_page())


@routes.get("/profile/{meter_id}")
async def profile(request: web.Request) -> web.Response:
    """Balance, relay state, today so far, last reading time, recent recharges."""
    meter_no = await viewable_meter(request)
    db, now = request.app[DB], request.app[CLOCK].now()
    summary = await consumption.meter_summary(db, meter_no=meter_no, now=now)
    status = await policy.prepaid_status(db, meter=summary.meter, site=summary.site, now=now)
    page = {
        "summary": summary,
        "status": status,
        "meter_no": meter_no,
        "supply": await meter_views.supply(db, meter=summary.meter),
        "restore_amount": policy.restore_amount(summary.meter.balance, summary.site.grace_amount),
        "recharges": await meter_views.recharges(db, meter_no=meter_no),
        "recharge_states": RECHARGE_STATES,
    }
    return await render(request, "profile.html", page)


@routes.get("/profile/{meter_id}/consumption")
async def consumption_page(request: web.Request) -> web.StreamResponse:
    """Totals and a chart for a period; `format=csv` downloads the same numbers."""
    meter_no = await viewable_meter(request)
    period = request.query.get("period", DEFAULT_PERIOD)
    output = request.query.get("format", "html")
    if period not in PERIODS:
        return await unknown_period(request, period, f"/profile/{meter_no}/consumption")
    if output not in ("html", "csv"):
        return await error_page(request, 400, "The format can be html or csv.")
    db, now = request.app[DB], request.app[CLOCK].now()
    usage = await consumption.meter_consumption(db, meter_no=meter_no, period=period, now=now)
    if output == "csv":
        return consumption_csv(usage)
    span = usage.window
    x_title = f"Day ({span.timezone})" if span.by_day else f"Local time ({span.timezone})"
    chart = stacked_bars(
        labels=[b.label for b in usage.bars],
        grid=[b.grid if b.has_data else None for b in usage.bars],
        dg=[b.dg if b.has_data else None for b in usage.bars],
        x_title=x_title,
        title=f"{PERIOD_NAMES[period]}: energy per {'day' if span.by_day else 'half hour'}",
        charges=[b.charge if b.has_data else None for b in usage.bars],
        gaps=[b.state for b in usage.bars],
    )
    summary = await consumption.meter_summary(db, meter_no=meter_no, now=now)
    runs = await meter_views.dg_runs(db, site_id=summary.site.id, start=span.start, end=min(span.end, now))
    page = {"usage": usage, "meter_no": meter_no, "period": period, "chart": chart, "dg_runs": runs}
    return await render(request, "consumption.html", page)


@routes.get("/profile/{meter_id}/year")
async def year_page(request: web.Request) -> web.Response:
    """The last 12 months, month by month: the trend, in kWh and ₹, gaps marked."""
    meter_no = await viewable_meter(request)
    usage = await consumption.meter_year(request.app[DB], meter_no=meter_no, now=request.app[CLOCK].now())
    chart = stacked_bars(
        labels=[b.label for b in usage.bars],
        grid=[b.grid if b.has_data else None for b in usage.bars],
        dg=[b.dg if b.has_data else None for b in usage.bars],
        x_title=f"Month ({usage.window.timezone})",
        title="The last 12 months: energy per month",
        charges=[b.charge if b.has_data else None for b in usage.bars],
        gaps=[b.state for b in usage.bars],
    )
    return await render(request, "year.html", {"usage": usage, "meter_no": meter_no, "chart": chart})


@routes.get("/profile/{meter_id}/consumption/{name}")
async def consumption_path(request: web.Request) -> web.StreamResponse:
    """The seed's path form (…/consumption/today) redirects to the query form."""
    meter_no = await viewable_meter(request)
    name = request.match_info["name"]
    period = PATH_PERIODS.get(name.lower())
    if period is None:
        return await unknown_period(request, name, f"/profile/{meter_no}/consumption")
    raise web.HTTPMovedPermanently(f"/profile/{meter_no}/consumption?period={period}")


async def unknown_period(request: web.Request, period: str, base: str) -> web.Response:
    """400: the period is not one we know; the page links every valid one."""
    return await error_page(
        request,
        400,
        f"“{period}” is not a period this page knows. Choose one of: {', '.join(PERIODS)}.",
        period_links=base,
    )


BAR_STATES = {"complete": "ok", "partial": "partial", "missing": "missing", "none": "future"}


def consumption_csv(usage: Consumption) -> web.Response:
    """The bars of a consumption page as CSV: one row per half hour or day, kWh to 3 decimals,
    ₹ to 2. A half hour without a reading has empty numbers and `missing` (or `future`, for one
    not ended yet or before the meter was installed) in `status`: never 0."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    span = usage.window
    if span.by_day:
        writer.writerow(
            ["day", "grid_kwh", "dg_kwh", "total_kwh", "intervals", "expected_intervals",
             "grid_inr", "dg_inr", "fixed_inr", "total_inr", "status"]
        )  # fmt: skip
        for bar in usage.bars:
            numbers = (
                [bar.grid, bar.dg, bar.total, bar.intervals, bar.expected, bar.grid_charge, bar.dg_charge]
                if bar.has_data
                else ["", "", "", bar.intervals, bar.expected, "", ""]
            )
            fixed_and_total = [bar.fixed_charge, bar.charge] if bar.has_data or bar.fixed_charge else ["", ""]
            writer.writerow([bar.key, *numbers, *fixed_and_total, BAR_STATES[bar.state]])
    else:
        writer.writerow(
            [
                "interval_start",
                "interval_end",
                "grid_kwh",
                "dg_kwh",
                "total_kwh",
                "grid_inr",
                "dg_inr",
                "total_inr",
                "status",
            ]
        )
        for bar in usage.bars:
            start = dt.datetime.fromisoformat(bar.key)
            end = (start.astimezone(dt.UTC) + HALF_HOUR).astimezone(zone(span.timezone))  # not wall-clock +30
            numbers = (
                [bar.grid, bar.dg, bar.total, bar.grid_charge, bar.dg_charge, bar.charge] if bar.has_data else [""] * 6
            )
            writer.writerow([bar.key, end.isoformat(), *numbers, BAR_STATES[bar.state]])
    filename = f"meter-{usage.meter_no}-{span.period}-{span.first_day.isoformat()}.csv"
    return web.Response(
        text=buffer.getvalue(),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )
