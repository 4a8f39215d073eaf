"""Operations endpoints: `/healthz` (database reachable, version) and `/metrics` (Prometheus)."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import text

from gateway import __version__
from gateway.keys import DB
from schemas.replies import Health

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """200 when the database answers, 503 when it does not."""
    db = request.app[DB]
    started = time.perf_counter()
    try:
        async with db.reader() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach the database is "unhealthy"
        unreachable = {"status": "error", "version": __version__, "database": f"unreachable: {type(exc).__name__}"}
        return web.json_response(Health().dump(unreachable), status=503)
    took = round((time.perf_counter() - started) * 1000, 2)
    return web.json_response(
        Health().dump({"status": "ok", "version": __version__, "database": db.dialect, "database_ms": took})
    )


@routes.get("/metrics")
async def metrics(_request: web.Request) -> web.Response:
    """Prometheus text exposition of every metric of this process."""
    response = web.Response(body=generate_latest(REGISTRY))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response
