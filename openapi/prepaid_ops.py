"""The spec of the admin API's prepaid policy routes: tariffs, holidays, site events, webhook."""

from __future__ import annotations

import functools
from typing import Any

from openapi.other_ops import ADMIN_ERRORS, ADMIN_READ_ERRORS, SITE_ID, Ref, admin_op, body, path_param, reply
from schemas import admin_replies as admin_reply
from schemas import policy

DATE = path_param("date", {"type": "string", "format": "date"}, "A holiday's date, YYYY-MM-DD")
AFTER = {
    "in": "query",
    "name": "after",
    "required": False,
    "description": "Only events after this event id",
    "schema": {"type": "string", "minLength": 1, "maxLength": 40},
}
LIMIT = {
    "in": "query",
    "name": "limit",
    "required": False,
    "description": "At most this many events (default 100)",
    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
}


def prepaid_ops(ref: Ref) -> dict[tuple[str, str], dict[str, Any]]:
    """Tariff history, holidays, the event list and the site webhook of a site."""
    op, ok = functools.partial(admin_op, ref), functools.partial(reply, ref)
    site = "/api/v1/admin/sites/{site_id}"
    return {
        ("POST", f"{site}/tariffs"): op(
            "Add a tariff from a site-local time (default now; never in the past)", ok(admin_reply.TariffAdded, 201),
            (*ADMIN_ERRORS, 409), parameters=[SITE_ID], requestBody=body(ref(policy.TariffCreate))),
        ("GET", f"{site}/tariffs"): op("The site's tariff history, oldest first", ok(admin_reply.Tariffs),
                                       ADMIN_READ_ERRORS, parameters=[SITE_ID]),
        ("POST", f"{site}/holidays"): op(
            "Add a holiday (no zero-balance cuts that local day)", ok(admin_reply.HolidayAdded, 201), ADMIN_ERRORS,
            parameters=[SITE_ID], requestBody=body(ref(policy.HolidayCreate))),
        ("GET", f"{site}/holidays"): op("The site's holidays", ok(admin_reply.Holidays), ADMIN_READ_ERRORS,
                                        parameters=[SITE_ID]),
        ("DELETE", f"{site}/holidays/{{date}}"): op("Remove a holiday", ok(admin_reply.HolidayRemoved),
                                                    ADMIN_READ_ERRORS, parameters=[SITE_ID, DATE]),
        ("GET", f"{site}/events"): op(
            "The site's events in order (balance.low, cut.deferred, meter.cut, meter.restored, recharge.settled)",
            ok(admin_reply.SiteEvents), ADMIN_READ_ERRORS, parameters=[SITE_ID, AFTER, LIMIT]),
        ("PUT", f"{site}/webhook"): op(
            "Where the site's events are POSTed (signed like DG callbacks); a new secret each time",
            ok(admin_reply.WebhookSet), (*ADMIN_ERRORS, 422), parameters=[SITE_ID],
            requestBody=body(ref(policy.WebhookSet))),
        ("GET", f"{site}/webhook"): op("The site's webhook (never its secret)", ok(admin_reply.WebhookReply),
                                       ADMIN_READ_ERRORS, parameters=[SITE_ID]),
        ("DELETE", f"{site}/webhook"): op("Stop delivering the site's events", ok(admin_reply.WebhookRemoved),
                                          ADMIN_READ_ERRORS, parameters=[SITE_ID]),
    }  # fmt: skip
