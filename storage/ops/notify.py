"""Credential changes announced across processes: PostgreSQL LISTEN/NOTIFY.

Migration 0007_partitions adds statement triggers that NOTIFY `gateway_credentials` whenever a
key's secret or revocation, or a meter's device token, changes, in the same transaction (a
NOTIFY is delivered at commit, and only if it commits). `credential_changes` LISTENs on a
connection of its own for as long as it is open and calls `on_change` for each notification.

If that connection is lost (a database restart), the caches' short lifetime still bounds how
long a revoked key keeps working; a warning is logged. SQLite has one process: nothing to hear.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from storage.db.engine import Database

CHANNEL = "gateway_credentials"
log = logging.getLogger("gateway.notify")


@contextlib.asynccontextmanager
async def credential_changes(db: Database, on_change: Callable[[], None]) -> AsyncIterator[None]:
    """Call `on_change()` whenever another transaction commits a credential change."""
    if db.is_sqlite:
        yield
        return
    import asyncpg  # PostgreSQL only: the `postgres` extra

    conn = await asyncpg.connect(db.driver_dsn())

    def heard(_conn: Any, _pid: int, _channel: str, table: str) -> None:
        log.debug("credentials changed in %s: clearing caches", table)
        on_change()

    def lost(_conn: Any) -> None:
        log.warning("lost the %s listener: revoked credentials now expire with the cache", CHANNEL)

    conn.add_termination_listener(lost)
    await conn.add_listener(CHANNEL, heard)
    try:
        yield
    finally:
        conn.remove_termination_listener(lost)
        await conn.close()
