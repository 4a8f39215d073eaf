"""Recording readings: the transactional heart of ingest.

`plan_readings` decides what a batch of half-hour readings does: each new reading is inserted
once, advances its meter's grid or DG register, debits the prepaid balance at the site tariff
for that source, and may queue a cut; a repeat of the same value is a duplicate; another value
for a stored interval is a conflict (the first value kept, the conflict recorded).

The plan is a generator that yields the statements it needs, by name, and receives their
results (`storage.batch_sql` runs them, in one worker-thread call on SQLite, awaited on
PostgreSQL). The logic is written once; only the SQL differs by dialect. Energy and money are
integers of watt-hours and paise here, converted to the driver's "raw" form at the edge.
"""

from __future__ import annotations

import datetime as dt
import enum
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Generator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple

from storage.batch_sql import BatchSql, MeterRow, Raw

HALF_HOUR = dt.timedelta(minutes=30)
WATT_HOUR = Decimal("0.001")
CUT_REASON = "zero balance"

Plan = Generator[tuple[str, tuple[Any, ...]], Any, "list[ReadingResult]"]


def interval_of(timestamp: dt.datetime) -> dt.datetime:
    """The UTC start of the half hour a packet reports: floor to the half hour, minus 30 minutes.

    A packet at 00:31 (or exactly 00:30) reports 00:00–00:30.
    """
    utc = timestamp.astimezone(dt.UTC)
    end = utc.replace(minute=utc.minute - utc.minute % 30, second=0, microsecond=0)
    return end - HALF_HOUR


def wh_of(kwh: float) -> int:
    """Watt-hours from a packet's kWh: its decimal value rounded half-up to the watt-hour kept."""
    scaled = kwh * 1000
    nearest = round(scaled)
    if abs(scaled - nearest) < 1e-6:
        # At most 3 decimals (the usual case): nowhere near a half, so this is the exact answer
        # the Decimal below would give, at a fifth of the cost.
        return nearest
    return int(Decimal(repr(kwh)).quantize(WATT_HOUR, rounding=ROUND_HALF_UP).scaleb(3))


def charge_of(wh: int, tariff_paise: int) -> int:
    """What energy costs, in paise: kWh × tariff rounded half-up to the paisa, in exact integers."""
    return (wh * tariff_paise + 500) // 1000


class Outcome(enum.Enum):
    """What became of one reading."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    UNKNOWN_METER = "unknown_meter"
    RETIRED_METER = "retired_meter"


class NewReading(NamedTuple):
    """A validated reading waiting to be recorded. `sites` limits which sites it may touch."""

    meter_no: int
    interval_start: dt.datetime
    wh: int
    source: str | None = None
    sites: frozenset[str] | None = None  # None: any site


@dataclass(frozen=True, slots=True)
class ReadingResult:
    """The outcome of one reading; `stored_kwh` is the kept value on a conflict."""

    outcome: Outcome
    stored_kwh: Decimal | None = None


UNKNOWN = ReadingResult(Outcome.UNKNOWN_METER)
RETIRED = ReadingResult(Outcome.RETIRED_METER)
STORED = ReadingResult(Outcome.STORED)
DUPLICATE = ReadingResult(Outcome.DUPLICATE)


def plan_readings(sql: BatchSql, readings: list[NewReading], received_at: dt.datetime) -> Plan:
    """Record a batch, results in order. Run by `BatchSql.run`: in one transaction, except that
    on PostgreSQL the all-new step is a statement that commits alone."""
    if not readings:
        return []
    if sql.has_all_new_path:
        rows, scopes = _incoming_rows(sql, readings)
        if (yield ("store_if_all_new", (rows, scopes, sql.time(received_at), CUT_REASON))):
            return [STORED] * len(readings)
    meters: dict[int, MeterRow] = yield ("lock_meters", (sorted({r.meter_no for r in readings}),))
    results: list[ReadingResult] = [UNKNOWN] * len(readings)
    raw_start: dict[dt.datetime, Raw] = {}
    candidates: list[tuple[int, tuple[int, Raw]]] = []
    for i, reading in enumerate(readings):
        meter = meters.get(reading.meter_no)
        if meter is None or (reading.sites is not None and meter.site_id not in reading.sites):
            continue
        if not meter.active:
            results[i] = RETIRED
            continue
        start = raw_start.get(reading.interval_start)
        if start is None:
            start = raw_start[reading.interval_start] = sql.time(reading.interval_start)
        candidates.append((i, (reading.meter_no, start)))
    if not candidates:
        return results

    existing: dict[tuple[int, Raw], Raw] = yield ("existing", ([key for _, key in candidates],))
    new: list[tuple[NewReading, Raw, Raw]] = []
    conflicts: list[tuple[Raw, ...]] = []
    for i, key in candidates:
        reading = readings[i]
        offered = sql.energy(reading.wh)
        stored = existing.get(key)
        if stored is None:
            existing[key] = offered  # a repeat later in the same batch is a duplicate
            new.append((reading, key[1], offered))
            results[i] = STORED
        elif stored == offered:
            results[i] = DUPLICATE
        else:
            results[i] = ReadingResult(Outcome.CONFLICT, stored_kwh=sql.kwh(stored))
            conflicts.append((reading.meter_no, key[1], stored, offered))

    raw_received = sql.time(received_at)
    if new:
        yield from _store_new(sql, new, meters, raw_received)
    if conflicts:
        yield ("insert_conflicts", (conflicts, raw_received))
    return results


def _incoming_rows(sql: BatchSql, readings: list[NewReading]) -> tuple[list[tuple[Raw, ...]], list[tuple[int, str]]]:
    """Rows (meter, raw start, raw end, Wh, source, scope) for `store_if_all_new`, and the
    (scope, site) pairs: scope 0 may touch any site, scope n only the sites paired with n."""
    times: dict[dt.datetime, tuple[Raw, Raw]] = {}  # a group has few distinct intervals
    numbers: dict[frozenset[str] | None, int] = {None: 0}
    pairs: list[tuple[int, str]] = []
    rows = []
    for meter_no, start, wh, source, sites in readings:
        raw = times.get(start)
        if raw is None:
            raw = times[start] = (sql.time(start), sql.time(start + HALF_HOUR))
        scope = numbers.get(sites)
        if scope is None:
            scope = numbers[sites] = len(numbers)
            pairs.extend((scope, site) for site in sorted(sites))  # type: ignore[arg-type]
        rows.append((meter_no, *raw, wh, source, scope))
    return rows, pairs


def _store_new(
    sql: BatchSql, new: list[tuple[NewReading, Raw, Raw]], meters: dict[int, MeterRow], raw_received: Raw
) -> Generator[tuple[str, tuple[Any, ...]], Any, None]:
    # Readings without a source, on sites that have a DG: their source depends on the DG history.
    on_dg_sites = [r for r, _, _ in new if r.source is None and meters[r.meter_no].site_has_dg]
    dg_on: set[tuple[str, dt.datetime]] = set()
    if on_dg_sites:
        starts = [r.interval_start for r in on_dg_sites]
        sites = sorted({meters[r.meter_no].site_id for r in on_dg_sites})
        history = yield ("dg_history", (sites, sql.time(min(starts)), sql.time(max(starts) + HALF_HOUR)))
        dg_on = _dg_on_intervals(sql, history, {(meters[r.meter_no].site_id, r.interval_start) for r in on_dg_sites})

    rows: list[tuple[Raw, ...]] = []
    deltas: dict[int, list[Any]] = {}  # meter → [grid Wh, dg Wh, charge paise, latest start]
    for reading, start, raw_kwh in new:
        meter = meters[reading.meter_no]
        on_dg = reading.source == "dg" or (reading.source is None and (meter.site_id, reading.interval_start) in dg_on)
        charge = charge_of(reading.wh, meter.tariff_dg if on_dg else meter.tariff_grid)
        rows.append((reading.meter_no, start, raw_kwh, "dg" if on_dg else "grid", sql.money(charge)))
        delta = deltas.get(reading.meter_no)
        if delta is None:
            delta = deltas[reading.meter_no] = [0, 0, 0, reading.interval_start]
        delta[1 if on_dg else 0] += reading.wh
        delta[2] += charge
        if reading.interval_start > delta[3]:
            delta[3] = reading.interval_start

    yield ("insert_readings", (rows, raw_received))
    raw_ends = {start: sql.time(start + HALF_HOUR) for start in {d[3] for d in deltas.values()}}  # few distinct
    updates = [(m, sql.energy(g), sql.energy(d), sql.money(c), raw_ends[last]) for m, (g, d, c, last) in deltas.items()]
    yield ("update_meters", (updates,))
    # A cut for each meter this batch took to zero or below, on an auto-cut site, supply still on
    # (the statement skips meters that already have one pending).
    due = [
        meter_no
        for meter_no, _grid, _dg, raw_charge, _last in updates
        if (meter := meters[meter_no]).auto_cut
        and meter.relay_on
        and raw_charge > 0
        and meter.raw_balance - raw_charge <= 0
    ]
    if due:
        yield ("queue_cuts", (due, CUT_REASON, raw_received))


def _dg_on_intervals(
    sql: BatchSql, history: list[tuple[str, str, Raw, str | None]], wanted: set[tuple[str, dt.datetime]]
) -> set[tuple[str, dt.datetime]]:
    """(site, interval start) pairs during which some DG of the site was ON.

    `history` has, per DG, its state before the window (time None) and every transition in it.
    """
    per_dg: dict[tuple[str, str], list[tuple[Raw, str]]] = defaultdict(list)
    before: dict[tuple[str, str], str] = {}
    for site, dg_no, at, status in history:
        if at is None:
            if status:
                before[(site, dg_no)] = status
        else:
            per_dg[(site, dg_no)].append((at, status))  # type: ignore[arg-type]
    dgs = [(key, sorted(per_dg.get(key, []))) for key in {*before, *per_dg}]
    on: set[tuple[str, dt.datetime]] = set()
    for site, start in wanted:
        raw_start, raw_end = sql.time(start), sql.time(start + HALF_HOUR)
        for (dg_site, dg_no), changes in dgs:
            if dg_site != site:
                continue
            i = bisect_right([at for at, _ in changes], raw_start) - 1  # the state when the interval opens
            state = changes[i][1] if i >= 0 else before.get((dg_site, dg_no), "OFF")
            if state == "ON" or any(status == "ON" for at, status in changes[i + 1 :] if at < raw_end):
                on.add((site, start))
                break
    return on
