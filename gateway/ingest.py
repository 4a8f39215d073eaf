"""`POST /meter` (meters, concentrators) and `POST /dg` (DG controllers).

Thin handlers: authenticate, validate (schemas.packets), hand the readings to the group-commit
writer (storage.ingest.writer), and answer only after the commit. DESIGN.md "Ingest" is the contract.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from decimal import Decimal
from typing import Any

from aiohttp import web
from marshmallow import ValidationError
from prometheus_client import Counter, Histogram

from gateway.api import json_reply, read_json
from gateway.app_keys import CLOCK, DB, DELIVERIES, DEVICES, KEYS, LEGACY, SETTINGS, WRITER
from gateway.auth import Principal, credential_header
from schemas.packets import DgPacket, Packet, Window, load_meter_packet, load_meter_packets
from storage.calendar import interval_of
from storage.dg.posts import DgUpdate, record_dg_post
from storage.errors import Conflict, Forbidden, InvalidInput, NotFound, TooLarge, Unauthorized, unknown_dg
from storage.ingest.readings import STORED, NewReading, Outcome, ReadingResult, wh_of

routes = web.RouteTableDef()

PACKETS = Counter("gateway_ingest_packets_total", "Meter packets by outcome", ["outcome", "reason"])
LATENCY = Histogram(
    "gateway_ingest_seconds",
    "Ingest request latency, commit included",
    ["kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BATCH_SIZE = Histogram(
    "gateway_ingest_batch_packets",
    "Packets per POST /meter array",
    buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000),
)
DG_POSTS = Counter("gateway_dg_posts_total", "DG controller posts by outcome", ["outcome"])
DG_LATE_CHANGES = Counter(
    "gateway_dg_late_changes_total",
    "DG ON/OFF changes that arrived after readings of their half hour were billed (a dg.late_change event each)",
)
# The hot path's label sets, bound once (labels() costs a lock and a lookup per call).
STORED_PACKETS = PACKETS.labels("stored", "")
DUPLICATE_PACKETS = PACKETS.labels("duplicate", "")
INVALID_PACKETS = PACKETS.labels("rejected", "invalid")
SINGLE_LATENCY = LATENCY.labels("single")
BATCH_LATENCY = LATENCY.labels("batch")

# A meter's device token (its number), an ingest key, or no credentials at all: then the set of
# meters staff flagged `legacy_ingest`, the only ones such a request may post for.
Caller = int | Principal | frozenset[int]
BEARER_MISSING = "Missing credentials: send 'Authorization: Bearer <device token or ingest key>'"
ECHO_TEXT = 64  # characters of a rejected item's id echoed back


async def ingest_caller(request: web.Request, *, legacy: bool = True) -> Caller:
    """Who posts: a meter (its number), an `ingest` key, or (no credentials, `legacy`) the legacy meters.

    Credentials that are sent are always checked. A request without any may post only for the
    meters staff flagged `legacy_ingest`; with none flagged it is refused here, as before.
    API keys start `mgk_`, so a token is looked up as one kind only: a random token costs one
    lookup, and a repeated one none (the caches remember unknown secrets).
    """
    header = credential_header(request, "Authorization")
    if not header and legacy:
        meters = await request.app[LEGACY].get()
        if meters:
            return meters
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise Unauthorized(BEARER_MISSING)
    if not secret.startswith("mgk_"):
        meter_no = await request.app[DEVICES].lookup(secret)
        if meter_no is None:
            raise Unauthorized("Invalid or revoked token")
        return meter_no
    principal = await request.app[KEYS].lookup(secret)
    if principal is None:
        raise Unauthorized("Invalid or revoked token")
    if principal.role != "ingest":
        raise Forbidden(f"API key {principal.name!r} has role {principal.role!r}; posting readings needs 'ingest'")
    return principal


def _window(request: web.Request) -> Window:
    """The timestamps accepted now (schemas.packets.Window, with GATEWAY_MAX_PACKET_AGE_DAYS)."""
    return Window(request.app[CLOCK].now(), dt.timedelta(days=request.app[SETTINGS].max_packet_age_days))


def _scope_errors(packet: Packet, caller: Caller) -> dict[str, list[str]] | None:
    if isinstance(caller, int) and packet.meter_no != caller:
        return {"id": [f"This device token belongs to meter {caller}; it may post only its own readings."]}
    if isinstance(caller, frozenset) and packet.meter_no not in caller:
        return {"id": [f"{BEARER_MISSING} (only meters staff allowed legacy ingest may post without)."]}
    return None


def _echo_id(value: Any) -> Any:
    """A rejected item's id as echoed in the reply: a number or a short text, else null.

    Echoing anything else could make the reply unencodable (an id nested 300 deep was a 500)
    or as big as the request.
    """
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        return value[:ECHO_TEXT]
    return None


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=4096)
def _interval(timestamp: dt.datetime) -> tuple[dt.datetime, str]:
    """The start of the half hour a packet reports, and that start as ISO text.

    Cached: packets mostly share a handful of timestamps (:01 and :31 of each half hour).
    """
    start = interval_of(timestamp)
    return start, _iso(start)


def _sites_of(caller: Caller) -> frozenset[str] | None:
    """The sites the caller's readings may touch; None: any (a device token, the legacy meters,
    a key for every site)."""
    return caller.sites if isinstance(caller, Principal) and "*" not in caller.sites else None


def _result_errors(packet: Packet, result: ReadingResult) -> tuple[str, dict[str, list[str]]]:
    """(metric reason, field errors) for a reading the store did not take."""
    if result.outcome is Outcome.UNKNOWN_METER:
        return "unknown_meter", {"id": [f"Unknown meter {packet.meter_no}."]}
    if result.outcome is Outcome.RETIRED_METER:
        return "retired_meter", {"id": [f"Meter {packet.meter_no} is retired; it no longer takes readings."]}
    return "conflict", {
        "reading_kWh": [
            f"Conflicts with the stored {result.stored_kwh} kWh for interval starting "
            f"{_interval(packet.timestamp)[1]}; the first value is kept."
        ]
    }


@routes.post("/meter")
async def post_meter(request: web.Request) -> web.Response:
    """Store one packet or a concentrator's array of packets; reply after the commit."""
    started = time.perf_counter()
    caller = await ingest_caller(request)
    body = await read_json(request)
    if isinstance(body, list):
        response = await _post_batch(request, body, caller)
        BATCH_LATENCY.observe(time.perf_counter() - started)
        return response
    if not isinstance(body, dict):
        raise InvalidInput("Body must be a JSON object (one packet) or an array of packets")
    response = await _post_single(request, body, caller)
    SINGLE_LATENCY.observe(time.perf_counter() - started)
    return response


@functools.lru_cache(maxsize=8)
def _limits(max_kwh: Decimal, max_age_days: int) -> tuple[float, dt.timedelta]:
    """The settings' packet limits as the checks take them (built once, not per packet)."""
    return float(max_kwh), dt.timedelta(days=max_age_days)


async def _post_single(request: web.Request, body: dict[str, Any], caller: Caller) -> web.Response:
    settings = request.app[SETTINGS]
    max_kwh, max_age = _limits(settings.max_interval_kwh, settings.max_packet_age_days)
    try:
        packet = load_meter_packet(body, max_kwh=max_kwh)
    except ValidationError as err:
        INVALID_PACKETS.inc()
        errors: dict[str, list[str]] = err.messages  # type: ignore[assignment]
        raise InvalidInput(f"Invalid packet: {', '.join(sorted(errors))}", errors) from None
    window = Window(request.app[CLOCK].now(), max_age).errors(packet.timestamp)
    if window:
        PACKETS.labels("rejected", "window").inc()
        raise InvalidInput(f"Invalid packet: timestamp {window['timestamp'][0]}", window)
    scope = _scope_errors(packet, caller)
    if scope:
        PACKETS.labels("rejected", "forbidden").inc()
        if isinstance(caller, frozenset):
            raise Unauthorized(BEARER_MISSING)  # the same answer as for a meter that does not exist
        raise Forbidden(scope["id"][0], scope)
    start = _interval(packet.timestamp)[0]
    reading = NewReading(packet.meter_no, start, wh_of(packet.kwh), packet.source, _sites_of(caller))
    (result,) = await request.app[WRITER].submit([reading])
    if result.outcome in (Outcome.STORED, Outcome.DUPLICATE):
        duplicate = result.outcome is Outcome.DUPLICATE
        (DUPLICATE_PACKETS if duplicate else STORED_PACKETS).inc()
        return json_reply(
            {
                "status": "success",
                "message": "Duplicate reading" if duplicate else "Reading stored",
                "data": {
                    "id": packet.meter_no,
                    "interval_start": _interval(packet.timestamp)[1],
                    "duplicate": duplicate,
                },
            }
        )
    reason, errors = _result_errors(packet, result)
    PACKETS.labels("conflict" if reason == "conflict" else "rejected", reason).inc()
    if result.outcome is Outcome.UNKNOWN_METER:
        raise NotFound(errors["id"][0], errors)
    message = errors["id"][0] if "id" in errors else f"Conflicting reading: {errors['reading_kWh'][0]}"
    raise Conflict(message, errors)


async def _post_batch(request: web.Request, body: list[Any], caller: Caller) -> web.Response:
    settings = request.app[SETTINGS]
    if not body:
        raise InvalidInput("Empty batch: send at least one packet", {"_body": ["Empty array."]})
    if len(body) > settings.max_batch:
        raise TooLarge(f"Batch of {len(body)} packets is over the limit of {settings.max_batch}")
    BATCH_SIZE.observe(len(body))
    good, bad = load_meter_packets(body, max_kwh=float(settings.max_interval_kwh))
    rejected: list[dict[str, Any]] = [
        {"index": i, "id": _echo_id(body[i].get("id")) if isinstance(body[i], dict) else None, "errors": e}
        for i, e in bad
    ]
    INVALID_PACKETS.inc(len(bad))
    window = _window(request)
    own_meter = caller if isinstance(caller, int) else None
    legacy = caller if isinstance(caller, frozenset) else None
    sites = _sites_of(caller)
    # Per distinct timestamp (a concentrator's packets mostly share one), not per packet: its
    # interval's start, or None if the window refuses it.
    starts: dict[dt.datetime, dt.datetime | None] = {}
    accepted: list[tuple[int, Packet]] = []
    readings: list[NewReading] = []
    for index, packet in good:
        stamp = packet.timestamp
        start = starts.get(stamp)
        if start is None and stamp not in starts:
            start = starts[stamp] = _interval(stamp)[0] if window.holds(stamp) else None
        if (
            start is not None
            and (own_meter is None or packet.meter_no == own_meter)
            and (legacy is None or packet.meter_no in legacy)
        ):
            accepted.append((index, packet))
            # tuple.__new__: half the cost of NewReading(...) (see schemas.packets._check_directly)
            reading = (packet.meter_no, start, wh_of(packet.kwh), packet.source, sites)
            readings.append(tuple.__new__(NewReading, reading))
            continue
        errors = window.errors(stamp) or _scope_errors(packet, caller)
        PACKETS.labels("rejected", "window" if errors and "timestamp" in errors else "forbidden").inc()
        rejected.append({"index": index, "id": packet.meter_no, "errors": errors})
    stored = duplicates = 0
    if accepted:
        results = await request.app[WRITER].submit(readings)
        if all(result is STORED for result in results):  # the usual case, without a loop of counting
            stored = len(results)
        else:
            for (index, packet), result in zip(accepted, results, strict=True):
                if result.outcome is Outcome.STORED:
                    stored += 1
                elif result.outcome is Outcome.DUPLICATE:
                    duplicates += 1
                else:
                    reason, errors = _result_errors(packet, result)
                    PACKETS.labels("conflict" if reason == "conflict" else "rejected", reason).inc()
                    rejected.append({"index": index, "id": packet.meter_no, "errors": errors})
        STORED_PACKETS.inc(stored)
        DUPLICATE_PACKETS.inc(duplicates)
    rejected.sort(key=lambda item: item["index"])
    if not rejected:
        status, http, message = "success", 200, f"{stored} readings stored, {duplicates} duplicates"
    elif len(rejected) < len(body):
        status, http, message = "partial", 207, f"{len(rejected)} of {len(body)} packets rejected"
    else:
        status, http, message = "error", 400, f"All {len(body)} packets rejected"
    return json_reply(
        {
            "status": status,
            "message": message,
            "data": {"accepted": stored, "duplicates": duplicates, "rejected": rejected},
        },
        status=http,
    )


@routes.post("/dg")
async def post_dg(request: web.Request) -> web.Response:
    """A DG controller's status, fuel and energy register."""
    caller = await ingest_caller(request, legacy=False)  # DG state always needs an ingest key
    if isinstance(caller, int):
        raise Forbidden("A meter's device token cannot post DG state; use an ingest API key")
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidInput("Body must be a JSON object", {"_body": ["Not an object."]})
    try:
        data = DgPacket().load(body)
    except ValidationError as err:
        DG_POSTS.labels("rejected").inc()
        raise InvalidInput(f"Invalid DG packet: {', '.join(sorted(err.messages))}", err.messages) from None  # type: ignore[arg-type]
    window = _window(request)
    now = window.now
    refused = window.errors(data["timestamp"])
    if refused:
        DG_POSTS.labels("rejected").inc()
        raise InvalidInput(f"Invalid DG packet: timestamp {refused['timestamp'][0]}", refused)
    update = DgUpdate(
        site_id=data["site_id"],
        dg_no=data["dg_number"],
        timestamp=data["timestamp"],
        status=data.get("status"),
        fuel_litres=data.get("fuel_litres"),
        reading_kwh=data.get("reading_kWh"),
    )
    if isinstance(caller, Principal):  # a DG of another site is as unknown as one that does not exist
        caller.check_site(update.site_id, unknown_dg(update.site_id, update.dg_no))
    changed, late, callback_queued = await record_dg_post(request.app[DB], update_=update, now=now)
    if callback_queued and request.app[SETTINGS].scheduler:
        request.app[DELIVERIES].kick()  # first attempt now, in the background; the reply does not wait
    DG_POSTS.labels("stored").inc()
    if late:
        DG_LATE_CHANGES.inc()
    return web.json_response(
        {
            "status": "success",
            "message": "DG state stored",
            "data": {"site_id": update.site_id, "dg_number": update.dg_no, "status_changed": changed},
        }
    )
