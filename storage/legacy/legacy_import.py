"""Reading a master database file (the seed's 1.4) into a site.

Everything is checked before anything is written, and written in one transaction: a file with
any problem writes nothing, and the error names each problem (which meter, which key, why).
Importing adds what is missing: meters not yet registered are created on the site (unit_no =
the meter number, as the file has no better source; no device token until one is issued),
daily totals and previous-day readings are added where the database has none. A value the
database already holds is skipped; a different one is a problem. Importing twice is a no-op.

Imported history is not billed: readings carry no charge, and the source is "grid" (the
legacy file does not know about DGs). A total's `intervals` counts the half hours the file
gives for that day (only the previous day has any), so the gaps call shows history as gaps.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select

from storage.db.engine import Database, upsert
from storage.db.models import DailyTotal, Meter, Reading, RolledDay
from storage.errors import InvalidInput
from storage.legacy.seed_files import KWH_LIMIT, KWH_PLACES, Progress, chunks, label_starts
from storage.registry.sites import site_row

METER_KEY = re.compile(r"[1-9][0-9]{0,17}")
DATE_KEY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
LABEL = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
FIELDS = ("name", "fin_no", "previous_day")
TEXT_LIMITS = {"name": 200, "fin_no": 64}
MAX_LISTED = 50  # problems listed in the error's details
BATCH = 5000  # rows per INSERT


@dataclass
class LegacyMeter:
    """One meter of the file, checked: totals by day, previous-day readings by interval start."""

    meter_no: int
    name: str
    fin_no: str
    totals: dict[dt.date, Decimal]
    readings: dict[dt.datetime, Decimal]


@dataclass
class ImportReport:
    """What an import wrote (and what it found already there)."""

    site_id: str
    meters_created: int = 0
    meters_existing: int = 0
    daily_totals: int = 0
    daily_totals_unchanged: int = 0
    readings: int = 0
    readings_unchanged: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready values."""
        return asdict(self)


class _Object(dict[str, Any]):
    """A JSON object that remembers keys given twice (json.loads would keep only the last)."""

    duplicates: list[str]


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    obj.duplicates = []
    if len(obj) < len(pairs):
        seen: set[str] = set()
        obj.duplicates = [key for key, _ in pairs if key in seen or seen.add(key)]  # type: ignore[func-returns-value]
    return obj


class _NonFinite:
    """NaN or ±Infinity in the file (Python's json accepts them; JSON does not)."""

    def __init__(self, name: str) -> None:
        self.name = name


class Problems:
    """Problems found in a file, each with where it is and why."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, where: str, why: str) -> None:
        """Record one problem."""
        self.items.append((where, why))

    def raise_if_any(self) -> None:
        """InvalidInput naming the first problem (and counting the rest), all of them in `errors`."""
        if not self.items:
            return
        where, why = self.items[0]
        more = len(self.items) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        errors: dict[str, list[str]] = {}
        for at, reason in self.items[:MAX_LISTED]:
            errors.setdefault(at, []).append(reason)
        raise InvalidInput(f"master database not imported: {where}: {why}{suffix}", errors)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return f"a string {value[:20]!r}"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return type(value).__name__


def _kwh(value: Any, where: str, problems: Problems, maximum: Decimal) -> Decimal | None:
    if isinstance(value, _NonFinite):
        problems.add(where, f"must be a finite number, got {value.name}")
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        problems.add(where, f"must be a number of kWh, got {_kind(value)}")
        return None
    kwh = Decimal(value)
    if kwh < 0:
        problems.add(where, f"must not be negative, got {value}")
        return None
    if kwh > maximum:
        problems.add(where, f"must be at most {maximum} kWh, got {value}")
        return None
    return kwh.quantize(KWH_PLACES)  # files written with floats carry noise past 3 decimals


def _text(entry: dict[str, Any], key: str, where: str, problems: Problems) -> str:
    value = entry.get(key, "")
    if not isinstance(value, str):
        problems.add(f"{where}, key {key!r}", f"must be a string, got {_kind(value)}")
        return ""
    if len(value) > TEXT_LIMITS[key]:
        problems.add(f"{where}, key {key!r}", f"longer than {TEXT_LIMITS[key]} characters")
    return value


def parse_master(
    text: str | bytes, *, timezone: str, max_interval_kwh: Decimal, progress: Progress | None = None
) -> list[LegacyMeter]:
    """Check a master database file for a site in `timezone`; InvalidInput lists every problem."""
    try:
        document = json.loads(text, parse_float=Decimal, parse_constant=_NonFinite, object_pairs_hook=_object)
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"master database not imported: not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"master database not imported: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    if not isinstance(document, dict):
        raise InvalidInput(
            f"master database not imported: the file must be a JSON object of meters, got {_kind(document)}"
        )
    problems = Problems()
    for key in document.duplicates:
        problems.add(f"meter {key}", "appears more than once")
    meters = []
    for done, (key, entry) in enumerate(document.items(), start=1):
        meter = _parse_meter(key, entry, timezone, max_interval_kwh, problems)
        if meter is not None:
            meters.append(meter)
        if progress is not None and (done % BATCH == 0 or done == len(document)):
            progress("checked", done, len(document))
    problems.raise_if_any()
    return meters


def _parse_meter(
    key: str, entry: Any, timezone: str, max_interval_kwh: Decimal, problems: Problems
) -> LegacyMeter | None:
    where = f"meter {key}"
    if not METER_KEY.fullmatch(key):
        problems.add(where, "the key must be a meter number (a positive whole number)")
    if not isinstance(entry, dict):
        problems.add(where, f"must be an object, got {_kind(entry)}")
        return None
    for duplicate in entry.duplicates:
        problems.add(f"{where}, key {duplicate!r}", "appears more than once")
    name = _text(entry, "name", where, problems)
    fin_no = _text(entry, "fin_no", where, problems)
    totals: dict[dt.date, Decimal] = {}
    for day_key, value in entry.items():
        if day_key in FIELDS:
            continue
        at = f"{where}, key {day_key!r}"
        if not DATE_KEY.fullmatch(day_key):
            problems.add(at, "unknown key: expected name, fin_no, previous_day or a date YYYY-MM-DD")
            continue
        try:
            day = dt.date.fromisoformat(day_key)
        except ValueError:
            problems.add(at, "not a calendar date")
            continue
        kwh = _kwh(value, at, problems, KWH_LIMIT)
        if kwh is not None:
            totals[day] = kwh
    readings = _parse_previous_day(entry.get("previous_day", {}), where, totals, timezone, max_interval_kwh, problems)
    if not METER_KEY.fullmatch(key):
        return None
    return LegacyMeter(int(key), name, fin_no, totals, readings)


def _parse_previous_day(
    previous: Any,
    where: str,
    totals: dict[dt.date, Decimal],
    timezone: str,
    max_interval_kwh: Decimal,
    problems: Problems,
) -> dict[dt.datetime, Decimal]:
    at = f"{where}, key 'previous_day'"
    if not isinstance(previous, dict):
        problems.add(at, f'must be an object of "HH:MM": kWh, got {_kind(previous)}')
        return {}
    if not previous:
        return {}
    if not totals:
        problems.add(at, "has readings, but the meter has no date saying which day they belong to")
        return {}
    day = max(totals)  # previous_day is the meter's latest day (see storage/legacy/seed_files.py)
    starts = label_starts(timezone, day)
    readings: dict[dt.datetime, Decimal] = {}
    for duplicate in previous.duplicates:
        problems.add(f"{where}, previous_day {duplicate!r}", "appears more than once")
    for label, value in previous.items():
        at = f"{where}, previous_day {label!r}"
        kwh = _kwh(value, at, problems, max_interval_kwh)
        if not LABEL.fullmatch(label):
            problems.add(at, 'not a label "HH:MM" (00:00 to 23:59)')
        elif label not in starts:
            problems.add(at, f"no half hour of {day} in {timezone} has this label (a DST change?)")
        elif kwh is not None:
            readings[starts[label]] = kwh
    return readings


async def import_master(
    db: Database,
    *,
    site_id: str,
    text: str | bytes,
    now: dt.datetime,
    max_interval_kwh: Decimal = Decimal(500),
    progress: Progress | None = None,
) -> ImportReport:
    """Check a master database file and write it into a site in one transaction."""
    async with db.reader() as session:
        site = await site_row(session, site_id)
    meters = parse_master(text, timezone=site.timezone, max_interval_kwh=max_interval_kwh, progress=progress)
    report = ImportReport(site_id=site_id)
    async with db.transaction() as session:
        owners, totals, readings = await _stored(session, meters)
        problems = Problems()
        new_meters, new_totals, new_readings = [], [], []
        for meter in meters:
            owner = owners.get(meter.meter_no)
            if owner is None:
                new_meters.append(
                    Meter(
                        meter_no=meter.meter_no,
                        site_id=site_id,
                        unit_no=str(meter.meter_no),
                        consumer_name=meter.name,
                        fin_no=meter.fin_no,
                        created_at=now,
                    ).model_dump()
                )
            elif owner != site_id:
                problems.add(f"meter {meter.meter_no}", f"is registered on another site ({owner!r})")
                continue
            else:
                report.meters_existing += 1
            latest = max(meter.totals, default=None)
            for day, kwh in meter.totals.items():
                stored = totals.get((meter.meter_no, day))
                if stored is None:
                    intervals = len(meter.readings) if day == latest else 0
                    new_totals.append(_total_row(meter.meter_no, day, kwh, intervals, now))
                elif stored == kwh:
                    report.daily_totals_unchanged += 1
                else:
                    problems.add(f"meter {meter.meter_no}, key '{day}'", f"the database already has {stored} kWh")
            for interval_start, kwh in meter.readings.items():
                stored = readings.get((meter.meter_no, interval_start))
                if stored is None:
                    new_readings.append(_reading_row(meter.meter_no, interval_start, kwh, now))
                elif stored == kwh:
                    report.readings_unchanged += 1
                else:
                    problems.add(
                        f"meter {meter.meter_no}, previous_day at {interval_start:%Y-%m-%d %H:%M} UTC",
                        f"the database already has {stored} kWh",
                    )
        problems.raise_if_any()
        await _insert(session, Meter, new_meters, progress, "meters written")
        await _insert(session, DailyTotal, new_totals, progress, "daily totals written")
        await _insert(session, Reading, new_readings, progress, "readings written")
        # The imported days count as rolled, so the rollup does not redo them from (no) readings.
        days = sorted({row["day"] for row in new_totals})
        if days:
            rolled = [{"site_id": site_id, "day": day, "rolled_at": now} for day in days]
            await session.execute(upsert(session, RolledDay).on_conflict_do_nothing(), rolled)
    report.meters_created = len(new_meters)
    report.daily_totals = len(new_totals)
    report.readings = len(new_readings)
    return report


async def _stored(
    session: Any, meters: list[LegacyMeter]
) -> tuple[dict[int, str], dict[tuple[int, dt.date], Decimal], dict[tuple[int, dt.datetime], Decimal]]:
    """What the database already holds for the file's meters: owner site, totals, readings."""
    owners: dict[int, str] = {}
    for chunk in chunks([m.meter_no for m in meters]):
        query = select(Meter.meter_no, Meter.site_id).where(Meter.meter_no.in_(chunk))  # type: ignore[attr-defined]
        owners.update((await session.execute(query)).all())
    totals: dict[tuple[int, dt.date], Decimal] = {}
    readings: dict[tuple[int, dt.datetime], Decimal] = {}
    known = [m for m in meters if m.meter_no in owners]
    for chunk in chunks(known):
        numbers = [m.meter_no for m in chunk]
        days = [day for m in chunk for day in m.totals]
        if days:
            query = select(DailyTotal.meter_no, DailyTotal.day, DailyTotal.kwh).where(
                DailyTotal.meter_no.in_(numbers),  # type: ignore[attr-defined]
                DailyTotal.day >= min(days),
                DailyTotal.day <= max(days),
            )
            totals.update(((n, d), kwh) for n, d, kwh in (await session.execute(query)).all())
        starts = [start for m in chunk for start in m.readings]
        if starts:
            query = select(Reading.meter_no, Reading.interval_start, Reading.kwh).where(
                Reading.meter_no.in_(numbers),  # type: ignore[attr-defined]
                Reading.interval_start >= min(starts),
                Reading.interval_start <= max(starts),
            )
            readings.update(((n, s), kwh) for n, s, kwh in (await session.execute(query)).all())
    return owners, totals, readings


def _total_row(meter_no: int, day: dt.date, kwh: Decimal, intervals: int, now: dt.datetime) -> dict[str, Any]:
    return {
        "meter_no": meter_no,
        "day": day,
        "kwh": kwh,
        "grid_kwh": kwh,
        "dg_kwh": Decimal(0),
        "intervals": intervals,
        "rolled_at": now,
    }


def _reading_row(meter_no: int, interval_start: dt.datetime, kwh: Decimal, now: dt.datetime) -> dict[str, Any]:
    return {
        "meter_no": meter_no,
        "interval_start": interval_start,
        "kwh": kwh,
        "source": "grid",
        "charge": Decimal("0.00"),
        "received_at": now,
    }


async def _insert(session: Any, table: Any, rows: list[dict[str, Any]], progress: Progress | None, label: str) -> None:
    for at in range(0, len(rows), BATCH):
        await session.execute(insert(table), rows[at : at + BATCH])
        if progress is not None:
            progress(label, min(at + BATCH, len(rows)), len(rows))
