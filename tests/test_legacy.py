"""The seed's master database file: export, checked all-or-nothing import, the round trip."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from sqlalchemy import delete, func, select

from storage import days
from storage.db.engine import Database
from storage.db.models import DailyTotal, Meter, Reading, RolledDay, RollupMark
from storage.errors import InvalidInput
from storage.legacy import legacy_import, seed_files
from tests.daydata import add_readings, at, make_site, totals, whole_day

KOLKATA = "Asia/Kolkata"
NOW = at(KOLKATA, "2025-02-12 09:00")

# The seed's example (section 1.4), with its stray trailing comma removed.
SEED_MASTER = """{
"999999999": {
"name": "Aashima",
"fin_no": "A3389127I",
"previous_day": {"00:31": 8.33, "00:01": 4.73, "01:31": 8.7, "23:31": 2.59},
"2025-02-11": 187.14, "2025-01-23": 177.93, "2025-01-22": 219.14, "2024-12-14": 198.41
},
"555555555": {
"name": "Carlos",
"fin_no": "A1234567I",
"previous_day": {"00:31": 5.99, "22:01": 3.64, "23:31": 6.74},
"2025-02-11": 112.96, "2025-02-10": 158.12
}
}"""


async def counts(db: Database) -> tuple[int, ...]:
    async with db.reader() as session:
        return tuple(
            [
                (await session.execute(select(func.count()).select_from(table))).scalar_one()
                for table in (Meter, DailyTotal, Reading, RolledDay)
            ]
        )


async def import_text(db: Database, text: str, site_id: str = "S1") -> legacy_import.ImportReport:
    return await legacy_import.import_master(db, site_id=site_id, text=text, now=NOW)


async def test_the_seeds_example_imports_into_a_site(db: Database) -> None:
    await make_site(db, meters=())
    report = await import_text(db, SEED_MASTER)
    assert report.as_dict() == {
        "site_id": "S1",
        "meters_created": 2,
        "meters_existing": 0,
        "daily_totals": 6,
        "daily_totals_unchanged": 0,
        "readings": 7,
        "readings_unchanged": 0,
    }
    async with db.reader() as session:
        meter = await session.get(Meter, 999999999)
        reading = await session.get(Reading, (999999999, at(KOLKATA, "2025-02-11 23:30")))
    assert meter is not None and (meter.unit_no, meter.consumer_name, meter.fin_no) == (
        "999999999",
        "Aashima",
        "A3389127I",
    )
    assert meter.site_id == "S1" and meter.token_hash is None
    assert reading is not None and reading.kwh == Decimal("4.730") and reading.charge == Decimal("0.00")
    assert (await totals(db, "2025-02-11"))[999999999] == (
        Decimal("187.140"),
        Decimal("187.140"),
        Decimal(0),
        4,
    )
    assert (await totals(db, "2025-01-22"))[999999999][3] == 0  # no half hours known for that day


async def test_export_import_export_gives_the_same_document(db: Database) -> None:
    await make_site(db, meters=(999999999, 555555555, 7), created=at(KOLKATA, "2025-02-10 00:00"))
    for day, kwh in (("2025-02-10", "0.250"), ("2025-02-11", "1.125")):
        starts = whole_day(KOLKATA, day)
        await add_readings(db, 999999999, starts, received_at=at(KOLKATA, f"{day} 23:59"), kwh=kwh)
        await add_readings(db, 555555555, starts[::3], received_at=at(KOLKATA, f"{day} 23:59"), kwh="2.5")
    await days.roll_up_due(db, now=NOW)
    first = await seed_files.export_master(db)
    text = seed_files.master_json(first)
    document = json.loads(text)
    assert list(document) == ["7", "555555555", "999999999"]
    assert document["7"] == {"name": "Consumer 7", "fin_no": "F7", "previous_day": {}}
    aashima = document["999999999"]
    assert list(aashima) == ["name", "fin_no", "previous_day", "2025-02-11", "2025-02-10"]
    assert aashima["2025-02-11"] == 54.0 and aashima["2025-02-10"] == 12.0
    assert list(aashima["previous_day"])[:2] == ["00:31", "01:01"]
    assert list(aashima["previous_day"])[-2:] == ["23:31", "00:01"]
    assert set(aashima["previous_day"].values()) == {1.125}
    assert document["555555555"]["previous_day"] == {
        seed_files.interval_label(KOLKATA, s): 2.5 for s in whole_day(KOLKATA, "2025-02-11")[::3]
    }

    async with db.transaction() as session:  # an empty database but for the site
        for table in (Reading, DailyTotal, RolledDay, RollupMark, Meter):
            await session.execute(delete(table))
    report = await import_text(db, text)
    assert (report.meters_created, report.daily_totals, report.readings) == (3, 4, 48 + 16)
    assert seed_files.master_json(await seed_files.export_master(db)) == text
    assert seed_files.master_json(await seed_files.export_master(db, site_id="S1")) == text


async def test_importing_twice_writes_nothing_new(db: Database) -> None:
    await make_site(db, meters=())
    await import_text(db, SEED_MASTER)
    before = await counts(db)
    report = await import_text(db, SEED_MASTER)
    assert (report.meters_created, report.meters_existing, report.daily_totals, report.readings) == (
        0,
        2,
        0,
        0,
    )
    assert (report.daily_totals_unchanged, report.readings_unchanged) == (6, 7)
    assert await counts(db) == before


async def test_imported_history_is_not_rolled_over(db: Database) -> None:
    await make_site(db, meters=(), created=at(KOLKATA, "2025-02-01 00:00"))
    await import_text(db, SEED_MASTER)
    later = NOW + dt.timedelta(days=1)
    report = await days.roll_up_due(db, now=later)
    assert {r.day for r in report.days}.isdisjoint({dt.date(2025, 2, 10), dt.date(2025, 2, 11)})
    await days.roll_up_date(db, day=dt.date(2025, 2, 10), now=later)  # no readings: totals stay
    assert (await totals(db, "2025-02-10"))[555555555][0] == Decimal("158.120")
    assert (await totals(db, "2025-02-11"))[999999999][0] == Decimal("187.140")


async def test_float_noise_is_rounded_to_the_stored_three_decimals(db: Database) -> None:
    await make_site(db, meters=())
    await import_text(db, '{"1": {"name": "A", "fin_no": "", "2025-02-11": 0.30000000000000004}}')
    assert (await totals(db, "2025-02-11"))[1][0] == Decimal("0.300")


BAD_FILES = [
    ('{"1": {"name": "x",}}', "not valid JSON: Expecting property name enclosed in double quotes at line 1"),
    ("", "not valid JSON: Expecting value at line 1, column 1"),
    ("[1, 2]", "the file must be a JSON object of meters, got an array"),
    ('{"12x": {}}', "meter 12x: the key must be a meter number"),
    ('{"0": {}}', "meter 0: the key must be a meter number"),
    ('{"1": [8.33]}', "meter 1: must be an object, got an array"),
    ('{"1": {"name": 5}}', "meter 1, key 'name': must be a string, got int"),
    ('{"1": {"fin_no": null}}', "meter 1, key 'fin_no': must be a string, got null"),
    (
        '{"1": {"2025-02-11": "187.14"}}',
        "meter 1, key '2025-02-11': must be a number of kWh, got a string '187.14'",
    ),
    ('{"1": {"2025-02-11": true}}', "meter 1, key '2025-02-11': must be a number of kWh, got true"),
    ('{"1": {"2025-02-11": NaN}}', "meter 1, key '2025-02-11': must be a finite number, got NaN"),
    ('{"1": {"2025-02-30": 1}}', "meter 1, key '2025-02-30': not a calendar date"),
    (
        '{"1": {"11-02-2025": 1}}',
        "meter 1, key '11-02-2025': unknown key: expected name, fin_no, previous_day",
    ),
    ('{"1": {"2025-02-11": -187.14}}', "meter 1, key '2025-02-11': must not be negative, got -187.14"),
    ('{"1": {"2025-02-11": 1, "previous_day": [1]}}', "meter 1, key 'previous_day': must be an object"),
    ('{"1": {"2025-02-11": 1, "previous_day": {"24:01": 1}}}', "meter 1, previous_day '24:01': not a label"),
    ('{"1": {"2025-02-11": 1, "previous_day": {"0:31": 1}}}', "meter 1, previous_day '0:31': not a label"),
    (
        '{"1": {"2025-02-11": 1, "previous_day": {"00:31": -0.5}}}',
        "previous_day '00:31': must not be negative",
    ),
    ('{"1": {"2025-02-11": 1, "previous_day": {"00:31": 501}}}', "previous_day '00:31': must be at most 500"),
    ('{"1": {"2025-02-11": 1, "previous_day": {"00:31": "4.5"}}}', "previous_day '00:31': must be a number"),
    ('{"1": {"previous_day": {"00:31": 1}}}', "no date saying which day they belong to"),
    ('{"1": {"2025-02-11": 1, "2025-02-11": 2}}', "meter 1, key '2025-02-11': appears more than once"),
    ('{"1": {}, "1": {}}', "meter 1: appears more than once"),
    (
        '{"1": {"2025-02-11": -1, "2025-02-12": -2}, "2": {"name": 1}}',
        "meter 1, key '2025-02-11': must not be negative, got -1 (and 2 more problems)",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
async def test_a_bad_file_is_refused_precisely_and_writes_nothing(db: Database, text: str, message: str) -> None:
    await make_site(db, meters=(5,))
    # A good meter ahead of the bad part: it must not be written either.
    good = '{"999": {"name": "Good", "fin_no": "", "2025-02-11": 3}, '
    text = good + text.lstrip()[1:] if text.lstrip().startswith("{") and text.strip() != "{}" else text
    before = await counts(db)
    with pytest.raises(InvalidInput) as error:
        await import_text(db, text)
    assert message in error.value.message
    assert error.value.message.startswith("master database not imported: ")
    assert await counts(db) == before


async def test_a_label_that_does_not_exist_on_a_dst_day_is_refused(db: Database) -> None:
    await make_site(db, timezone="Europe/London", meters=())
    text = '{"1": {"2025-03-30": 1, "previous_day": {"00:31": 0.5, "01:31": 0.5}}}'
    with pytest.raises(
        InvalidInput, match=r"meter 1, previous_day '01:31': no half hour of 2025-03-30 in Europe/London"
    ):
        await import_text(db, text)
    assert await counts(db) == (0, 0, 0, 0)


async def test_bytes_that_are_not_utf8_are_refused(db: Database) -> None:
    await make_site(db, meters=())
    with pytest.raises(InvalidInput, match="not UTF-8 text"):
        await legacy_import.import_master(db, site_id="S1", text=b'{"1": {"name": "\xff"}}', now=NOW)


async def test_conflicts_with_stored_data_are_refused_and_write_nothing(db: Database) -> None:
    await make_site(db, meters=())
    await make_site(db, "S2", meters=(555555555,))
    with pytest.raises(InvalidInput, match=r"meter 555555555: is registered on another site \('S2'\)"):
        await import_text(db, SEED_MASTER)
    assert await counts(db) == (1, 0, 0, 0)

    async with db.transaction() as session:
        await session.execute(delete(Meter))
    await import_text(db, '{"999999999": {"2025-01-22": 200.5}}')
    before = await counts(db)
    with pytest.raises(InvalidInput, match=r"meter 999999999, key '2025-01-22': the database already has 200.500 kWh"):
        await import_text(db, SEED_MASTER)
    assert await counts(db) == before


async def test_import_into_an_unknown_site_is_not_found(db: Database) -> None:
    from storage.errors import NotFound

    with pytest.raises(NotFound, match="unknown site 'NOPE'"):
        await import_text(db, SEED_MASTER, site_id="NOPE")


async def test_today_is_the_seeds_daily_structure(db: Database) -> None:
    await make_site(db, meters=(1, 2, 3), created=at(KOLKATA, "2025-02-11 00:00"))
    async with db.transaction() as session:
        (await session.get(Meter, 3)).active = False  # type: ignore[union-attr]
    yesterday = whole_day(KOLKATA, "2025-02-11")
    today = whole_day(KOLKATA, "2025-02-12")
    await add_readings(db, 1, yesterday[-1:], received_at=NOW, kwh="9")
    await add_readings(db, 1, today[:2], received_at=NOW, kwh="4.5")
    await add_readings(db, 1, today[2:3], received_at=NOW, kwh="4.35", source="dg")
    structure = await seed_files.today_readings(db, site_id="S1", now=NOW)
    assert structure == {
        "1": {"00:31": Decimal("4.500"), "01:01": Decimal("4.500"), "01:31": Decimal("4.350")},
        "2": {},
    }
