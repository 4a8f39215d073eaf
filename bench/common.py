"""What every benchmark shares: the machine line, free ports, a throwaway PostgreSQL database,
and a data directory on the real disk (/tmp may be tmpfs, where fsync costs nothing).
"""

from __future__ import annotations

import contextlib
import os
import platform
import secrets
import socket
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Protocol

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("PG_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def machine() -> str:
    """CPU model, cores (and those this process may use), memory, OS, Python, SQLite, load."""
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    pinned = sorted(os.sched_getaffinity(0))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{model}, {os.cpu_count()} cores (this process on CPU {pinned}), {mem:.0f} GiB, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, load average {load}"
    )


def pin_client() -> str:
    """Keep the load generator off the servers' core: on two or more CPUs pin this process to
    CPU 1 and return "0", the CPU for the servers it starts; on one CPU return "" (unpinned).

    Call it once, before anything asks where to put a server: afterwards this process sees
    only CPU 1.
    """
    if len(os.sched_getaffinity(0)) < 2:
        return ""
    os.sched_setaffinity(0, {1})
    return "0"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def data_dir() -> Iterator[Path]:
    """A temporary directory under var/ (the real disk), removed afterwards."""
    (ROOT / "var").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / "var", prefix="bench-") as tmp:
        yield Path(tmp)


@contextlib.asynccontextmanager
async def throwaway_postgres(admin_url: str = PG_ADMIN_URL) -> AsyncIterator[str]:
    """A new PostgreSQL database (its postgresql+asyncpg URL), dropped afterwards."""
    name = f"gateway_bench_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    await admin(f'CREATE DATABASE "{name}"')
    try:
        base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
        yield f"{base}/{name}"
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def fresh_database(database: str) -> AsyncIterator[tuple[str, Path]]:
    """A fresh database of that kind (`sqlite` or `postgresql`) and a data directory on the real disk."""
    with data_dir() as tmp:
        if database == "sqlite":
            yield f"sqlite+aiosqlite:///{tmp}/bench.db", tmp
        else:
            async with throwaway_postgres() as url:
                yield url, tmp


class Result(Protocol):
    """What a reliability run reports: its lines and whether every promise held."""

    @property
    def ok(self) -> bool:
        """True when nothing was broken."""

    def lines(self) -> list[str]:
        """The report as text."""


async def on_each_database(run: Callable[[str, Path], Awaitable[Result]], *, postgres: bool = True) -> int:
    """`run(url, workdir)` on a fresh SQLite database, then on a throwaway PostgreSQL one (unless
    `postgres` is false), printing each result; the exit status: 0 when every result is ok."""
    results = []
    for label, database in (("SQLite", "sqlite"), ("PostgreSQL", "postgresql"))[: 2 if postgres else 1]:
        async with fresh_database(database) as (url, workdir):
            print(f"\n[{label}] running ...", flush=True)
            results.append(result := await run(url, workdir))
            print("\n".join(f"  {line}" for line in result.lines()), flush=True)
    return 0 if all(result.ok for result in results) else 1
