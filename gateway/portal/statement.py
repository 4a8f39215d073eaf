"""The resident's monthly statement: a printable page (with a print stylesheet) and its CSV.

`/profile/{meter_id}/statement?month=YYYY-MM` (default: the current month of the site), for
the resident's own meter, or for staff any meter of their sites, exactly as the other meter
pages; `format=csv` downloads the same statement as the admin API's CSV.
"""

from __future__ import annotations

from aiohttp import web
from marshmallow import ValidationError

from gateway.app_keys import CLOCK, DB
from gateway.portal.render import error_page, render
from gateway.portal.resident import viewable_meter
from gateway.statements import csv_response
from schemas.statements import Month
from storage.calendar import zone
from storage.errors import InvalidInput
from storage.reads.statements import meter_statement
from storage.registry import meters, sites

routes = web.RouteTableDef()


@routes.get("/profile/{meter_id}/statement")
async def statement_page(request: web.Request) -> web.StreamResponse:
    """The month's statement as a page to read and print, or as CSV."""
    meter_no = await viewable_meter(request)
    db, now = request.app[DB], request.app[CLOCK].now()
    output = request.query.get("format", "html")
    if output not in ("html", "csv"):
        return await error_page(request, 400, "The format can be html or csv.")
    text = request.query.get("month")
    if text is None:  # the site's current month
        site = await sites.get_site(db, site_id=(await meters.get_meter(db, meter_no=meter_no)).site_id)
        text = now.astimezone(zone(site.timezone)).strftime("%Y-%m")
    try:
        year, month = Month().deserialize(text)
        statement = await meter_statement(db, meter_no=meter_no, year=year, month=month, now=now)
    except (ValidationError, InvalidInput):
        message = f"{text!r} is not a month with a statement: use YYYY-MM, up to the current month."
        return await error_page(request, 400, message)
    if output == "csv":
        return csv_response(statement)
    return await render(request, "statement.html", {"statement": statement, "meter_no": meter_no})
