"""The PostgreSQL reset between tests (tests/conftest.py `_truncate_all`): it empties only the
tables holding rows (deleting few rows, truncating many), so it must still leave every table
empty and every id starting from 1 again, as `TRUNCATE ... RESTART IDENTITY` of every table did
(rolled-back inserts advance ids too)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from storage.db.engine import Database
from storage.db.models import LedgerEntry
from storage.registry import meters, sites
from tests import conftest
from tests.conftest import _truncate_all


class RolledBack(Exception):
    pass


@pytest.mark.parametrize("few_rows", [conftest.FEW_ROWS, 0], ids=["deleted", "truncated"])
def test_the_reset_empties_every_table_and_restarts_every_id(
    postgres_url: str, few_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(conftest, "FEW_ROWS", few_rows)
    asyncio.run(_truncate_all(postgres_url))
    asyncio.run(story(postgres_url))


async def ledger_ids(db: Database) -> list[int]:
    async with db.reader() as session:
        return list((await session.execute(select(LedgerEntry.id).order_by(LedgerEntry.id))).scalars())  # type: ignore[arg-type]


async def story(url: str) -> None:
    db = Database(url)
    try:
        await sites.add_site(db, site_id="S1", name="S1", region="North")
        for meter_no in (1, 2):
            await meters.add_meter(db, meter_no=meter_no, site_id="S1", unit_no=f"A-{meter_no}", balance=Decimal(5))
        with pytest.raises(RolledBack):
            async with db.transaction() as session:  # takes ids 3 and 4, then rolls back
                session.add_all(
                    LedgerEntry(meter_no=n, kind="adjustment", amount=Decimal(1), balance_after=Decimal(6))
                    for n in (1, 2)
                )
                await session.flush()
                raise RolledBack
        assert await ledger_ids(db) == [1, 2]

        await _truncate_all(url)

        async with db.reader() as session:
            tables = (
                await session.execute(
                    text(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                    )
                )
            ).scalars()
            for table in list(tables):
                assert (await session.execute(text(f'SELECT count(*) FROM "{table}"'))).scalar_one() == 0, table
        await sites.add_site(db, site_id="S1", name="S1", region="North")
        await meters.add_meter(db, meter_no=1, site_id="S1", unit_no="A-1", balance=Decimal(5))
        assert await ledger_ids(db) == [1]
    finally:
        await db.dispose()
