"""The gateway's one middleware: every request passes through it once.

It does what were four middlewares, in their order, outermost first:
1. metrics (`gateway.metrics`): time and count every request by route, method and the status it
   was finally answered with;
2. gzip (`gateway.compression`): JSON replies over 1 KB, error envelopes included;
3. the error envelope (`gateway.errors`): domain and HTTP errors answered as JSON;
4. the portal (`gateway.portal`): sessions and HTML error pages, for portal paths only.

One layer rather than four because each middleware is a coroutine every request awaits through,
and the ingest hot path is held to a ratio of a bare aiohttp handler (README, Performance).
Measured on single packets (server on one core): without any of the four the event loop spent
about a tenth less CPU per request; this one layer keeps the metrics and most of that saving.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.compression import compress_json, compressible
from gateway.errors import error_reply
from gateway.metrics import count_request
from gateway.portal import is_portal_path, portal_reply

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def gateway_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer the request (portal pages through the portal), errors as the envelope, large JSON
    gzipped; count it by the status it was answered with."""
    started = time.perf_counter()
    try:
        try:
            if is_portal_path(request.path):
                response = await portal_reply(request, handler)
            else:
                response = await handler(request)
        except Exception as exc:
            response = error_reply(request, exc)
        if compressible(response):
            await compress_json(request, response)
    except web.HTTPException as exc:  # a redirect (errors were answered above)
        count_request(request, exc.status, started)
        raise
    except BaseException:
        count_request(request, 500, started)
        raise
    count_request(request, response.status, started)
    return response
