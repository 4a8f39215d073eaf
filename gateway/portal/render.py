"""Rendering pages: the Jinja environment (autoescaped), what every page gets, error pages."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from gateway.portal.sessions import CSRF_FIELD, csrf_token, current_account
from storage.calendar import PERIODS, zone

PERIOD_NAMES = {
    "prev-hr": "Last hour",
    "current-day": "Today",
    "current-week": "This week",
    "current-month": "This month",
    "prev-month": "Last month",
}


def kwh(value: Decimal | float | int) -> str:
    """Energy for display: two decimals, thousands separated."""
    return f"{Decimal(value):,.2f}"


def rupees(value: Decimal | float | int) -> str:
    """Money for display: ₹ with two decimals, thousands separated, a true minus when negative."""
    amount = Decimal(value)
    return f"−₹{-amount:,.2f}" if amount < 0 else f"₹{amount:,.2f}"


def local_time(instant: dt.datetime | None, timezone: str) -> str:
    """An instant as the site's wall-clock time with its zone abbreviation."""
    if instant is None:
        return "never"
    return instant.astimezone(zone(timezone)).strftime("%Y-%m-%d %H:%M %Z")


def dashed(meter_no: int) -> str:
    """A meter number grouped in threes from the left, as printed on meters: 999-999-999."""
    digits = str(meter_no)
    return "-".join(digits[i : i + 3] for i in range(0, len(digits), 3))


def environment_options() -> dict[str, Any]:
    """Keyword arguments for aiohttp_jinja2.setup: templates from the package, autoescape on."""
    return {
        "loader": jinja2.PackageLoader("gateway.portal", "templates"),
        "autoescape": jinja2.select_autoescape(default=True, default_for_string=True),
        "undefined": jinja2.StrictUndefined,
        "filters": {"kwh": kwh, "rupees": rupees, "local_time": local_time, "dashed": dashed},
    }


async def render(request: web.Request, template: str, context: dict[str, Any], *, status: int = 200) -> web.Response:
    """A page with the logged-in account, a CSRF token for its forms, and the period names."""
    page = {
        "account": await current_account(request),
        "csrf_field": CSRF_FIELD,
        "csrf_token": await csrf_token(request),
        "periods": PERIODS,
        "period_names": PERIOD_NAMES,
        **context,
    }
    response = aiohttp_jinja2.render_template(template, request, page, status=status)
    # Pages show one person's data: keep them out of shared caches and the back-forward cache.
    response.headers["Cache-Control"] = "no-store"
    return response


MESSAGES = {
    400: "Please check the address or the form and try again.",
    403: "You are not allowed to do this.",
    404: "There is nothing at this address.",
    405: "This page cannot be used that way.",
    429: "Too many attempts. Please wait a while and try again.",
}
TITLES = {
    400: "That request could not be understood",
    403: "Not allowed",
    404: "Page not found",
    405: "Not allowed here",
    429: "Too many attempts",
    500: "Something went wrong",
}


async def error_page(request: web.Request, status: int, message: str, **context: Any) -> web.Response:
    """A friendly HTML error page with the right status."""
    title = TITLES.get(status, "Something went wrong")
    message = message or MESSAGES.get(status, "Please try again later.")
    return await render(request, "error.html", {"title": title, "message": message, **context}, status=status)
