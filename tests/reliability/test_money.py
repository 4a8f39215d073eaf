"""Quick money safety under faults: the gateway dies once at each fault point of a recharge
(before the credit is sent, after the head-end applied it, after the local commit), restarts,
reconciles; SQLite and PostgreSQL.

The full run (≥ 20 kills, random SIGKILLs too, figures for RELIABILITY.md) is `python bench/money.py`.
"""

from __future__ import annotations

from pathlib import Path

from tests.reliability.money import MoneyConfig, run_money


async def test_no_recharge_is_lost_or_credited_twice_when_the_gateway_dies_mid_recharge(
    database_url: str, tmp_path: Path
) -> None:
    run = await run_money(MoneyConfig(database_url=database_url, workdir=tmp_path, kills=3, meters=6))
    print("\n".join(run.lines()))
    report = run.report
    assert [c.kind for c in run.cycles] == ["recharge.after_credit", "recharge.after_commit", "recharge.before_credit"]
    assert all(c.exit_status == -9 for c in run.cycles), "each fault point kills the process by SIGKILL"
    assert all(c.settle_seconds is not None for c in run.cycles), "everything settled after each restart"
    assert report.orders > 0 and report.acknowledged > 0 and report.readings > 0
    assert report.in_doubt_keyed + report.in_doubt_unkeyed >= 3, "each kill leaves a recharge in doubt"
    assert report.credited_twice == 0
    assert report.lost == report.credited_here_only == 0
    assert report.not_final == report.not_success == 0
    assert report.unresolved_orders == []
    assert report.reply_mismatches == 0
    assert report.ledger_mismatches == 0
    assert report.debits > 0 and report.credits > 0
    assert report.opening + report.credits - report.debits == report.balance
    assert run.ok
