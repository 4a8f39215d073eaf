"""A site's month for its accountant over HTTP and on the command line, streamed; and a
site-day's data-quality flags (`GET /api/v1/admin/sites/{site_id}/quality?day=`, counted in
/metrics as `gateway_quality_flags{site_id,kind}`); and a site's energy audit of a month (the
month's loss % in /metrics as `gateway_energy_loss_percent{site_id,source}`).

`GET /api/v1/admin/sites/{site_id}/report?month=YYYY-MM[&format=csv]` (its CSV and the CLI's,
`gateway report`, are written by `gateway.report_cli`), with the month's energy audit totals
(the audit per day: `GET /api/v1/admin/sites/{site_id}/audit?month=YYYY-MM`). Rows are written
as the store yields them (storage/reads/site_report.py), a few hundred at a time, so a 10,000-meter
site is never built in memory; the JSON reply is the `SiteReport` envelope written piece by piece.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import Gauge

from gateway.admin import admin_only, ok, site_in_scope
from gateway.app_keys import CLOCK, DB, SETTINGS
from gateway.auth import Principal
from gateway.report_cli import BATCH, csv_chunks
from gateway.settings import Settings
from schemas import statements as wire
from schemas.energy_audit import EnergyBalanceOut
from storage.reads import energy_audit, quality
from storage.reads.energy_audit import EnergyBalance
from storage.reads.site_report import MeterMonth, ReportHeader, SiteTotals, stream_site_report

routes = web.RouteTableDef()


async def json_chunks(
    header: ReportHeader, report: AsyncIterator[ReportHeader | MeterMonth | SiteTotals], audit: EnergyBalance
) -> AsyncIterator[str]:
    """The `SiteReport` envelope, written piece by piece: header fields, meters, totals, energy audit."""
    head = wire.SiteReportHeaderOut().dump(header)
    opening = json.dumps({"status": "success", "message": "Site report", "data": head})
    yield opening[:-2] + ', "meters": ['  # the data object stays open for the meters and totals
    row_schema, parts, first = wire.SiteReportRowOut(), [], True
    async for item in report:
        if isinstance(item, SiteTotals):
            totals = json.dumps(wire.SiteTotalsOut().dump(item))
            audit = audit.with_flats(item.grid_kwh, item.dg_kwh)  # the flats' kWh: the report's own sums
            energy = json.dumps(EnergyBalanceOut().dump(audit))
            yield "".join(parts) + f'], "totals": {totals}, "energy_audit": {energy}}}}}'
            return
        parts.append(("" if first else ",") + json.dumps(row_schema.dump(item)))
        first = False
        if len(parts) >= BATCH:
            yield "".join(parts)
            parts = []


async def _stream(
    request: web.Request, chunks: AsyncIterator[str], content_type: str, headers: dict[str, str]
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": f"{content_type}; charset=utf-8", **headers})
    await response.prepare(request)
    async for chunk in chunks:
        await response.write(chunk.encode())
    await response.write_eof()
    return response


@routes.get("/api/v1/admin/sites/{site_id}/report")
@admin_only
async def site_report(request: web.Request, principal: Principal) -> web.StreamResponse:
    """The site's month, one line per meter and the totals, as JSON or CSV (streamed)."""
    site_id = site_in_scope(request, principal)
    args = wire.SiteReportQuery().load(request.query)
    year, month = args["month"]
    db, now = request.app[DB], request.app[CLOCK].now()
    # Unknown site, bad month: an error reply before anything is sent.
    audit = await energy_audit.site_energy_audit(db, site_id=site_id, year=year, month=month, now=now, flats=False)
    report = stream_site_report(db, site_id=site_id, year=year, month=month, now=now)
    try:
        header = await anext(report)  # unknown site, bad month: an error reply before anything is sent
        assert isinstance(header, ReportHeader)
        if args["format"] == "csv":
            filename = f"report-{site_id}-{header.month.label}.csv"
            disposition = {"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"}
            return await _stream(request, csv_chunks(report, audit.totals), "text/csv", disposition)
        return await _stream(request, json_chunks(header, report, audit.totals), "application/json", {})
    finally:
        await report.aclose()  # a client that went away: the read transaction ends here


def quality_rules(settings: Settings) -> quality.QualityRules:
    """The data-quality thresholds of the GATEWAY_QUALITY_* settings (the API's and the dashboard's)."""
    return quality.QualityRules(
        spike_factor=settings.quality_spike_factor,
        zero_run=settings.quality_zero_run,
        late_minutes=settings.quality_late_minutes,
    )


ENERGY_LOSS = Gauge(
    "gateway_energy_loss_percent",
    "Energy no flat paid for, as a % of the energy bought, of the site-month last audited",
    ["site_id", "source"],
)
QUALITY_FLAGS = Gauge(
    "gateway_quality_flags", "Data-quality flags of the site-day last listed, by kind", ["site_id", "kind"]
)


@routes.get("/api/v1/admin/sites/{site_id}/quality")
@admin_only
async def site_quality(request: web.Request, principal: Principal) -> web.Response:
    """The data-quality flags of a site's local day (flagged, never changed)."""
    site_id = site_in_scope(request, principal)
    day = wire.QualityQuery().load(request.query)["day"]
    rules = quality_rules(request.app[SETTINGS])
    found = await quality.site_quality(
        request.app[DB], site_id=site_id, day=day, now=request.app[CLOCK].now(), rules=rules
    )
    for kind, count in found.counts.items():
        QUALITY_FLAGS.labels(site_id=site_id, kind=kind).set(count)
    return ok("Data quality", wire.SiteQualityOut().dump(found))


@routes.get("/api/v1/admin/sites/{site_id}/audit")
@admin_only
async def site_energy_audit(request: web.Request, principal: Principal) -> web.Response:
    """The site's energy audit of a month: incomer and DG kWh against the flats' billed kWh, per
    local day and for the month, with DG kWh per litre (not the audit trail: `/api/v1/admin/audit`)."""
    site_id = site_in_scope(request, principal)
    year, month = wire.EnergyAuditQuery().load(request.query)["month"]
    found = await energy_audit.site_energy_audit(
        request.app[DB], site_id=site_id, year=year, month=month, now=request.app[CLOCK].now()
    )
    for source, loss in (("grid", found.totals.grid_loss_pct), ("dg", found.totals.dg_loss_pct)):
        if loss is not None:
            ENERGY_LOSS.labels(site_id=site_id, source=source).set(float(loss))
        else:  # unknown: no sample rather than a stale or made-up one
            with contextlib.suppress(KeyError):
                ENERGY_LOSS.remove(site_id, source)
    return ok("Energy audit", wire.EnergyAuditOut().dump(found))
