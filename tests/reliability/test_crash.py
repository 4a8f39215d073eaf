"""Quick crash consistency: 3 SIGKILLs of a real `gateway serve` under load, SQLite and PostgreSQL.

The full run (≥ 20 kills, figures for RELIABILITY.md) is `python bench/crash.py`.
"""

from __future__ import annotations

from pathlib import Path

from tests.reliability.crash import CrashConfig, run_crash


async def test_acknowledged_readings_survive_sigkill(database_url: str, tmp_path: Path) -> None:
    report = await run_crash(
        CrashConfig(database_url=database_url, workdir=tmp_path, kills=3, meters=100, run_seconds=(0.2, 0.6))
    )
    print("\n".join(report.lines()))
    assert report.kills == 3
    assert report.acknowledged > 0 and report.stored >= report.acknowledged
    assert report.lost == 0, "acknowledged readings lost"
    assert report.stored_twice == 0
    assert report.stored_never_sent == 0 and report.refused_but_stored == 0
    assert report.wrong_value == report.wrong_charge == report.wrong_balance == report.wrong_register == 0
    # Every reading in doubt was sent again, so in the end everything stored was acknowledged.
    assert report.stored_never_acknowledged == 0
