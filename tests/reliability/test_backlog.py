"""Quick backlog flush: meters come back at once with a missed day each, some posting arrays and
some single packets at the same time, against a real `gateway serve` whose writer queue is kept
small so that 503 + Retry-After really happens.

The full run (2,000 meters per mode, default queue; figures for RELIABILITY.md) is
`python bench/backlog.py`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.reliability.backlog import OPENING, TARIFF, BacklogReport, check, flush
from tests.reliability.gatewayproc import GatewayProcess, prepare_site

METERS = 20  # per mode


async def test_backlog_is_stored_once_with_retry_after_honoured(database_url: str, tmp_path: Path) -> None:
    key = await prepare_site(database_url, meters=2 * METERS, opening_balance=OPENING, tariff=TARIFF)
    # 20 days of 48 readings in arrays cannot all wait at once in a queue of 500: about half
    # get 503 and come back after Retry-After (one round of retries, not twenty).
    gateway = GatewayProcess(database_url, tmp_path, env={"GATEWAY_WRITER_QUEUE_PACKETS": "500"})
    await gateway.start()
    try:
        batched, unbatched = await asyncio.gather(
            flush(gateway.url, key, meters=METERS, batched=True, connections=METERS),
            flush(gateway.url, key, meters=METERS, batched=False, connections=METERS, first_index=METERS),
        )
    finally:
        await gateway.stop()
    whole = BacklogReport("both", 2 * METERS)
    await check(database_url, whole)
    print(f"\n{batched.line()}\n{unbatched.line()}\nthe database: {whole.stored:,} readings of {whole.expected:,}")
    assert not batched.unexpected and not unbatched.unexpected
    assert whole.stored == whole.expected == 2 * METERS * 48
    assert whole.stored_twice == 0 and whole.wrong_balance == 0
    assert batched.retried[503] > 0  # the queue did overflow, and the retries after Retry-After got in
