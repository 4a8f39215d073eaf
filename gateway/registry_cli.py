"""`gateway site add`, `gateway meter add|replace|legacy-ingest`, `gateway dg add` and
`gateway key create|list|revoke|rotate`: sites, meters, DGs and API keys from the command line,
by the admin API's rules (`schemas.fields`, `schemas.admin`)."""

from __future__ import annotations

import argparse
from decimal import Decimal
from typing import Any

from marshmallow import Schema, ValidationError

from gateway.audit_cli import cmd_meter_legacy_ingest
from gateway.settings import Settings
from schemas.admin import MeterChangeCreate, MeterChangeOut, SiteOut
from schemas.fields import amount_flag, describe_errors, known_timezone, meter_number
from storage.db.engine import Database
from storage.errors import InvalidInput
from storage.registry import dgs, keys, meter_changes, meters, sites


def load_flags(schema: Schema, given: dict[str, Any]) -> dict[str, Any]:
    """Flags through the API's schema (unset flags left out); InvalidInput naming the flag."""
    try:
        return dict(schema.load({name: value for name, value in given.items() if value is not None}))
    except ValidationError as err:
        raise InvalidInput(describe_errors(err.messages)) from None  # type: ignore[arg-type]


def _meter_no(text: str) -> int:
    """A meter number argument (schemas.fields.meter_number, the API's rule)."""
    meter_no = meter_number(text)
    if meter_no is None:
        raise InvalidInput(f"meter number must be a positive whole number, got {text!r}")
    return meter_no


def _amount(text: str, flag: str, *, places: int = 2, minimum: Decimal | None = None) -> Decimal:
    """A money or kWh flag: a plain decimal, by the API's rules (schemas.fields.Amount)."""
    try:
        return amount_flag(text, flag, places=places, minimum=minimum)
    except ValidationError as err:
        raise InvalidInput(str(err.messages[0])) from None  # type: ignore[index]


def _timezone(name: str) -> str:
    """A site's timezone flag (schemas.fields.known_timezone, the API's rule)."""
    if not known_timezone(name):
        raise InvalidInput(f"unknown timezone {name!r}", {"timezone": ["Unknown IANA timezone."]})
    return name


def _key_json(api_key: Any) -> dict[str, Any]:
    return {
        "name": api_key.name,
        "role": api_key.role,
        "sites": api_key.sites,
        "created_at": api_key.created_at.isoformat(),
        "revoked": api_key.revoked_at is not None,
    }


async def cmd_site_add(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Register a site."""
    site = await sites.add_site(
        db,
        site_id=args.site_id,
        name=args.name,
        region=args.region,
        timezone=_timezone(args.timezone),
        tariff_grid=_amount(args.tariff_grid, "--tariff-grid", minimum=Decimal(0)),
        tariff_dg=_amount(args.tariff_dg, "--tariff-dg", minimum=Decimal(0)),
        auto_cut=args.auto_cut,
    )
    return dict(SiteOut().dump(site))


async def cmd_meter_add(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Register a meter; its device token is printed once."""
    created = await meters.add_meter(
        db,
        meter_no=_meter_no(args.meter_no),
        site_id=args.site,
        unit_no=args.unit,
        consumer_name=args.name,
        fin_no=args.fin,
        balance=_amount(args.balance, "--balance"),
        start_grid=_amount(args.start_grid, "--start-grid", places=3, minimum=Decimal(0)),
        start_dg=_amount(args.start_dg, "--start-dg", places=3, minimum=Decimal(0)),
        role=args.role,
        dg_no=args.dg_no,
    )
    meter = created.meter
    return {
        "meter_no": str(meter.meter_no),
        "site_id": meter.site_id,
        "unit_no": meter.unit_no,
        "balance": str(meter.balance),
        "role": meter.role,
        "dg_no": meter.dg_no,
        "token": created.token,
    }


async def cmd_meter_replace(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Replace a meter by a new one (same checks as the admin API); the new meter's token is printed once."""
    given = {
        "site_id": args.site,
        "old_meter_no": args.old_meter_no,
        "new_meter_no": args.new_meter_no,
        "meter_change_date": args.date,
        "reading_start_date": args.reading_start,
        "new_start_dg": args.new_start_dg,
        "new_start_grid": args.new_start_grid,
    }
    replaced = await meter_changes.replace_meter(db, **load_flags(MeterChangeCreate(), given))
    return {**MeterChangeOut().dump(replaced.change), "token": replaced.token}


async def cmd_dg_add(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Register a diesel generator."""
    dg = await dgs.add_dg(db, site_id=args.site, dg_no=args.dg_no, meter_no=args.meter or "")
    return {"site_id": dg.site_id, "dg_no": dg.dg_no, "meter_no": dg.meter_no, "status": dg.status}


async def cmd_key_create(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Create an API key; the key is printed once."""
    created = await keys.create_key(db, name=args.name, role=args.role, sites=args.site)
    return {**_key_json(created.api_key), "key": created.key}


async def cmd_key_list(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """List every key (never the secrets)."""
    return {"keys": [_key_json(k) for k in await keys.list_keys(db)]}


async def cmd_key_revoke(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Revoke a key by name."""
    return _key_json(await keys.revoke_key(db, name=args.name))


async def cmd_key_rotate(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Give a key a new secret, printed once."""
    rotated = await keys.rotate_key(db, name=args.name)
    return {**_key_json(rotated.api_key), "key": rotated.key}


def add_commands(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> argparse._SubParsersAction:  # type: ignore[type-arg]
    """Register the commands under `gateway site`, `meter`, `dg` and `key`; returns `site`'s
    subcommands, which the prepaid policy's commands join (`gateway.prepaid_cli`)."""
    site = sub.add_parser("site", help="sites").add_subparsers(dest="site_command", required=True)
    site_add = site.add_parser("add", parents=[common], help="register a site")
    site_add.add_argument("site_id")
    site_add.add_argument("--name", required=True)
    site_add.add_argument("--region", required=True)
    site_add.add_argument("--timezone", default="Asia/Kolkata")
    site_add.add_argument("--tariff-grid", default="8.00")
    site_add.add_argument("--tariff-dg", default="20.00")
    site_add.add_argument("--auto-cut", action=argparse.BooleanOptionalAction, default=True)
    site_add.set_defaults(func=cmd_site_add, audit="site.create")

    meter = sub.add_parser("meter", help="meters").add_subparsers(dest="meter_command", required=True)
    meter_add = meter.add_parser("add", parents=[common], help="register a meter (prints its token)")
    meter_add.add_argument("meter_no")
    meter_add.add_argument("--site", required=True)
    meter_add.add_argument("--unit", required=True)
    meter_add.add_argument("--name", default="")
    meter_add.add_argument("--fin", default="")
    meter_add.add_argument("--balance", default="0")
    meter_add.add_argument("--start-grid", default="0")
    meter_add.add_argument("--start-dg", default="0")
    meter_add.add_argument(
        "--role", default="flat", help="flat (billed), or a bulk meter never billed: incomer, dg (with --dg-no)"
    )
    meter_add.add_argument("--dg-no", help="the site's DG that a --role dg meter measures")
    meter_add.set_defaults(func=cmd_meter_add, audit="meter.create")
    meter_replace = meter.add_parser(
        "replace", parents=[common], help="replace a meter by a new one (prints the new token)"
    )
    meter_replace.add_argument("old_meter_no")
    meter_replace.add_argument("new_meter_no")
    meter_replace.add_argument("--site", required=True)
    meter_replace.add_argument("--date", required=True, help="meter change date, YYYY-MM-DD")
    meter_replace.add_argument("--reading-start", help="new meter's reading start date (default: --date)")
    meter_replace.add_argument("--new-start-dg", help="new meter's DG register at install (default 0)")
    meter_replace.add_argument("--new-start-grid", help="new meter's grid register at install (default 0)")
    meter_replace.set_defaults(func=cmd_meter_replace, audit="meter.replace")
    legacy = meter.add_parser(
        "legacy-ingest", parents=[common], help="let one meter post readings without a token (on), or stop it (off)"
    )
    legacy.add_argument("meter_no")
    legacy.add_argument("state", choices=("on", "off"))
    legacy.set_defaults(func=cmd_meter_legacy_ingest, audit="meter.edit")

    dg = sub.add_parser("dg", help="diesel generators").add_subparsers(dest="dg_command", required=True)
    dg_add = dg.add_parser("add", parents=[common], help="register a DG")
    dg_add.add_argument("dg_no")
    dg_add.add_argument("--site", required=True)
    dg_add.add_argument("--meter")
    dg_add.set_defaults(func=cmd_dg_add, audit="dg.create")

    key = sub.add_parser("key", help="API keys").add_subparsers(dest="key_command", required=True)
    key_create = key.add_parser("create", parents=[common], help="create a key (prints it once)")
    key_create.add_argument("--name", required=True)
    key_create.add_argument("--role", required=True, choices=keys.ROLES)
    key_create.add_argument("--site", required=True, action="append", help="site id, repeatable; '*' for all")
    key_create.set_defaults(func=cmd_key_create, audit="key.create")
    key.add_parser("list", parents=[common], help="list keys").set_defaults(func=cmd_key_list)
    for name, func in (("revoke", cmd_key_revoke), ("rotate", cmd_key_rotate)):
        p = key.add_parser(name, parents=[common], help=f"{name} a key")
        p.add_argument("name")
        p.set_defaults(func=func, audit=f"key.{name}")

    return site
