"""The audit trail over HTTP: each handler that changes state writes down what it did.

A handler calls `record_change(request, action, ...)` once its change is committed, just
before answering; it is appended to the trail (`storage.audit.record`) with who (the API key
`authenticated` put in `request[ACTOR]`, or the portal user the portal puts there), when and
from which address. A refused or failed request writes nothing. No middleware: ingest's hot
path pays nothing for it. `GET /api/v1/admin/audit?site_id=&after=` lists the trail of the
key's sites.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from gateway.api import authenticated, json_reply
from gateway.app_keys import ACTOR, CLOCK, DB
from gateway.auth import Principal
from schemas.admin import AuditQuery
from schemas.replies import AuditReply
from storage import audit
from storage.registry import keys

log = logging.getLogger("gateway.audit")
routes = web.RouteTableDef()


async def record_change(
    request: web.Request,
    action: str,
    *,
    site_id: str | None,
    target: object = "",
    details: dict[str, Any] | None = None,
) -> None:
    """Append `action` on `target` of `site_id` to the trail, by this request's caller.

    Called by a handler once its change is committed, just before it answers (a refused request
    never gets here). details: what was asked, never a secret (storage.audit hides known names).
    """
    try:
        await audit.record(
            request.app[DB],
            actor=request.get(ACTOR, "unknown"),
            action=action,
            at=request.app[CLOCK].now(),
            site_id=site_id,
            target=str(target),
            address=request.remote or "",
            details=details,
        )
    except Exception:
        # The change is made and committed: answering an error now would make the caller retry
        # it (a second recharge). Say it loudly instead; the change's own records remain.
        log.exception("audit event %s by %s NOT RECORDED", action, request.get(ACTOR))


@routes.get("/api/v1/admin/audit")
@authenticated("admin")
async def list_audit(request: web.Request, principal: Principal) -> web.Response:
    """The audit trail of the key's sites (or one of them), oldest first, 500 at a time."""
    args = AuditQuery().load(request.query)
    site_id = args.get("site_id")
    if site_id is not None:
        principal.check_site(site_id)
    every_site = keys.ALL_SITES in principal.sites
    after_id, after_time = args.get("after", (None, None))
    events = await audit.list_events(
        request.app[DB],
        sites=None if every_site else principal.sites,
        site_id=site_id,
        after_id=after_id,
        after_time=after_time,
    )
    return json_reply(AuditReply().dump({"count": len(events), "data": events}))
