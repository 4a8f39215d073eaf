"""Operations endpoints: `/livez`, `/readyz` (and `/healthz`, its alias) and `/metrics`.

Liveness only says the process answers: a probe that restarts unresponsive processes must not
restart every gateway because the database blinked. Readiness says this process can do its job
now (database reachable, schema at the code's migration, ingest writer running): a load balancer
stops sending it traffic while it cannot.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from aiohttp import web

from gateway import __version__, metrics
from gateway.app_keys import DB, WRITER
from schemas.replies import Alive, Health
from storage.db.migrate import current_revision, head_revision

routes = web.RouteTableDef()


@routes.get("/livez")
async def livez(_request: web.Request) -> web.Response:
    """200 whenever the process answers (nothing else is checked)."""
    return web.json_response(Alive().dump({"status": "ok", "version": __version__}))


@functools.cache
def _code_revision() -> str | None:
    return head_revision()


@routes.get("/readyz")
@routes.get("/healthz")
async def readyz(request: web.Request) -> web.Response:
    """200 when the database answers at the code's migration and the writer runs; else 503."""
    db = request.app[DB]
    body: dict[str, Any] = {"status": "ok", "version": __version__, "database": db.dialect}
    problems = []
    started = time.perf_counter()
    try:
        revision = await current_revision(db)
    except Exception as exc:  # any failure to reach the database makes the process unready
        body["database"] = f"unreachable: {type(exc).__name__}"
        problems.append("database")
    else:
        body["database_ms"] = round((time.perf_counter() - started) * 1000, 2)
        if revision != _code_revision():
            body["migration"] = f"database at {revision or 'none'}, code needs {_code_revision()}"
            problems.append("migration")
    writer = request.app.get(WRITER)
    if writer is None or not writer.running:
        body["writer"] = "stopped"
        problems.append("writer")
    if problems:
        body["status"] = "error"
        return web.json_response(Health().dump(body), status=503)
    return web.json_response(Health().dump(body))


@routes.get("/metrics")
async def prometheus_metrics(_request: web.Request) -> web.Response:
    """Prometheus text exposition: this process's metrics, or every worker's under `--workers N`."""
    body, content_type = metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})
