"""`gateway tariff set|list`, `gateway site set` and `gateway site holiday add|remove|list`: the
prepaid policy from the command line, through the same schemas as the admin API."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.registry_cli import load_flags
from gateway.settings import Settings
from schemas.admin import SiteEdit, SiteOut
from schemas.policy import HolidayCreate, HolidayOut, TariffCreate, TariffOut
from storage.clock import Clock
from storage.db.engine import Database
from storage.money import policy, tariffs
from storage.registry import sites


async def cmd_tariff_set(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Add a tariff row from `--from` (site local time, default now)."""
    given = {"grid": args.grid, "dg": args.dg, "fixed_daily": args.fixed_daily, "effective_from": args.effective_from}
    row = await tariffs.set_tariff(
        db, site_id=args.site_id, now=Clock().now(), created_by="cli", **load_flags(TariffCreate(), given)
    )
    return dict(TariffOut().dump(row))


async def cmd_tariff_list(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """A site's tariff history, oldest first."""
    return {"tariffs": TariffOut(many=True).dump(await tariffs.list_tariffs(db, site_id=args.site_id))}


async def cmd_site_set(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Change a site's prepaid policy settings."""
    given = {
        "grace_amount": args.grace,
        "alert_thresholds": args.alert_thresholds,
        "no_cut_hours": args.no_cut_hours,
        "no_cut_weekdays": args.no_cut_weekdays,
        "auto_cut": args.auto_cut,
    }
    site = await sites.edit_site(db, site_id=args.site_id, changes=load_flags(SiteEdit(), given), now=Clock().now())
    return dict(SiteOut().dump(site))


async def cmd_holiday_add(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Add (or rename) a holiday."""
    values = load_flags(HolidayCreate(), {"date": args.date, "name": args.name})
    holiday = await policy.add_holiday(db, site_id=args.site_id, day=values["date"], name=values["name"])
    return {"site_id": args.site_id, **HolidayOut().dump(holiday)}


async def cmd_holiday_remove(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Remove a holiday."""
    day = load_flags(HolidayCreate(), {"date": args.date})["date"]
    await policy.remove_holiday(db, site_id=args.site_id, day=day)
    return {"site_id": args.site_id, "date": day.isoformat(), "removed": True}


async def cmd_holiday_list(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """A site's holidays."""
    return {"holidays": HolidayOut(many=True).dump(await policy.list_holidays(db, site_id=args.site_id))}


def add_commands(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    site: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> None:
    """Register the commands under `gateway tariff` and `gateway site`."""
    tariff = sub.add_parser("tariff", help="tariff history").add_subparsers(dest="tariff_command", required=True)
    tariff_set = tariff.add_parser("set", parents=[common], help="add a tariff from a local date-time (default now)")
    tariff_set.add_argument("site_id")
    tariff_set.add_argument("--grid", required=True, help="₹ per grid kWh")
    tariff_set.add_argument("--dg", required=True, help="₹ per DG kWh")
    tariff_set.add_argument("--fixed-daily", help="₹ per meter per local day (default 0)")
    tariff_set.add_argument("--from", dest="effective_from", help='site local time "YYYY-MM-DD HH:MM" (default now)')
    tariff_set.set_defaults(func=cmd_tariff_set, audit="tariff.set")
    tariff_list = tariff.add_parser("list", parents=[common], help="a site's tariffs, oldest first")
    tariff_list.add_argument("site_id")
    tariff_list.set_defaults(func=cmd_tariff_list)

    site_set = site.add_parser("set", parents=[common], help="change a site's prepaid policy")
    site_set.add_argument("site_id")
    site_set.add_argument("--grace", help="₹ of credit before a cut (cut at or below -grace)")
    site_set.add_argument("--alert-thresholds", help="₹ amounts that alert once per crossing, e.g. 200,50,0")
    site_set.add_argument("--no-cut-hours", help="local hours without cuts, e.g. 18:00-08:00 ('' for none)")
    site_set.add_argument("--no-cut-weekdays", help="weekdays without cuts, e.g. sun or sat,sun ('' for none)")
    site_set.add_argument("--auto-cut", action=argparse.BooleanOptionalAction, default=None)
    site_set.set_defaults(func=cmd_site_set, audit="site.edit")
    holiday = site.add_parser("holiday", help="holidays without cuts").add_subparsers(
        dest="holiday_command", required=True
    )
    for name, func, text in (
        ("add", cmd_holiday_add, "add a holiday"),
        ("remove", cmd_holiday_remove, "remove a holiday"),
    ):
        command = holiday.add_parser(name, parents=[common], help=text)
        command.add_argument("site_id")
        command.add_argument("date", help="YYYY-MM-DD")
        if name == "add":
            command.add_argument("--name", default="")
        command.set_defaults(func=func, audit=f"holiday.{name}")
    holiday_list = holiday.add_parser("list", parents=[common], help="a site's holidays")
    holiday_list.add_argument("site_id")
    holiday_list.set_defaults(func=cmd_holiday_list)
