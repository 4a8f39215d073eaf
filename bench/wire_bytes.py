"""Bytes on the wire, without and with gzip: call 1 on a 10,000-meter site, and the resident's
consumption page with everything it loads (HTML, plotly.js, the portal's CSS and script).

One command: `python bench/wire_bytes.py`. A throwaway SQLite database (the sizes are the same
on PostgreSQL), the real app over a real socket, response bodies counted as received (not
decompressed). "identity" is what every client got before the gateway compressed anything.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
import zlib
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from common import data_dir, machine
from site_readings import SITE, build_site

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.portaldata: the portal's test world

from gateway.app import create_app
from gateway.compression import GZIP_WBITS
from gateway.settings import Settings
from storage.db.engine import Database
from tests.portaldata import RESIDENT, add_accounts, log_in, make_world

ENCODINGS = {"identity": "identity", "gzip": "gzip, deflate"}
IDENTITY = {"Accept-Encoding": "identity"}
ASSET = re.compile(r'(?:src|href)="(/(?:portal|docs)/static/[^"]+)"')


async def received(client: TestClient, path: str, accept: str, headers: dict[str, str] | None = None) -> int:
    """Body bytes as sent by the server."""
    response = await client.get(path, headers={"Accept-Encoding": accept, **(headers or {})}, auto_decompress=False)
    body = await response.read()
    assert response.status == 200, (path, response.status)
    return len(body)


async def measure(url: str) -> None:
    key = await build_site(url, 10_000)
    db = Database(url)
    try:
        await make_world(db)
        await add_accounts(db)
    finally:
        await db.dispose()
    app = create_app(Settings(database_url=url, scheduler=False))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        call_1 = f"/api/v1/site/readings?site_id={SITE}"
        print(f"machine: {machine()}")
        print("call 1, 10,000 meters (GET /api/v1/site/readings):")
        for name, accept in ENCODINGS.items():
            print(f"  {name:8} {await received(client, call_1, accept, {'X-API-Key': key}):>10,} bytes")
        plain = await (await client.get(call_1, headers={**IDENTITY, "X-API-Key": key})).read()
        started = time.perf_counter()
        for _ in range(10):
            zlib.compress(plain, 1, GZIP_WBITS)
        print(f"  compressing it costs the server {(time.perf_counter() - started) * 100:.1f} ms of CPU per reply")
        assert (await log_in(client)).status == 303
        page = f"/profile/{RESIDENT}/consumption?period=current-month"
        html = await (await client.get(page)).text()
        assets = sorted(set(ASSET.findall(html)))
        print(f"consumption page ({page}) and what it loads: {', '.join(assets)}")
        for name, accept in ENCODINGS.items():
            sizes = {path: await received(client, path, accept) for path in [page, *assets]}
            detail = ", ".join(f"{Path(p.split('?')[0]).name or 'page'} {n:,}" for p, n in sizes.items())
            print(f"  {name:8} {sum(sizes.values()):>10,} bytes   ({detail})")


def main() -> int:
    with data_dir() as directory:
        asyncio.run(measure(f"sqlite+aiosqlite:///{directory / 'wire.db'}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
