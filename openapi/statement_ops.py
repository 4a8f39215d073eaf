"""The spec of the monthly statement and site report routes."""

from __future__ import annotations

import functools
from typing import Any

from openapi.other_ops import ADMIN_READ_ERRORS, METER_NO, SITE_ID, Ref, admin_op, reply
from schemas import admin_replies as admin_reply

CSV = "text/csv"
MONTH = {
    "in": "query",
    "name": "month",
    "required": True,
    "description": "The calendar month in the site's time zone, YYYY-MM (not after the current one)",
    "schema": {"type": "string", "pattern": r"^2[0-9]{3}-(0[1-9]|1[0-2])$"},
}
DAY = {
    "in": "query",
    "name": "day",
    "required": True,
    "description": "The site's local day, YYYY-MM-DD (not in the future)",
    "schema": {"type": "string", "format": "date"},
}
FORMAT = {
    "in": "query",
    "name": "format",
    "required": False,
    "description": "`json` (default) or `csv` (a text/csv download)",
    "schema": {"type": "string", "enum": ["json", "csv"]},
}


def with_csv(responses: dict[str, Any], description: str) -> dict[str, Any]:
    """Add the `format=csv` download beside the JSON of a 200 reply."""
    responses["200"]["content"][CSV] = {"schema": {"type": "string"}}
    responses["200"]["description"] += f"; with format=csv: {description}"
    return responses


def statement_ops(ref: Ref) -> dict[tuple[str, str], dict[str, Any]]:
    """A meter's monthly statement, a site's month report, data quality and energy audit."""
    op, ok = functools.partial(admin_op, ref), functools.partial(reply, ref)
    base = "/api/v1/admin"
    return {
        ("GET", f"{base}/meters/{{meter_no}}/statement"): op(
            "A meter's statement for a calendar month: opening balance, daily energy, rates and amounts, fixed "
            "charges, recharges, adjustments, cuts and restores, closing balance and the check line",
            with_csv(ok(admin_reply.StatementReply), "the statement as CSV sections"),
            ADMIN_READ_ERRORS, parameters=[METER_NO, MONTH, FORMAT]),
        ("GET", f"{base}/sites/{{site_id}}/report"): op(
            "A site's month for its accountant: per meter grid and DG kWh, billed ₹ by component, recharges, "
            "opening and closing balances, days cut, half hours received of expected; and the totals (streamed)",
            with_csv(ok(admin_reply.SiteReport), "one line per meter and a `total` line"),
            ADMIN_READ_ERRORS, parameters=[SITE_ID, MONTH, FORMAT]),
        ("GET", f"{base}/sites/{{site_id}}/quality"): op(
            "A site-day's data-quality flags per meter: missing half hours, spikes, zero runs while the site "
            "consumed, late packets, conflicts (flagged, never changed)",
            ok(admin_reply.SiteQuality), ADMIN_READ_ERRORS, parameters=[SITE_ID, DAY]),
        ("GET", f"{base}/sites/{{site_id}}/audit"): op(
            "A site's energy audit of a month (not the audit trail): per local day and for the month, the grid "
            "incomer's kWh against the flats' billed grid kWh (loss, %), the DGs' kWh against the flats' DG kWh, "
            "diesel burnt, refills and DG kWh per litre; null where data is missing",
            ok(admin_reply.EnergyAuditReply), ADMIN_READ_ERRORS, parameters=[SITE_ID, MONTH]),
    }  # fmt: skip
