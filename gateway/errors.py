"""The one error path: domain errors and HTTP errors become JSON error envelopes here.

Handlers raise; they never build an error dict. A route can carry its own envelope
(`ERROR_RENDERER` attribute on the handler, used by the Factech calls, whose documents spell
their errors per call); every other route answers `{"status": "error", "message", "errors"}`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy.exc
from aiohttp import web
from marshmallow import ValidationError

from schemas.fields import DAY_RANGE, day_from_text
from storage.errors import DomainError, InvalidInput, Overloaded, TooLarge

log = logging.getLogger("gateway.errors")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ErrorRenderer = Callable[[web.Request, DomainError, int], web.Response]

STATUS_BY_KIND = {
    "invalid": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "refused": 422,
    "headend_failed": 502,
    "overloaded": 503,
    "unreachable": 504,
}


def json_error(status: int, message: str, errors: dict[str, Any] | None = None, **headers: str) -> web.Response:
    """The plain error envelope used outside the Factech calls."""
    body: dict[str, Any] = {"status": "error", "message": message}
    if errors:
        body["errors"] = errors
    return web.json_response(body, status=status, headers=headers or None)


def invalid_from_validation(err: ValidationError, message: str = "Invalid input") -> InvalidInput:
    """A marshmallow ValidationError as InvalidInput naming the fields."""
    messages = err.messages if isinstance(err.messages, dict) else {"_schema": err.messages}
    fields = ", ".join(sorted(str(k) for k in messages))
    return InvalidInput(f"{message}: {fields}" if fields else message, messages)  # type: ignore[arg-type]


def render_error(request: web.Request, error: DomainError) -> web.Response:
    """Turn a domain error into the route's envelope and HTTP status."""
    status = STATUS_BY_KIND.get(error.kind, 400)
    renderer: ErrorRenderer | None = getattr(request.match_info.handler, "ERROR_RENDERER", None)
    if renderer is not None:
        return renderer(request, error, status)
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, Overloaded) else {}
    return json_error(status, error.message, error.errors, **headers)


def error_reply(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The JSON reply for an error a handler raised; re-raises what is not to be answered here
    (a redirect or other HTTP status below 400, a client that hung up)."""
    if isinstance(exc, DomainError):
        return render_error(request, exc)
    if isinstance(exc, ValidationError):
        return render_error(request, invalid_from_validation(exc))
    if isinstance(exc, sqlalchemy.exc.TimeoutError):
        # Every pooled connection stayed busy for the pool's whole timeout: overloaded, not broken.
        log.warning("database connection pool exhausted on %s %s", request.method, request.path)
        return render_error(request, Overloaded("Database busy; nothing was done, retry shortly", retry_after=2))
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        if exc.status == 413:
            return render_error(request, TooLarge(f"Request body too large: {exc.text}"))
        # A 405 keeps its Allow header (RFC 9110: the methods the resource does support).
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
        return json_error(exc.status, exc.reason, **allow)
    if isinstance(exc, ConnectionResetError):
        raise exc  # the client went away mid-request: nobody to answer (aiohttp notes it at debug level)
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return json_error(500, "Internal server error")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Catch every error on the way out and answer it as JSON (`error_reply`).

    The gateway itself runs this as part of its one middleware (`gateway.middleware`); this one
    serves apps that need the error path alone (tests).
    """
    try:
        return await handler(request)
    except Exception as exc:
        return error_reply(request, exc)


def day_input(text: str, name: str = "day") -> dt.date:
    """A day query parameter or CLI flag (schemas.fields.day_from_text, the one day rule);
    InvalidInput naming it otherwise."""
    day = day_from_text(text)
    if day is None:
        why = f"a date YYYY-MM-DD {DAY_RANGE}"
        raise InvalidInput(f"{name} must be {why}, got {text!r}", {name: [f"Not {why}."]})
    return day
