"""The command line's side of the audit trail and of legacy ingest.

`gateway audit` lists the trail; `gateway meter legacy-ingest METER on|off` lets one old meter
post without a token (or stops it). Every CLI command that changes state is written to the
trail by `record_cli_change` as `cli:<os user>` from `local`, after it succeeded.
"""

from __future__ import annotations

import argparse
import getpass
from typing import Any

from marshmallow import ValidationError

from gateway.settings import Settings
from schemas.admin import AuditQuery
from schemas.replies import AuditEventOut
from storage import audit
from storage.clock import Clock
from storage.db.engine import Database
from storage.errors import InvalidInput
from storage.registry import meters


def _event_json(event: Any) -> dict[str, Any]:
    return dict(AuditEventOut().dump(event))


# Arguments that say how the command ran, not what it changed.
NOT_DETAILS = frozenset({"func", "database_url", "json", "audit", "migrate", "exclusive", "password_stdin"})


async def cmd_meter_legacy_ingest(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Allow (on) or stop (off) one meter posting readings without a token."""
    if not args.meter_no.isdigit() or int(args.meter_no) <= 0:
        raise InvalidInput(f"meter number must be a positive whole number, got {args.meter_no!r}")
    allowed = args.state == "on"
    meter, _unlinked = await meters.edit_meter(db, meter_no=int(args.meter_no), changes={"legacy_ingest": allowed})
    return {"meter_no": str(meter.meter_no), "site_id": meter.site_id, "legacy_ingest": meter.legacy_ingest}


async def cmd_audit(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """The audit trail, oldest first, 500 events after --after (an id or a time), of --site or all."""
    try:
        query = AuditQuery().load({} if args.after is None else {"after": args.after})
    except ValidationError as err:
        raise InvalidInput(f"--after: {' '.join(err.messages['after'])}") from None  # type: ignore[call-overload]
    after_id, after_time = query.get("after", (None, None))
    events = await audit.list_events(db, sites=None, site_id=args.site, after_id=after_id, after_time=after_time)
    return {"events": [_event_json(event) for event in events]}


def print_events(events: list[dict[str, Any]]) -> None:
    """One line per event, tab-separated, for a terminal."""
    for e in events:
        details = " ".join(f"{k}={v}" for k, v in e["details"].items())
        site = e["site_id"] or "-"
        print("\t".join((str(e["id"]), e["at"], e["actor"], e["address"], site, e["action"], e["target"], details)))


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return "unknown"


# What a command's result names its object by, per kind of action.
TARGET_FIELDS = {
    "site": ("site_id",),
    "meter": ("old_meter_no", "meter_no"),
    "dg": ("dg_no",),
    "key": ("name",),
    "user": ("username",),
}


def _target(action: str, result: dict[str, Any]) -> str:
    for name in TARGET_FIELDS.get(action.partition(".")[0], ()):
        if result.get(name):
            return str(result[name])
    return ""


async def record_cli_change(args: argparse.Namespace, db: Database, result: dict[str, Any] | None) -> None:
    """Append a successful state-changing command (its parser's `audit` default names the action)."""
    action = getattr(args, "audit", None)
    if action is None:
        return
    result = result or {}
    sites = result.get("sites")
    site_id = result.get("site_id") or getattr(args, "site", None)
    if isinstance(sites, list) and len(sites) == 1 and sites[0] != "*":
        site_id = sites[0]
    if isinstance(site_id, list):  # `key create --site` is repeatable
        site_id = site_id[0] if len(site_id) == 1 and site_id[0] != "*" else None
    details = {k: v for k, v in vars(args).items() if k not in NOT_DETAILS and v is not None}
    await audit.record(
        db,
        actor=f"cli:{_os_user()}",
        action=action,
        at=Clock().now(),
        site_id=site_id,
        target=_target(action, result),
        address="local",
        details=details,
    )
