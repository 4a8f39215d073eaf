"""Admin reports on days (X-API-Key with role `admin`; other sites' ids answer 404):

- `GET /api/v1/admin/today?site_id=S`: the seed's daily structure for the site's current local
  day, `{meter_no: {"HH:MM": kWh}}`.
- `GET /api/v1/admin/gaps?site_id=S&day=YYYY-MM-DD`: meters of an ended day with fewer
  intervals than the day has (48; 46 or 50 on DST change days).
"""

from __future__ import annotations

from aiohttp import web
from marshmallow import ValidationError

from gateway.app_keys import CLOCK, DB, KEYS
from gateway.auth import authenticate
from gateway.errors import day_input
from schemas.fields import printable
from schemas.replies import GapsReport
from storage import days
from storage.errors import InvalidInput
from storage.legacy import seed_files

routes = web.RouteTableDef()


def _required(request: web.Request, name: str) -> str:
    value = request.query.get(name, "").strip()
    if not value:
        raise InvalidInput(f"{name} is required", {name: ["Missing data for required field."]})
    try:
        printable(value)  # PostgreSQL cannot compare text with a NUL in it
    except ValidationError as err:
        raise InvalidInput(f"Invalid input: {name}", {name: [str(m) for m in err.messages]}) from None
    return value


async def _admin_site(request: web.Request) -> str:
    """The requested site_id, once the caller is an admin of it (401 → 403 → 404)."""
    principal = await authenticate(request.app[KEYS], request, "admin")
    site_id = _required(request, "site_id")
    principal.check_site(site_id)
    return site_id


@routes.get("/api/v1/admin/today")
async def today(request: web.Request) -> web.Response:
    """Today's readings of every active meter of the site, keyed by the seed's labels."""
    site_id = await _admin_site(request)
    readings = await seed_files.today_readings(request.app[DB], site_id=site_id, now=request.app[CLOCK].now())
    return web.json_response(
        {
            meter: {label: seed_files.kwh_number(kwh) for label, kwh in by_label.items()}
            for meter, by_label in readings.items()
        }
    )


@routes.get("/api/v1/admin/gaps")
async def gaps(request: web.Request) -> web.Response:
    """Meters with missing intervals on an ended day of the site."""
    site_id = await _admin_site(request)
    day = day_input(_required(request, "day"))
    found = await days.day_gaps(request.app[DB], site_id=site_id, day=day, now=request.app[CLOCK].now())
    meters = [
        {"meter_no": str(meter_no), "intervals": seen, "missing": found.intervals_expected - seen}
        for meter_no, seen in found.meters
    ]
    return web.json_response(GapsReport().dump({**vars(found), "meters": meters}))
