"""The site month report against the hand-computed month of tests/test_statements.py (meter 1
replaced by meter 2 on 20 February), over HTTP as JSON and CSV and from `gateway report`; each
line's balances are its meter's statement's. Both databases.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from aiohttp.test_utils import TestClient

from gateway import cli
from schemas.admin_replies import SiteReport
from storage.db.engine import Database
from storage.db.models import Command
from tests.command_setup import MockHeadEnd
from tests.test_statements import ADMIN, february, ist

METER_1 = {
    "meter_no": "1", "unit_no": "A-1", "consumer_name": "Asha", "grid_kwh": "8.500", "dg_kwh": "1.000",
    "grid_amount": "79.00", "dg_amount": "20.00", "fixed_charges": "18.00", "billed": "117.00",
    "recharges": "50.00", "adjustments": "-25.00", "opening_balance": "92.00", "closing_balance": "0.00",
    "days_cut": 0, "intervals": 5, "intervals_expected": 936,  # 1 Feb 00:00 to 20 Feb 12:00
}  # fmt: skip
METER_2 = {
    "meter_no": "2", "unit_no": "A-1", "consumer_name": "Asha", "grid_kwh": "1.000", "dg_kwh": "0.000",
    "grid_amount": "10.00", "dg_amount": "0.00", "fixed_charges": "9.00", "billed": "19.00",
    "recharges": "0.00", "adjustments": "25.00", "opening_balance": "0.00", "closing_balance": "6.00",
    "days_cut": 2, "intervals": 1, "intervals_expected": 408,  # 20 Feb 12:00 to 1 Mar 00:00
}  # fmt: skip
TOTALS = {
    "meters": 2, "grid_kwh": "9.500", "dg_kwh": "1.000", "grid_amount": "89.00", "dg_amount": "20.00",
    "fixed_charges": "27.00", "billed": "136.00", "recharges": "50.00", "adjustments": "0.00",
    "opening_balance": "92.00", "closing_balance": "6.00", "days_cut": 2, "intervals": 6, "intervals_expected": 1344,
}  # fmt: skip


async def report_month(gateway: TestClient, db: Database) -> dict[str, str]:
    """February, plus a staff stop of meter 2 from 26 Feb 22:00 to 27 Feb 09:00 (two local days
    with the supply off) and a stop in March (not February's)."""
    unit = await february(gateway, db)
    async with db.transaction() as session:
        for action, at in (("stop", "2025-02-26 22:00"), ("start", "2025-02-27 09:00"), ("stop", "2025-03-01 00:10")):
            session.add(
                Command(meter_no=2, action=action, state="done", created_at=ist(at), updated_at=ist(at),
                        finished_at=ist(at))
            )  # fmt: skip
    return unit.keys


async def get(gateway: TestClient, keys: dict[str, str], path: str) -> Any:
    return await gateway.get(ADMIN + path, headers={"X-API-Key": keys["admin"]})


async def test_the_site_report_of_a_month_as_json_and_csv(gateway: TestClient, mock: MockHeadEnd, db: Database) -> None:
    keys = await report_month(gateway, db)
    response = await get(gateway, keys, "/sites/S1/report?month=2025-02")
    assert response.status == 200
    body = await response.json()
    SiteReport().load(body)
    data = body["data"]
    assert (data["site_id"], data["month"], data["timezone"]) == ("S1", "2025-02", "Asia/Kolkata")
    assert data["meters"] == [METER_1, METER_2]
    assert data["totals"] == TOTALS
    assert (data["energy_audit"]["flats_grid_kwh"], data["energy_audit"]["incomer_kwh"]) == ("9.500", None)
    for line in data["meters"]:  # the same balances as each meter's statement
        statement = await (await get(gateway, keys, f"/meters/{line['meter_no']}/statement?month=2025-02")).json()
        assert (line["opening_balance"], line["closing_balance"]) == (
            statement["data"]["opening_balance"], statement["data"]["closing_balance"]
        )  # fmt: skip

    response = await get(gateway, keys, "/sites/S1/report?month=2025-02&format=csv")
    assert response.status == 200 and response.content_type == "text/csv"
    table, audit = (await response.text()).split("\n\n")  # the meters, then the energy audit's totals
    rows = list(csv.DictReader(io.StringIO(table)))
    assert [row["meter_no"] for row in rows] == ["1", "2", "total"]
    assert audit.splitlines()[:3] == ["energy_audit,month", "incomer_kwh,", "flats_grid_kwh,9.500"]  # no incomer
    assert rows[1]["closing_balance"] == "6.00" and rows[2]["billed"] == "136.00" and rows[2]["unit_no"] == "2 meters"

    january = await (await get(gateway, keys, "/sites/S1/report?month=2025-01")).json()
    assert [line["meter_no"] for line in january["data"]["meters"]] == ["1"]  # meter 2 did not exist yet
    assert january["data"]["totals"]["closing_balance"] == "92.00"


async def test_bad_report_requests_are_refused(gateway: TestClient, mock: MockHeadEnd, db: Database) -> None:
    keys = await report_month(gateway, db)
    for query, field in (("month=2025-2", "month"), ("", "month"), ("month=2025-02&format=xml", "format"),
                         ("month=2025-04", "month")):  # fmt: skip
        response = await get(gateway, keys, f"/sites/S1/report?{query}")
        assert response.status == 400 and list((await response.json())["errors"]) == [field], query
    assert (await get(gateway, keys, "/sites/S2/report?month=2025-02")).status == 404


async def test_gateway_report_writes_the_csv(
    gateway: TestClient,
    mock: MockHeadEnd,
    db: Database,
    database_url: str,
    tmp_path,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    await report_month(gateway, db)
    output = tmp_path / "feb.csv"
    code = await _cli(["report", "S1", "--month", "2025-02", "--output", str(output), "--database-url", database_url])
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(output.read_text(encoding="utf-8").split("\n\n")[0])))
    closing = [(row["meter_no"], row["closing_balance"]) for row in rows]
    assert closing == [("1", "0.00"), ("2", "6.00"), ("total", "6.00")]
    assert await _cli(["report", "S1", "--month", "Feb", "--database-url", database_url]) == 1
    assert "--month" in capsys.readouterr().err


async def _cli(argv: list[str]) -> int:
    """`gateway ARGS` in a worker thread (it runs its own event loop)."""
    import asyncio

    return await asyncio.to_thread(cli.main, argv)
