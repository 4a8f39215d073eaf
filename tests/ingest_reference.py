"""The reference model of ingest: the old careful path, reading by reading in Python, on a plain
`sqlite3` connection. Production records every group with the set-based statements built from
`storage.rules`; `tests/test_ingest_paths.py` holds each dialect's statements to this model.

It is written independently of `storage.rules` on purpose (its own Python, its own SQL): a
mistake in a rule then shows as a difference, not as the same mistake twice.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from bisect import bisect_right
from collections import defaultdict
from decimal import Decimal
from typing import Any, NamedTuple

import orjson

from storage.ingest import DUPLICATE, HALF_HOUR, RETIRED, STORED, UNKNOWN, NewReading, Outcome, ReadingResult

CUT_REASON = "zero balance"


def charge_of(wh: int, tariff_paise: int) -> int:
    """What energy costs, in paise: kWh × tariff rounded half-up to the paisa, in exact integers."""
    return (wh * tariff_paise + 500) // 1000


def sqlite_time(moment: dt.datetime) -> str:
    """A UTC instant as `UtcTime` stores it on SQLite."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


class MeterRow(NamedTuple):
    """What recording a reading needs to know of its meter."""

    site_id: str
    active: bool
    balance: int  # paise
    relay_on: bool
    tariff_grid: int  # paise per kWh
    tariff_dg: int
    auto_cut: bool
    site_has_dg: bool


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def record_reference(
    conn: sqlite3.Connection, readings: list[NewReading], received_at: dt.datetime
) -> list[ReadingResult]:
    """Record a group as the careful path did, in one transaction; results in order."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        results = _record(conn, readings, sqlite_time(received_at))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return results


def _record(conn: sqlite3.Connection, readings: list[NewReading], received: str) -> list[ReadingResult]:
    meters = _meters(conn, sorted({r.meter_no for r in readings}))
    results: list[ReadingResult] = [UNKNOWN] * len(readings)
    candidates: list[tuple[int, tuple[int, str]]] = []
    for i, reading in enumerate(readings):
        meter = meters.get(reading.meter_no)
        if meter is None or (reading.sites is not None and meter.site_id not in reading.sites):
            continue
        if not meter.active:
            results[i] = RETIRED
            continue
        candidates.append((i, (reading.meter_no, sqlite_time(reading.interval_start))))
    if not candidates:
        return results
    existing = _existing(conn, [key for _, key in candidates])
    new: list[tuple[NewReading, str]] = []
    conflicts: list[tuple[Any, ...]] = []
    for i, key in candidates:
        reading = readings[i]
        stored = existing.get(key)
        if stored is None:
            existing[key] = reading.wh  # a repeat later in the same batch is a duplicate
            new.append((reading, key[1]))
            results[i] = STORED
        elif stored == reading.wh:
            results[i] = DUPLICATE
        else:
            results[i] = ReadingResult(Outcome.CONFLICT, stored_kwh=Decimal(stored).scaleb(-3))
            conflicts.append((reading.meter_no, key[1], stored, reading.wh, received))
    if new:
        _store_new(conn, new, meters, received)
    conn.executemany(
        "INSERT INTO reading_conflict (meter_no, interval_start, stored_kwh, offered_kwh, received_at) "
        "VALUES (?, ?, ?, ?, ?)",
        conflicts,
    )
    return results


def _meters(conn: sqlite3.Connection, meter_nos: list[int]) -> dict[int, MeterRow]:
    rows = conn.execute(
        "SELECT m.meter_no, m.site_id, m.active, m.balance, m.relay_on, s.tariff_grid, s.tariff_dg, s.auto_cut, "
        "EXISTS (SELECT 1 FROM dg WHERE dg.site_id = m.site_id) FROM json_each(?) AS j "
        "JOIN meter AS m ON m.meter_no = j.value JOIN site AS s ON s.id = m.site_id",
        (_json(meter_nos),),
    )
    return {r[0]: MeterRow(*r[1:]) for r in rows}


def _existing(conn: sqlite3.Connection, keys: list[tuple[int, str]]) -> dict[tuple[int, str], int]:
    rows = conn.execute(
        "SELECT r.meter_no, r.interval_start, r.kwh FROM json_each(?) AS j "
        "JOIN reading AS r ON r.meter_no = j.value ->> 0 AND r.interval_start = j.value ->> 1",
        (_json(keys),),
    )
    return {(m, t): k for m, t, k in rows}


def _store_new(
    conn: sqlite3.Connection, new: list[tuple[NewReading, str]], meters: dict[int, MeterRow], received: str
) -> None:
    on_dg_sites = [r for r, _ in new if r.source is None and meters[r.meter_no].site_has_dg]
    dg_on: set[tuple[str, dt.datetime]] = set()
    if on_dg_sites:
        starts = [r.interval_start for r in on_dg_sites]
        sites = sorted({meters[r.meter_no].site_id for r in on_dg_sites})
        dg_on = _dg_on_intervals(
            conn,
            sites,
            min(starts),
            max(starts) + HALF_HOUR,
            {(meters[r.meter_no].site_id, r.interval_start) for r in on_dg_sites},
        )
    rows = []
    deltas: dict[int, list[Any]] = {}  # meter → [grid Wh, dg Wh, charge paise, latest start]
    for reading, start in new:
        meter = meters[reading.meter_no]
        on_dg = reading.source == "dg" or (reading.source is None and (meter.site_id, reading.interval_start) in dg_on)
        charge = charge_of(reading.wh, meter.tariff_dg if on_dg else meter.tariff_grid)
        rows.append((reading.meter_no, start, reading.wh, "dg" if on_dg else "grid", charge, received))
        delta = deltas.setdefault(reading.meter_no, [0, 0, 0, reading.interval_start])
        delta[1 if on_dg else 0] += reading.wh
        delta[2] += charge
        delta[3] = max(delta[3], reading.interval_start)
    conn.executemany(
        "INSERT INTO reading (meter_no, interval_start, kwh, source, charge, received_at) VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.executemany(
        "UPDATE meter SET grid_kwh = grid_kwh + ?2, dg_kwh = dg_kwh + ?3, balance = balance - ?4, "
        "last_reading_at = CASE WHEN last_reading_at IS NULL OR last_reading_at < ?5 THEN ?5 "
        "ELSE last_reading_at END WHERE meter_no = ?1",
        [(m, g, d, c, sqlite_time(last + HALF_HOUR)) for m, (g, d, c, last) in deltas.items()],
    )
    due = [
        meter_no
        for meter_no, (_g, _d, charge, _last) in deltas.items()
        if (meter := meters[meter_no]).auto_cut and meter.relay_on and charge > 0 and meter.balance - charge <= 0
    ]
    for meter_no in sorted(due):
        conn.execute(
            "INSERT INTO command (meter_no, action, reason, params, state, result, attempts, created_at, updated_at) "
            "SELECT ?1, 'cut', ?2, '{}', 'requested', '', 0, ?3, ?3 WHERE NOT EXISTS (SELECT 1 FROM command AS c "
            "WHERE c.meter_no = ?1 AND c.action = 'cut' AND c.state IN ('requested', 'sent'))",
            (meter_no, CUT_REASON, received),
        )


def _dg_on_intervals(
    conn: sqlite3.Connection,
    sites: list[str],
    first: dt.datetime,
    end: dt.datetime,
    wanted: set[tuple[str, dt.datetime]],
) -> set[tuple[str, dt.datetime]]:
    """(site, interval start) pairs during which some DG of the site was ON: ON when the
    interval opened (its latest change at or before then; two at one instant: ON), or turned ON
    within it."""
    history = conn.execute(
        "SELECT d.site_id, d.dg_no, NULL, (SELECT c.status FROM dg_status_change AS c "
        "  WHERE c.site_id = d.site_id AND c.dg_no = d.dg_no AND c.at < ? "
        "  ORDER BY c.at DESC, c.status DESC LIMIT 1) "
        "FROM dg AS d WHERE d.site_id IN (SELECT value FROM json_each(?)) "
        "UNION ALL SELECT c.site_id, c.dg_no, c.at, c.status FROM dg_status_change AS c "
        "WHERE c.site_id IN (SELECT value FROM json_each(?)) AND c.at >= ? AND c.at < ?",
        (sqlite_time(first), _json(sites), _json(sites), sqlite_time(first), sqlite_time(end)),
    ).fetchall()
    per_dg: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    before: dict[tuple[str, str], str] = {}
    for site, dg_no, at, status in history:
        if at is None:
            if status:
                before[(site, dg_no)] = status
        else:
            per_dg[(site, dg_no)].append((at, status))
    dgs = [(key, sorted(per_dg.get(key, []))) for key in {*before, *per_dg}]
    on: set[tuple[str, dt.datetime]] = set()
    for site, start in wanted:
        raw_start, raw_end = sqlite_time(start), sqlite_time(start + HALF_HOUR)
        for (dg_site, dg_no), changes in dgs:
            if dg_site != site:
                continue
            i = bisect_right([at for at, _ in changes], raw_start) - 1  # the state when the interval opens
            state = changes[i][1] if i >= 0 else before.get((dg_site, dg_no), "OFF")
            if state == "ON" or any(status == "ON" for at, status in changes[i + 1 :] if at < raw_end):
                on.add((site, start))
                break
    return on
