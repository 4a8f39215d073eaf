"""`gateway report SITE --month YYYY-MM [--output FILE]`, and the report's CSV, which the HTTP
route streams too (gateway/site_reports.py). Kept apart from the HTTP module so the command line
imports no metrics before `gateway serve --workers N` has chosen where they live.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import AsyncIterator
from typing import Any, TextIO

from marshmallow import ValidationError

from gateway.settings import Settings
from schemas import statements as wire
from schemas.energy_audit import EnergyBalanceOut
from storage.clock import Clock
from storage.db.engine import Database
from storage.errors import InvalidInput
from storage.reads.energy_audit import EnergyBalance, site_energy_audit
from storage.reads.site_report import MeterMonth, ReportHeader, SiteTotals, stream_site_report

BATCH = 500  # rows per write
ROW_COLUMNS = ("meter_no", "unit_no", "consumer_name")
SUM_COLUMNS = tuple(name for name in wire.SiteReportRowOut._declared_fields if name not in ROW_COLUMNS)
CSV_HEADER = (*ROW_COLUMNS, *SUM_COLUMNS)


Items = AsyncIterator[ReportHeader | MeterMonth | SiteTotals]


def csv_line(item: MeterMonth | SiteTotals) -> list[Any]:
    """A meter's line, or the totals line (`total`, the number of meters, no consumer)."""
    if isinstance(item, SiteTotals):
        return ["total", f"{item.meters} meters", "", *(getattr(item, name) for name in SUM_COLUMNS)]
    return [item.meter_no, item.unit_no, item.consumer_name, *(getattr(item, name) for name in SUM_COLUMNS)]


async def csv_chunks(report: Items, audit: EnergyBalance) -> AsyncIterator[str]:
    """The report as CSV text, `BATCH` rows per chunk (the header line first), then after an
    empty line the month's energy audit totals (`audit`: its bulk meters' side, the flats' kWh
    taken from the report's totals), a line per figure (empty: not measured)."""
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\n")
    out.writerow(CSV_HEADER)
    rows = 0
    async for item in report:
        if isinstance(item, ReportHeader):
            continue
        if isinstance(item, SiteTotals):
            audit = audit.with_flats(item.grid_kwh, item.dg_kwh)
        out.writerow(csv_line(item))
        rows += 1
        if rows % BATCH == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    out.writerow([])
    out.writerow(["energy_audit", "month"])
    for name, value in EnergyBalanceOut().dump(audit).items():
        out.writerow([name, "" if value is None else value])
    yield buffer.getvalue()


async def cmd_report(args: argparse.Namespace, settings: Settings, db: Database) -> None:
    """`gateway report SITE --month YYYY-MM [--output FILE]`: the site's month as CSV, with its
    energy audit totals at the end."""
    try:
        year, month = wire.SiteReportQuery().load({"month": args.month})["month"]
    except ValidationError:
        raise InvalidInput(f"--month: not a valid month: expected YYYY-MM, got {args.month!r}") from None
    now = Clock().now()
    # The bulk meters' side (an unknown site or a month not begun fails here, before any output).
    audit = await site_energy_audit(db, site_id=args.site_id, year=year, month=month, now=now, flats=False)
    report = stream_site_report(db, site_id=args.site_id, year=year, month=month, now=now)
    out: TextIO = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout  # noqa: ASYNC230 (a CLI run: nothing else on its loop)
    try:
        async for chunk in csv_chunks(report, audit.totals):
            out.write(chunk)
    finally:
        await report.aclose()
        if out is not sys.stdout:
            out.close()


def add_report_command(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register `gateway report` on the CLI's subcommands."""
    report = sub.add_parser("report", parents=[common], help="a site's month per meter, as CSV")
    report.add_argument("site_id")
    report.add_argument("--month", required=True, help="YYYY-MM, in the site's time zone")
    report.add_argument("--output", help="write the CSV to this file (default: standard output)")
    report.set_defaults(func=cmd_report)
