"""Plumbing shared by the `/api/v1` routes: who is calling, what they sent, and JSON replies.

`authenticated(role)` wraps a handler so it receives the caller's `Principal` (401 → 403 are
checked before the handler runs; the 404 of site scope is the handler's, via `check_site`).
`request_inputs` reads parameters the same way for every route: GET from the query string;
POST, PUT and PATCH from the query string overlaid by a JSON object or a form body, so that
iSocietyManager can send either.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from multidict import MultiDictProxy

from gateway.app_keys import ACTOR, KEYS
from gateway.auth import Principal, authenticate
from storage.errors import InvalidInput

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

PrincipalHandler = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]


def authenticated(
    role: str,
) -> Callable[[PrincipalHandler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Decorate a handler taking (request, principal): the `X-API-Key` must carry `role`."""

    def wrap(handler: PrincipalHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @functools.wraps(handler)
        async def endpoint(request: web.Request) -> web.StreamResponse:
            principal = await authenticate(request.app[KEYS], request, role)
            request[ACTOR] = f"key:{principal.name}"  # named in the audit trail (gateway.audit)
            return await handler(request, principal)

        endpoint.API_ROLE = role  # type: ignore[attr-defined]  # read by the spec generator (openapi/)
        return endpoint

    return wrap


async def read_body(request: web.Request) -> bytes:
    """The request body; InvalidInput if its content encoding cannot be undone (a corrupt gzip body)."""
    try:
        return await request.read()
    except RequestPayloadError as exc:
        raise InvalidInput("Invalid input: body", {"body": [f"The body could not be read: {exc}."]}) from None


async def read_form(request: web.Request) -> MultiDictProxy[str | web.FileField]:
    """A form body (urlencoded or multipart); InvalidInput naming the problem if it cannot be read."""
    try:
        return await request.post()
    except UnicodeDecodeError:
        raise InvalidInput("Invalid input: body", {"body": ["Not valid UTF-8."]}) from None
    # ValueError: multipart without a boundary; LookupError: a charset Python does not know;
    # RuntimeError: a part's unknown Content-Transfer-Encoding; RequestPayloadError: a corrupt
    # compressed body. All are the client's mistakes, raised by aiohttp while it reads.
    except (ValueError, LookupError, RuntimeError, RequestPayloadError) as exc:
        raise InvalidInput("Invalid input: body", {"body": [f"Malformed form body: {exc}"]}) from None


async def request_inputs(request: web.Request) -> dict[str, Any]:
    """The request's parameters: query string, overlaid by a JSON or form body."""
    inputs: dict[str, Any] = dict(request.query)
    if request.method in ("GET", "HEAD", "DELETE") or not request.body_exists:
        return inputs
    if request.content_type in FORM_TYPES:
        form = await read_form(request)
        inputs.update({name: value for name, value in form.items() if isinstance(value, str)})
        return inputs
    raw = await read_body(request)
    if not raw.strip():
        return inputs
    body = parse_json_object(raw)
    inputs.update(body)
    return inputs


async def read_json(request: web.Request) -> Any:
    """The request body as any JSON value (ingest takes an object or an array), parsed by orjson:
    floats stay floats, as packets carry kWh; InvalidInput naming the problem if it is not JSON."""
    raw = await read_body(request)
    if not raw:
        raise InvalidInput("Malformed JSON: the request body is empty", {"_body": ["Empty body."]})
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"Malformed JSON: {exc}", {"_body": ["Not valid JSON."]}) from None


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object from a request body, numbers with a fraction as exact Decimals; InvalidInput otherwise.

    Numbers with an exponent stay text (`_exact_number`), so that money fields can refuse them.

    orjson checks the body first: it refuses invalid UTF-8, lone surrogates ("\\ud800", which
    no database can store), NaN/Infinity (not JSON) and nesting deeper than 1,024 levels. The
    standard library alone answered deep nesting, surrogates and bad UTF-8 with 500s. Only then
    does the standard library parse it again, for the Decimals (money stays exact); it recurses
    per level, so a body near orjson's depth limit can still exhaust Python's stack: that is a
    malformed body too, not a crash.
    """
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("Invalid input: body", {"body": ["Not valid UTF-8."]}) from None
    try:
        orjson.loads(raw)
        body = json.loads(raw, parse_float=_exact_number)
    except (orjson.JSONDecodeError, ValueError, RecursionError):
        raise InvalidInput("Invalid input: body", {"body": ["Malformed JSON."]}) from None
    if not isinstance(body, dict):
        raise InvalidInput("Invalid input: body", {"body": ["Expected a JSON object."]})
    return body


def _exact_number(text: str) -> Decimal | str:
    """A JSON number with a fraction as an exact Decimal; one with an exponent kept as written.

    `1E-2` and `0.01` are the same Decimal, so the exponent would be lost here: the text goes on
    to the schema, whose money fields refuse exponents and name the field (schemas.fields.Amount).
    """
    return text if "e" in text or "E" in text else Decimal(text)


def json_reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response encoded with orjson (a site's 10,000 meters encode in a few ms)."""
    return web.Response(body=orjson.dumps(body), status=status, headers=headers, content_type="application/json")
