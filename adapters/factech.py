"""The Factech envelope mapping: the one place that knows how iSocietyManager's document spells
each call's replies.

What lives here and nowhere else: each call's success message and error wording (`error` or
`Error`, "Not Found", "Not Details", ...), which error envelopes carry `"count": "0"`, `data` or
a capitalised `Remarks`, values as strings (kWh and money with two decimals), times as
`YYYY-MM-DD HH:mm:ss` in the site's timezone, and the HTTP status of each outcome.

Each call's envelope spelling (success and error wording, `count`, `Remarks`, HTTP statuses) is
wire format and lives in `schemas.factech_envelopes`; this module turns store results into the
records inside those envelopes. Handlers hand store results to the functions here and get back a
`Reply` (body + HTTP status) to send as JSON.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

from schemas.factech_envelopes import (
    DG_FUEL,
    DG_READING,
    DG_SENSING,
    DG_STATUS,
    METER_CHANGES,
    METER_READING,
    METER_STATUS,
    RECHARGE,
    RECHARGE_STATUS,
    SITE_READINGS,
    Call,
    Reply,
    success,
    waiting,
)
from storage.db.event_models import DgSubscription
from storage.db.models import MeterChange
from storage.errors import NotFound, Refused
from storage.money.recharge import RechargeView
from storage.reads.latest import DgState, MeterState

CENT = Decimal("0.01")
DATE_FORMAT = "%Y-%m-%d"


def two_decimals(value: Decimal | None) -> str:
    """kWh or money as the document's string with two decimals ("" when unknown)."""
    if value is None:
        return ""
    rounded = value.quantize(CENT, rounding=ROUND_HALF_UP)
    return str(rounded) if rounded else "0.00"  # never "-0.00"


def local_time(instant: dt.datetime | None, zone: zoneinfo.ZoneInfo) -> str:
    """A UTC instant as "YYYY-MM-DD HH:mm:ss" in the site's timezone ("" when never)."""
    if instant is None:
        return ""
    # isoformat is half again as fast as strftime, which counts for a site of 10,000 meters;
    # the first 19 characters are the document's format, without the "+05:30" offset.
    return instant.astimezone(zone).isoformat(" ", "seconds")[:19]


def _meter_record(meter: MeterState, zone: zoneinfo.ZoneInfo) -> dict[str, str]:
    return {
        "unit_no": meter.unit_no,
        "meter_no": str(meter.meter_no),
        "dg": two_decimals(meter.dg_kwh),
        "grid": two_decimals(meter.grid_kwh),
        "date_time": local_time(meter.last_reading_at, zone),
        "balance": two_decimals(meter.balance),
        # A retired meter supplies nothing, whatever its relay last said.
        "status": "On" if meter.relay_on and meter.active else "Off",
    }


def site_readings(meters: Sequence[MeterState]) -> Reply:
    """Call 1: every active meter of a site (the store answers NotFound for none)."""
    zone = zoneinfo.ZoneInfo(meters[0].timezone)  # one site, one timezone
    return success(SITE_READINGS, [_meter_record(meter, zone) for meter in meters])


def meter_reading(meter: MeterState) -> Reply:
    """Call 2: one meter."""
    return success(METER_READING, _meter_record(meter, zoneinfo.ZoneInfo(meter.timezone)))


def meter_changes(changes: Sequence[MeterChange]) -> Reply:
    """Call 5: changes between two dates; none is the document's "Not Details"."""
    if not changes:
        raise NotFound("no meter changes in that period")
    records = [
        {
            "unit_no": change.unit_no,
            "old_meter_no": str(change.old_meter_no),
            "old_start_dg": two_decimals(change.old_start_dg),
            "old_end_dg": two_decimals(change.old_end_dg),
            "old_start_grid": two_decimals(change.old_start_grid),
            "old_end_grid": two_decimals(change.old_end_grid),
            "new_meter_no": str(change.new_meter_no),
            "new_start_dg": two_decimals(change.new_start_dg),
            "new_start_grid": two_decimals(change.new_start_grid),
            "meter_change_date": change.meter_change_date.strftime(DATE_FORMAT),
            "reading_start_date": change.reading_start_date.strftime(DATE_FORMAT),
        }
        for change in changes
    ]
    return success(METER_CHANGES, records)


def dg_reading(dg: DgState) -> Reply:
    """Call 10: the DG energy meter's register and when it was read."""
    zone = zoneinfo.ZoneInfo(dg.timezone)
    return success(
        DG_READING,
        {
            "dg_no": dg.dg_no,
            "meter_no": dg.meter_no,
            "reading": two_decimals(dg.reading_kwh),
            "date_time": local_time(dg.reading_at, zone),
        },
    )


def dg_sensing(subscription: DgSubscription) -> Reply:
    """Call 11: the document's `dg_no` and `url`, plus the signing `secret`, shown this once."""
    return success(DG_SENSING, {"dg_no": subscription.dg_no, "url": subscription.url, "secret": subscription.secret})


def dg_status(dg: DgState) -> Reply:
    """Call 12: ON or OFF."""
    return success(DG_STATUS, {"dg_no": dg.dg_no, "status": dg.status})


def dg_fuel(dg: DgState) -> Reply:
    """Call 13: fuel in litres; the time's key is `datetime`, as the document spells it."""
    zone = zoneinfo.ZoneInfo(dg.timezone)
    return success(
        DG_FUEL,
        {
            "dg_no": dg.dg_no,
            "fuel_balance": two_decimals(dg.fuel_litres),
            "datetime": local_time(dg.fuel_at, zone),
        },
    )


def _recharge_record(view: RechargeView) -> dict[str, str]:
    recharge = view.recharge
    zone = zoneinfo.ZoneInfo(view.timezone)
    return {
        "unit_no": view.unit_no,
        "meter_no": str(recharge.meter_no),
        "amount": two_decimals(recharge.amount),
        "transaction_id": recharge.transaction_id,
        "token": recharge.token or "",
        "date_time": local_time(recharge.applied_at, zone),  # when the credit was applied
        "balance": two_decimals(recharge.balance_after if recharge.state == "success" else view.balance),
        "remarks": _recharge_remarks(recharge.state, recharge.headend_state),
    }


def _recharge_remarks(state: str, headend_state: str) -> str:
    if state == "waiting":
        return {
            "queued": "queued by the head-end",
            "unknown": "not yet received by the head-end",
        }.get(headend_state, "the head-end did not confirm it yet")
    return "" if state == "success" else "the head-end is being asked"


def recharged(view: RechargeView) -> Reply:
    """Call 3: applied (200 with token and balance) or waiting (202); a refusal is an error."""
    state = view.recharge.state
    if state == "error":
        raise Refused(view.recharge.reason or "refused by the head-end")
    record = _recharge_record(view)
    return success(RECHARGE, record) if state == "success" else waiting(RECHARGE, record)


def recharge_status(view: RechargeView) -> Reply:
    """Call 4: success, waiting (202), or the document's error naming the reason (200: the
    transaction is known, it is the recharge that failed)."""
    recharge = view.recharge
    if recharge.state == "error":
        reason = recharge.reason or "a refusal by the head-end"
        body = {"status": RECHARGE_STATUS.error_word, "message": f"{RECHARGE_STATUS.failed} due to {reason}"}
        return Reply({**body, "data": None})
    record = {
        "unit_no": view.unit_no,
        "meter_no": str(recharge.meter_no),
        "transaction_id": recharge.transaction_id,
        "remarks": _recharge_remarks(recharge.state, recharge.headend_state),
    }
    if recharge.state == "success":
        return success(RECHARGE_STATUS, record)
    return waiting(RECHARGE_STATUS, record)


def meter_command(call: Call, *, unit_no: str, meter_no: int) -> Reply:
    """Calls 6, 7, 9: the meter and the state it is now in."""
    word = {6: "STARTED", 7: "STOPPED", 9: "Load Updated"}[call.number]
    return success(call, {"unit_no": unit_no, "meter_no": str(meter_no), "status": word})


def meter_status(*, unit_no: str, meter_no: int, relay_on: bool) -> Reply:
    """Call 8: the relay as the head-end read it just now, `ON`/`OFF` as the document writes it."""
    data = {"unit_no": unit_no, "meter_no": str(meter_no), "status": "ON" if relay_on else "OFF", "remarks": ""}
    return success(METER_STATUS, data)
