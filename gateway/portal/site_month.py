"""A site's month on the management dashboard (staff of that site only):
`/management-dashboard/site-month?site=S&month=YYYY-MM&day=YYYY-MM-DD`.

The accountant's site report (a line per flat and the totals, as `GET …/report` has them), the
energy audit of the month with its charts (the incomer against the flats' billed grid kWh per
day, the loss %, DG kWh per litre) and its table, and the data-quality flags of one day of the
month (`day`, the month's last begun day by default).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web
from marshmallow import ValidationError

from gateway.app_keys import CLOCK, DB, SETTINGS
from gateway.portal.charts import bars_and_line, line_chart
from gateway.portal.prepaid_dashboard import staff_account, staff_site
from gateway.portal.render import error_page, render
from gateway.site_reports import quality_rules
from schemas.statements import Month
from storage.calendar import local_day, zone
from storage.errors import InvalidInput
from storage.reads import quality
from storage.reads.energy_audit import AuditDay, site_energy_audit
from storage.reads.site_report import MeterMonth, SiteTotals, stream_site_report

routes = web.RouteTableDef()
SITE_MONTH = "/management-dashboard/site-month"
SHOWN = 500  # report lines on the page; the rest are in the totals (and `gateway report`'s CSV)


def audit_charts(days: list[AuditDay]) -> dict[str, dict[str, Any]]:
    """The energy audit's three charts, one point per local day."""
    labels = [d.day.strftime("%d %b") for d in days]
    x_title = "Day (site time)"
    return {
        "incomer": bars_and_line(
            labels=labels,
            bars=[d.flats_grid_kwh for d in days],
            bar_name="Flats, billed grid (kWh)",
            line=[d.incomer_kwh for d in days],
            line_name="Incomer, bought (kWh, dotted)",
            x_title=x_title,
            title="Grid energy bought and billed per day",
        ),
        "loss": line_chart(
            labels=labels,
            values=[d.grid_loss_pct for d in days],
            name="Grid loss (%)",
            unit="%",
            x_title=x_title,
            title="Grid loss per day",
        ),
        "dg": line_chart(
            labels=labels,
            values=[d.dg_kwh_per_litre for d in days],
            name="DG kWh per litre",
            unit="kWh/l",
            x_title=x_title,
            title="DG energy per litre of diesel per day",
        ),
    }


@routes.get(SITE_MONTH)
async def site_month(request: web.Request) -> web.Response:
    """The site's month: report, energy audit with charts, and a day's data-quality flags."""
    account = await staff_account(request)
    db, now = request.app[DB], request.app[CLOCK].now()
    site = await staff_site(request, account)
    text = request.query.get("month") or now.astimezone(zone(site.timezone)).strftime("%Y-%m")
    try:
        year, month = Month().deserialize(text)
        audit = await site_energy_audit(db, site_id=site.id, year=year, month=month, now=now)
    except (ValidationError, InvalidInput):
        return await error_page(request, 400, f"“{text}” is not a month to show: use YYYY-MM, up to the current month.")
    day_text = request.query.get("day", "")
    try:
        day = dt.date.fromisoformat(day_text) if day_text else audit.days[-1].day
        if not audit.month.first <= day < audit.month.next_first:
            raise ValueError(day_text)
        flags = await quality.site_quality(
            db, site_id=site.id, day=day, now=now, rules=quality_rules(request.app[SETTINGS])
        )
    except (ValueError, InvalidInput):
        return await error_page(
            request, 400, f"“{day_text}” is not a day of {audit.month.label} to flag: use YYYY-MM-DD."
        )
    lines: list[MeterMonth] = []
    totals = SiteTotals()
    async for item in stream_site_report(db, site_id=site.id, year=year, month=month, now=now):
        if isinstance(item, MeterMonth) and len(lines) < SHOWN:
            lines.append(item)
        elif isinstance(item, SiteTotals):
            totals = item
    return await render(
        request,
        "site_month.html",
        {
            "site": site,
            "audit": audit,
            "charts": audit_charts(audit.days),
            "lines": lines,
            "totals": totals,
            "shown": SHOWN,
            "quality": flags,
            "day": day,
            "today": local_day(site.timezone, now),
        },
    )
