"""`gateway rollup`, `gateway export-legacy` and `gateway import-legacy` (real time, real files)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from gateway.cli import main
from storage.calendar import local_day
from storage.db.engine import Database
from tests.daydata import add_readings, make_site, totals, whole_day
from tests.test_legacy import SEED_MASTER, counts

KOLKATA = "Asia/Kolkata"


def with_db(url: str, step: Callable[[Database], Awaitable[object]]) -> object:
    async def go() -> object:
        db = Database(url)
        try:
            return await step(db)
        finally:
            await db.dispose()

    return asyncio.run(go())


def run(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--database-url", url])
    out, err = capsys.readouterr()
    return code, out, err


def past_days(count: int) -> list[str]:
    """The `count` Kolkata days before yesterday, oldest first (all surely due)."""
    today = local_day(KOLKATA, dt.datetime.now(dt.UTC))
    return [(today - dt.timedelta(days=n)).isoformat() for n in range(count + 1, 1, -1)]


def site_with_days(url: str, day_list: list[str]) -> None:
    async def step(db: Database) -> None:
        created = dt.datetime.now(dt.UTC) - dt.timedelta(days=len(day_list) + 2)
        await make_site(db, meters=(1, 2), created=created)
        for day in day_list:
            await add_readings(db, 1, whole_day(KOLKATA, day), received_at=created)

    with_db(url, step)


def test_rollup_rolls_due_days_with_progress_then_nothing(
    capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    day_list = past_days(3)
    site_with_days(database_url, day_list)
    code, out, err = run(capsys, database_url, "rollup", "--json")
    assert code == 0, err
    result = json.loads(out)
    rolled = [d["day"] for d in result["days"] if d["meters"]]
    assert rolled == day_list and result["meters"] == 3
    assert all(d["reason"] == "unrolled" and d["site_id"] == "S1" for d in result["days"])
    assert f"site S1 day {day_list[-1]}: 1 meters" in err and err.startswith("[1/")
    code, out, err = run(capsys, database_url, "rollup", "--json")
    assert (code, json.loads(out), err) == (0, {"rolled_days": 0, "meters": 0, "days": []}, "")
    code, out, err = run(capsys, database_url, "rollup", "--day", day_list[0], "--site", "S1")
    assert code == 0 and out == "rolled_days: 1\nmeters: 1\ndays: 1\n" and err == ""
    assert with_db(database_url, lambda db: totals(db, day_list[0])) != {}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["rollup", "--day", "2025-13-01"], "--day must be a date YYYY-MM-DD from 1970-01-01 to 9998-12-31"),
        (["rollup", "--day", "2999-01-01"], "day 2999-01-01 is not over yet at site 'S1' (Asia/Kolkata)"),
        (["rollup", "--site", "NOPE"], "unknown site 'NOPE'"),
        (["export-legacy", "--site", "NOPE"], "unknown site 'NOPE'"),
        (["import-legacy", "/no/such/file.json", "--site", "S1"], "cannot read /no/such/file.json"),
        (["export-legacy", "--output", "/no/such/dir/x.json"], "cannot write /no/such/dir/x.json"),
    ],
)
def test_day_command_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], database_url: str, argv: list[str], message: str
) -> None:
    site_with_days(database_url, [])
    code, out, err = run(capsys, database_url, *argv)
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


def test_export_then_import_through_files(
    capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path
) -> None:
    source = tmp_path / "master.json"
    source.write_text(SEED_MASTER)
    site_with_days(database_url, [])
    code, out, err = run(capsys, database_url, "import-legacy", str(source), "--site", "S1", "--json")
    assert code == 0, err
    assert json.loads(out)["meters_created"] == 2 and json.loads(out)["daily_totals"] == 6
    code, out, err = run(capsys, database_url, "export-legacy", "--site", "S1")
    assert code == 0 and err == ""
    exported = json.loads(out)
    assert exported["999999999"] == {
        "name": "Aashima",
        "fin_no": "A3389127I",
        "previous_day": {"00:31": 8.33, "01:31": 8.7, "23:31": 2.59, "00:01": 4.73},
        "2025-02-11": 187.14,
        "2025-01-23": 177.93,
        "2025-01-22": 219.14,
        "2024-12-14": 198.41,
    }
    target = tmp_path / "out" / "copy.json"
    target.parent.mkdir()
    code, out, err = run(capsys, database_url, "export-legacy", "--output", str(target), "--json")
    assert code == 0 and json.loads(out) == {"output": str(target), "meters": 4, "daily_totals": 6}
    assert json.loads(target.read_text()) == exported  # every site's meters: here only S1's


def test_import_errors_are_one_line_and_write_nothing(
    capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"999999999": {"name": "Aashima", "2025-02-11": -187.14}}')
    site_with_days(database_url, [])
    before = with_db(database_url, counts)
    code, out, err = run(capsys, database_url, "import-legacy", str(bad), "--site", "S1")
    assert (code, out) == (1, "")
    assert err == (
        "error: master database not imported: meter 999999999, key '2025-02-11': must not be negative, got -187.14\n"
    )
    assert with_db(database_url, counts) == before


def test_a_big_import_shows_progress(capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_text(json.dumps({str(n): {"name": f"C{n}", "fin_no": "", "2025-02-11": 1.5} for n in range(1, 6001)}))
    site_with_days(sqlite_url, [])
    code, out, err = run(capsys, sqlite_url, "import-legacy", str(big), "--site", "S1", "--json")
    assert code == 0 and json.loads(out)["meters_created"] == 5998  # 1 and 2 are the site's own
    assert err.splitlines() == [
        "import-legacy: 5000/6000 checked",
        "import-legacy: 6000/6000 checked",
        "import-legacy: 5000/5998 meters written",
        "import-legacy: 5998/5998 meters written",
        "import-legacy: 5000/6000 daily totals written",
        "import-legacy: 6000/6000 daily totals written",
    ]
