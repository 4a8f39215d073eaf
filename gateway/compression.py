"""gzip on the wire: JSON replies over 1 KB, and the large static assets compressed once.

Call 1 for a 10,000-meter site is about 1.4 MB of JSON and the consumption page loads plotly.js
(4.8 MB): gzip shrinks both several times over (bench/wire_bytes.py). JSON is compressed per
reply at zlib's fastest level (on call 1's 1.4 MB: 3 ms for 8.3x at level 1, 12 ms for 9.5x at
aiohttp's default 6), in a thread when large; a static asset is compressed once per process (at
level 9), on first request, and the bytes kept in memory (the package directory may be
read-only under systemd, so nothing is written beside it). HTML pages are left alone: they
carry session-bound form tokens next to text a visitor can choose, the mix that compression
side channels (BREACH) read.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from pathlib import Path
from typing import TypeGuard

from aiohttp import hdrs, web

MIN_COMPRESSED_BYTES = 1024  # below this gzip's header and the CPU cost outweigh the saving
IN_THREAD_BYTES = 64 * 1024  # above this (about 0.2 ms of compressing) the event loop hands it off
GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib's gzip container
COMPRESSED_TYPES = frozenset({"application/json"})


def accepts_gzip(request: web.BaseRequest) -> bool:
    """True when the client said it takes gzip."""
    return "gzip" in request.headers.get(hdrs.ACCEPT_ENCODING, "").lower()


def compressible(response: web.StreamResponse) -> TypeGuard[web.Response]:
    """True for a JSON reply over 1 KB not compressed yet (the cheapest test first: the ingest
    hot path's small replies leave after the size check)."""
    return (
        type(response) is web.Response
        and isinstance(body := response.body, bytes)
        and len(body) >= MIN_COMPRESSED_BYTES
        and response.content_type in COMPRESSED_TYPES
        and hdrs.CONTENT_ENCODING not in response.headers
    )


async def compress_json(request: web.BaseRequest, response: web.Response) -> None:
    """gzip a `compressible` reply for a client that takes gzip (aiohttp then sends it as is)."""
    body = response.body
    assert isinstance(body, bytes), "compressible() checks the body first"
    response.headers[hdrs.VARY] = hdrs.ACCEPT_ENCODING
    if accepts_gzip(request):
        if len(body) > IN_THREAD_BYTES:
            response.body = await asyncio.to_thread(zlib.compress, body, 1, GZIP_WBITS)
        else:
            response.body = zlib.compress(body, 1, GZIP_WBITS)
        response.headers[hdrs.CONTENT_ENCODING] = "gzip"


class StaticAsset:
    """A file served as is, or gzip-compressed (compressed once, on first request) when accepted."""

    def __init__(self, path: Path, content_type: str, cache_control: str = "public, max-age=86400") -> None:
        self.path = path
        self.content_type = content_type
        self.cache_control = cache_control
        self._gzipped: tuple[bytes, str] | None = None

    async def gzipped(self) -> tuple[bytes, str]:
        """The compressed bytes and their ETag (computed in a thread the first time)."""
        if self._gzipped is None:
            # Two first requests at once may both compress: the same bytes, so no lock (and no
            # event-loop-bound object in an asset shared by every app of the process).
            self._gzipped = await asyncio.to_thread(self._compress)
        return self._gzipped

    def _compress(self) -> tuple[bytes, str]:
        raw = self.path.read_bytes()
        stat = self.path.stat()
        # mtime=0: the same file always compresses to the same bytes (stable across workers).
        return gzip.compress(raw, compresslevel=9, mtime=0), f'"{stat.st_mtime_ns:x}-{stat.st_size:x}-gzip"'

    async def response(self, request: web.Request) -> web.StreamResponse:
        """The reply for `request`: gzip when the client takes it, else the file itself."""
        headers = {hdrs.CACHE_CONTROL: self.cache_control, hdrs.VARY: hdrs.ACCEPT_ENCODING}
        if self.content_type.startswith("image/") or not accepts_gzip(request):  # PNG is compressed already
            return web.FileResponse(self.path, headers={**headers, hdrs.CONTENT_TYPE: self.content_type})
        body, etag = await self.gzipped()
        headers[hdrs.ETAG] = etag
        if request.headers.get(hdrs.IF_NONE_MATCH) == etag:
            return web.Response(status=304, headers=headers)
        headers[hdrs.CONTENT_ENCODING] = "gzip"
        return web.Response(body=body, content_type=self.content_type, headers=headers)
