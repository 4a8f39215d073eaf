"""The mock meter server's one app factory: head-end calls, control calls, health, and the
optional fleet simulator running alongside in the same event loop.

Middlewares, outermost first: errors (every failure becomes `{"error": ...}` JSON), bearer auth
(when a token is set), fault injection (head-end calls only).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from marshmallow import ValidationError

from mock_meter_server.faults import FaultInjector, Faults, InjectedFailure, fault_middleware
from mock_meter_server.headend import HEADEND, HeadEnd, HeadEndError, Now, load_body, utc_now
from mock_meter_server.headend import routes as headend_routes
from schemas.headend import (
    CONTROL_FAULTS_PATH,
    CONTROL_RESET_PATH,
    CONTROL_STATE_PATH,
    PREFIX,
    FaultsSchema,
    field_errors,
)

log = logging.getLogger("mock_meter_server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

INJECTOR = web.AppKey("injector", FaultInjector)
TOKEN = web.AppKey("token", str)

control = web.RouteTableDef()


def error_reply(status: int, message: str, **extra: Any) -> web.Response:
    """The one error shape of this server."""
    return web.json_response({"error": message, **extra}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into `{"error": ...}` JSON with the right status."""
    try:
        return await handler(request)
    except ValidationError as exc:
        errors = field_errors(exc)
        why = "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in errors.items())
        return error_reply(400, f"invalid request: {why}", fields=errors)
    except HeadEndError as exc:
        return error_reply(exc.status, exc.message, **exc.extra)
    except InjectedFailure as exc:
        return error_reply(exc.status, "injected head-end failure")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_reply(exc.status, exc.reason)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With a token set, head-end and control calls need `Authorization: Bearer <token>`."""
    token = request.app[TOKEN]
    if token and (request.path.startswith(PREFIX + "/") or request.path.startswith("/control/")):
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            response = error_reply(401, "missing or invalid bearer token")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
    return await handler(request)


@control.get("/healthz")
async def healthz(_request: web.Request) -> web.Response:
    """Liveness."""
    return web.json_response({"status": "ok", "service": "mock-meter-server"})


@control.get(CONTROL_FAULTS_PATH)
async def get_faults(request: web.Request) -> web.Response:
    """The current fault settings."""
    return web.json_response(FaultsSchema().dump(request.app[INJECTOR].faults.as_dict()))


@control.post(CONTROL_FAULTS_PATH)
async def set_faults(request: web.Request) -> web.Response:
    """Change some fault settings (a partial update, validated whole before any applies)."""
    changes = await load_body(request, FaultsSchema())
    injector = request.app[INJECTOR]
    injector.faults.update(changes)
    log.info("faults changed: %s", sorted(changes))
    return web.json_response(FaultsSchema().dump(injector.faults.as_dict()))


@control.post(CONTROL_RESET_PATH)
async def reset(request: web.Request) -> web.Response:
    """Forget every meter, command and credit; faults and the random sequence back to startup."""
    injector = request.app[INJECTOR]
    injector.reset()
    request.app[HEADEND].reset()
    return web.json_response({"status": "reset", "faults": FaultsSchema().dump(injector.faults.as_dict())})


@control.get(CONTROL_STATE_PATH)
async def state(request: web.Request) -> web.Response:
    """Meters (relay, loads, credited total), credits, command count and fault counters."""
    return web.json_response(request.app[HEADEND].snapshot())


def create_app(
    *,
    faults: Faults | None = None,
    token: str = "",
    seed: int = 0,
    clock: Now = utc_now,
    fleet: Callable[[web.Application], AsyncIterator[None]] | None = None,
    state_file: Path | None = None,
) -> web.Application:
    """Build the mock head-end (with `fleet`, a cleanup context that runs the simulator)."""
    injector = FaultInjector(faults or Faults(), seed=seed)
    app = web.Application(middlewares=[error_middleware, auth_middleware, fault_middleware(injector)])
    app[INJECTOR] = injector
    app[HEADEND] = HeadEnd(injector, clock=clock, seed=seed, state_file=state_file)
    app[TOKEN] = token
    app.add_routes(headend_routes)
    app.add_routes(control)
    if fleet is not None:
        app.cleanup_ctx.append(fleet)
    return app
