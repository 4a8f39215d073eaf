"""The reference model of ingest: the old careful path, reading by reading in Python, on a plain
`sqlite3` connection. Production records every group with the set-based statements built from
`storage.ingest.rules`; `tests/test_ingest_paths.py` holds each dialect's statements to this model.

It is written independently of `storage.ingest.rules` on purpose (its own Python, its own SQL): a
mistake in a rule then shows as a difference, not as the same mistake twice.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections import defaultdict
from decimal import Decimal
from typing import Any, NamedTuple

import orjson

from storage.calendar import HALF_HOUR
from storage.ingest.readings import DUPLICATE, RETIRED, STORED, UNKNOWN, NewReading, Outcome, ReadingResult

CUT_REASON = "zero balance"


def charge_of(wh: int, tariff_paise: int) -> int:
    """What energy costs, in paise: kWh × tariff rounded half-up to the paisa, in exact integers."""
    return (wh * tariff_paise + 500) // 1000


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def sqlite_time(moment: dt.datetime) -> int:
    """A UTC instant as `UtcTime` stores it on SQLite: microseconds since the epoch."""
    return (moment - EPOCH) // dt.timedelta(microseconds=1)


class MeterRow(NamedTuple):
    """What recording a reading needs to know of its meter."""

    site_id: str
    active: bool
    balance: int  # paise
    relay_on: bool
    auto_cut: bool
    grace: int  # paise: the cut threshold is -grace
    role: str  # "flat" is billed; a bulk meter ("incomer", "dg") is charged nothing


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


def _record(conn: sqlite3.Connection, readings: list[NewReading], received: int) -> list[ReadingResult]:
    meters = _meters(conn, sorted({r.meter_no for r in readings}))
    results: list[ReadingResult] = [UNKNOWN] * len(readings)
    candidates: list[tuple[int, tuple[int, int]]] = []
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
    new: list[tuple[NewReading, int]] = []
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
        "SELECT m.meter_no, m.site_id, m.active, m.balance, m.relay_on, s.auto_cut, s.grace_amount, m.role "
        "FROM json_each(?) AS j JOIN meter AS m ON m.meter_no = j.value JOIN site AS s ON s.id = m.site_id",
        (_json(meter_nos),),
    )
    return {r[0]: MeterRow(*r[1:]) for r in rows}


def _existing(conn: sqlite3.Connection, keys: list[tuple[int, int]]) -> dict[tuple[int, int], int]:
    rows = conn.execute(
        "SELECT r.meter_no, r.interval_start, r.kwh FROM json_each(?) AS j "
        "JOIN reading AS r ON r.meter_no = j.value ->> 0 AND r.interval_start = j.value ->> 1",
        (_json(keys),),
    )
    return {(m, t): k for m, t, k in rows}


def _tariff(conn: sqlite3.Connection, site_id: str, start: int) -> tuple[int, int]:
    """(grid, DG) paise per kWh of the site's tariff row in force at `start`."""
    row = conn.execute(
        "SELECT grid, dg FROM tariff WHERE site_id = ? AND effective_from <= ? ORDER BY effective_from DESC LIMIT 1",
        (site_id, start),
    ).fetchone()
    return row[0], row[1]


def _dg_seconds(conn: sqlite3.Connection, site_id: str, start: dt.datetime) -> int:
    """Seconds of the half hour from `start` during which some DG of the site was ON: the half
    hour cut at every instant a DG changed within it, each piece counted if a DG was ON at its
    start (a DG's state at an instant: its latest change at or before it, ON winning a tie)."""
    changes = conn.execute("SELECT dg_no, at, status FROM dg_status_change WHERE site_id = ?", (site_id,)).fetchall()
    end = start + HALF_HOUR
    raw_start, raw_end = sqlite_time(start), sqlite_time(end)
    per_dg: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for dg_no, at, status in changes:
        per_dg[dg_no].append((at, status))

    def any_on(instant: int) -> bool:
        return any(
            max((c for c in history if c[0] <= instant), default=(0, "OFF"))[1] == "ON" for history in per_dg.values()
        )

    cuts = sorted({at for _dg, at, _status in changes if raw_start < at < raw_end})
    points = [start, *(EPOCH + dt.timedelta(microseconds=at) for at in cuts), end]
    raw_points = [raw_start, *cuts]
    seconds = 0
    for raw, begin, finish in zip(raw_points, points, points[1:], strict=False):
        if any_on(raw):
            seconds += int((finish - begin).total_seconds() + 0.5)
    return seconds


def _store_new(
    conn: sqlite3.Connection, new: list[tuple[NewReading, int]], meters: dict[int, MeterRow], received: int
) -> None:
    rows = []
    deltas: dict[int, list[Any]] = {}  # meter → [grid Wh, dg Wh, charge paise, latest start]
    slots: dict[tuple[str, dt.datetime], tuple[int, int, int]] = {}  # (site, start) → DG seconds, tariffs
    for reading, start in new:
        meter = meters[reading.meter_no]
        slot = (meter.site_id, reading.interval_start)
        if slot not in slots:
            slots[slot] = (_dg_seconds(conn, *slot), *_tariff(conn, meter.site_id, start))
        seconds, grid_paise, dg_paise = slots[slot]
        if meter.role != "flat":  # a bulk meter is measured, never billed
            grid_paise = dg_paise = 0
        if reading.source == "dg":
            dg_wh = reading.wh
        elif reading.source == "grid":
            dg_wh = 0
        else:
            dg_wh = (reading.wh * seconds + 900) // 1800
        grid_wh = reading.wh - dg_wh
        dg_charge = charge_of(dg_wh, dg_paise)
        charge = charge_of(grid_wh, grid_paise) + dg_charge
        if reading.source is not None:
            source = reading.source
        else:
            source = "grid" if dg_wh == 0 else "dg" if dg_wh == reading.wh else "mix"
        rows.append((reading.meter_no, start, reading.wh, source, charge, dg_wh, dg_charge, received))
        delta = deltas.setdefault(reading.meter_no, [0, 0, 0, reading.interval_start])
        delta[0] += grid_wh
        delta[1] += dg_wh
        delta[2] += charge
        delta[3] = max(delta[3], reading.interval_start)
    conn.executemany(
        "INSERT INTO reading (meter_no, interval_start, kwh, source, charge, dg_kwh, dg_charge, received_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
        if (meter := meters[meter_no]).auto_cut
        and meter.relay_on
        and charge > 0
        and meter.balance - charge <= -meter.grace
    ]
    for meter_no in sorted(due):
        conn.execute(
            "INSERT INTO command (meter_no, action, reason, params, state, result, attempts, created_at, updated_at) "
            "SELECT ?1, 'cut', ?2, '{}', 'requested', '', 0, ?3, ?3 WHERE NOT EXISTS (SELECT 1 FROM command AS c "
            "WHERE c.meter_no = ?1 AND c.action = 'cut' AND c.state IN ('requested', 'sent'))",
            (meter_no, CUT_REASON, received),
        )
