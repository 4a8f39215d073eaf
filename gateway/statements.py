"""Monthly statements over HTTP: `GET /api/v1/admin/meters/{meter_no}/statement?month=YYYY-MM`
as JSON or CSV (`format=csv`), and the CSV the resident portal serves for the same statement.

Scoped like the other admin meter routes: a meter of a site outside the key's sites is a 404.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from zoneinfo import ZoneInfo

from aiohttp import web

from gateway.admin import _meter_in_scope, admin_only, ok
from gateway.app_keys import CLOCK, DB
from gateway.auth import Principal
from schemas import statements as wire
from storage.reads.statements import Statement, meter_statement

routes = web.RouteTableDef()


def statement_csv(statement: Statement) -> str:
    """The statement as one CSV document: a section per kind of line, the check line last."""
    zone = ZoneInfo(statement.timezone)

    def local(at: dt.datetime) -> str:
        return at.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\n")
    out.writerow(["statement", statement.meter_no, statement.month_label])
    out.writerow(["site", statement.site_id, "unit", statement.unit_no, "consumer", statement.consumer_name])
    for note in statement.notes:
        out.writerow(["note", note])
    out.writerow(["opening_balance", statement.opening_balance])
    out.writerow([])
    out.writerow(
        ["day", "grid_kwh", "grid_rate", "grid_amount", "dg_kwh", "dg_rate", "dg_amount", "fixed_charge", "intervals"]
    )
    for day in statement.days:
        out.writerow(
            [day.day, day.grid_kwh, day.grid_rate, day.grid_amount, day.dg_kwh, day.dg_rate, day.dg_amount,
             day.fixed_charge, day.intervals]
        )  # fmt: skip
    out.writerow(
        ["total", statement.grid_kwh, "", statement.grid_amount, statement.dg_kwh, "", statement.dg_amount,
         statement.fixed_charges, sum(day.intervals for day in statement.days)]
    )  # fmt: skip
    out.writerow([])
    out.writerow(["recharge_at", "amount", "transaction_id", "reason"])
    for credit in statement.credits:
        out.writerow([local(credit.at), credit.amount, credit.transaction_id or "", credit.reason])
    out.writerow([])
    out.writerow(["adjustment_at", "amount", "reason", "by"])
    for adjustment in statement.adjustments:
        out.writerow([local(adjustment.at), adjustment.amount, adjustment.reason, adjustment.created_by])
    out.writerow([])
    out.writerow(["supply_at", "what", "reason"])
    for change in statement.supply:
        out.writerow([local(change.at), change.what, change.reason])
    out.writerow([])
    out.writerow(["closing_balance", statement.closing_balance])
    out.writerow(["check", statement.check_line])
    return buffer.getvalue()


def csv_response(statement: Statement) -> web.Response:
    """The statement as a CSV download."""
    filename = f"statement-{statement.meter_no}-{statement.month_label}.csv"
    return web.Response(
        text=statement_csv(statement),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


@routes.get("/api/v1/admin/meters/{meter_no}/statement")
@admin_only
async def get_statement(request: web.Request, principal: Principal) -> web.Response:
    """A meter's statement for a calendar month of its site, as JSON or CSV."""
    meter = await _meter_in_scope(request, principal)
    args = wire.StatementQuery().load(request.query)
    year, month = args["month"]
    statement = await meter_statement(
        request.app[DB], meter_no=meter.meter_no, year=year, month=month, now=request.app[CLOCK].now()
    )
    if args["format"] == "csv":
        return csv_response(statement)
    return ok("Statement", wire.StatementOut().dump(statement))
