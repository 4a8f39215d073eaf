"""The table of every `/api/v1` call: its role and the inputs that name objects of a site.

The tenancy matrix is generated from this table (tests/reliability/test_tenancy.py), and a test
checks the table against the app's routes both ways: a route the table lacks fails, and so does
an entry that is neither a route nor listed as still to come (`PENDING`). The calls of branch
`commands` (3, 4, 6-9) were written here from DESIGN.md before that branch was merged, and
the matrix took them up unchanged when it was.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.reliability.world import Side


@dataclass(frozen=True)
class Obj:
    """An input that names an object of a site: the `Side` attribute it takes its value from."""

    kind: str

    def value(self, side: Side) -> Any:
        """The object's id on that side, in the form the API takes."""
        if self.kind == "sites":
            return [side.site_id]
        if self.kind in ("victim_a", "victim_b"):
            return side.victim_keys[0 if self.kind == "victim_a" else 1]
        value = getattr(side, self.kind)
        return str(value) if isinstance(value, int) else value


@dataclass(frozen=True)
class ApiCall:
    """One route: method, path template, role it needs, inputs (query for GET, JSON body otherwise)."""

    method: str
    path: str
    role: str
    inputs: Mapping[str, Any] = field(default_factory=dict)  # name → literal or Obj
    path_kinds: Mapping[str, str] = field(default_factory=dict)  # path parameter → Obj kind if not its name

    @property
    def path_params(self) -> list[str]:
        """The `{names}` in the path template."""
        return re.findall(r"{(\w+)}", self.path)

    def objects(self) -> list[str]:
        """Every input and path parameter that names an object (what the matrix varies)."""
        return [*self.path_params, *(name for name, value in self.inputs.items() if isinstance(value, Obj))]

    def _obj(self, name: str) -> Obj:
        if name in self.path_params:
            return Obj(self.path_kinds.get(name, name))
        value = self.inputs[name]
        assert isinstance(value, Obj)
        return value

    def request(self, ours: Side, theirs: Side, foreign: frozenset[str] = frozenset()) -> tuple[str, dict[str, Any]]:
        """(path, inputs) naming our objects, except those in `foreign`, which name theirs."""

        def side_of(name: str) -> Side:
            return theirs if name in foreign else ours

        path = self.path
        for name in self.path_params:
            path = path.replace(f"{{{name}}}", str(self._obj(name).value(side_of(name))))
        inputs = {
            name: value.value(side_of(name)) if isinstance(value, Obj) else value for name, value in self.inputs.items()
        }
        return path, inputs

    @property
    def key(self) -> tuple[str, str]:
        """(method, path) as the router lists it."""
        return self.method, self.path


SITE, METER, DG = Obj("site_id"), Obj("meter_no"), Obj("dg_number")

CALLS: tuple[ApiCall, ...] = (
    # Factech calls (DESIGN.md "Factech API"); inputs as the document names them.
    ApiCall("GET", "/api/v1/site/readings", "read", {"site_id": SITE}),
    ApiCall("GET", "/api/v1/meter/reading", "read", {"meter_no": METER}),
    ApiCall("POST", "/api/v1/meter/recharge", "operate", {"site_id": SITE, "meter_no": METER, "amount": "100.00"}),
    ApiCall("GET", "/api/v1/meter/recharge-status", "read", {"site_id": SITE, "transaction_id": Obj("transaction_id")}),
    ApiCall(
        "GET", "/api/v1/meter/changes", "read", {"site_id": SITE, "from_date": "2026-11-01", "to_date": "2026-11-20"}
    ),
    ApiCall("POST", "/api/v1/meter/start", "operate", {"site_id": SITE, "meter_no": METER}),
    ApiCall("POST", "/api/v1/meter/stop", "operate", {"site_id": SITE, "meter_no": METER}),
    ApiCall("GET", "/api/v1/meter/status", "read", {"site_id": SITE, "meter_no": METER}),
    ApiCall(
        "POST",
        "/api/v1/meter/load",
        "operate",
        {"site_id": SITE, "meter_no": METER, "load_dg": "2.50", "load_grid": "5.00"},
    ),
    ApiCall("GET", "/api/v1/dg/reading", "read", {"site_id": SITE, "dg_number": DG}),
    ApiCall(
        "POST", "/api/v1/dg/sensing", "operate", {"site_id": SITE, "dg_number": DG, "url": "http://127.0.0.1:9/hook"}
    ),
    ApiCall("GET", "/api/v1/dg/status", "read", {"site_id": SITE, "dg_number": DG}),
    ApiCall("GET", "/api/v1/dg/fuel", "read", {"site_id": SITE, "dg_number": DG}),
    # Admin reports
    ApiCall("GET", "/api/v1/admin/today", "admin", {"site_id": SITE}),
    ApiCall("GET", "/api/v1/admin/gaps", "admin", {"site_id": SITE, "day": "2026-11-19"}),
    ApiCall("GET", "/api/v1/admin/audit", "admin", {"site_id": SITE}),
    # Admin API
    ApiCall(
        "POST", "/api/v1/admin/sites", "admin", {"site_id": "NEWSITE", "name": "New", "region": "North"}
    ),  # needs a '*' key: no object of a site to name
    ApiCall("GET", "/api/v1/admin/sites", "admin"),
    ApiCall("GET", "/api/v1/admin/sites/{site_id}", "admin"),
    ApiCall("PATCH", "/api/v1/admin/sites/{site_id}", "admin", {"name": "Renamed"}),
    ApiCall("POST", "/api/v1/admin/sites/{site_id}/meters", "admin", {"meter_no": "500000099", "unit_no": "U99"}),
    ApiCall("GET", "/api/v1/admin/sites/{site_id}/meters", "admin"),
    ApiCall("GET", "/api/v1/admin/meters/{meter_no}", "admin"),
    ApiCall("PATCH", "/api/v1/admin/meters/{meter_no}", "admin", {"consumer_name": "Someone Else"}),
    ApiCall("POST", "/api/v1/admin/meters/{meter_no}/retire", "admin", path_kinds={"meter_no": "spare_meter"}),
    ApiCall("GET", "/api/v1/admin/meters/{meter_no}/ledger", "admin"),
    ApiCall("GET", "/api/v1/admin/meters/{meter_no}/statement", "admin", {"month": "2025-01"}),
    ApiCall("GET", "/api/v1/admin/sites/{site_id}/report", "admin", {"month": "2025-01"}),
    ApiCall("GET", "/api/v1/admin/sites/{site_id}/quality", "admin", {"day": "2025-01-15"}),
    ApiCall("GET", "/api/v1/admin/sites/{site_id}/audit", "admin", {"month": "2025-01"}),
    ApiCall("POST", "/api/v1/admin/meters/{meter_no}/adjustments", "admin", {"amount": "-1.00", "reason": "matrix"}),
    ApiCall(
        "POST",
        "/api/v1/admin/meter-changes",
        "admin",
        {
            "site_id": SITE,
            "old_meter_no": Obj("change_meter"),
            "new_meter_no": "500000098",
            "meter_change_date": "2026-11-15",
        },
    ),
    ApiCall("POST", "/api/v1/admin/sites/{site_id}/dgs", "admin", {"dg_number": "DG-NEW"}),
    ApiCall("GET", "/api/v1/admin/sites/{site_id}/dgs", "admin"),
    ApiCall("GET", "/api/v1/admin/sites/{site_id}/dgs/{dg_number}/deliveries", "admin"),
    ApiCall("POST", "/api/v1/admin/sites/{site_id}/dgs/{dg_number}/deliveries/{event_id}/redeliver", "admin"),
    ApiCall("POST", "/api/v1/admin/keys", "admin", {"name": "made-by-matrix", "role": "read", "sites": Obj("sites")}),
    ApiCall("GET", "/api/v1/admin/keys", "admin"),
    ApiCall("POST", "/api/v1/admin/keys/{name}/revoke", "admin", path_kinds={"name": "victim_a"}),
    ApiCall("POST", "/api/v1/admin/keys/{name}/rotate", "admin", path_kinds={"name": "victim_b"}),
    # Portal accounts: a resident is named by its meter number, staff by username
    ApiCall("GET", "/api/v1/admin/users", "admin"),
    ApiCall("POST", "/api/v1/admin/users", "admin", {"username": "staff-by-matrix", "sites": Obj("sites")}),
    ApiCall("GET", "/api/v1/admin/users/{account}", "admin", path_kinds={"account": "resident_meter"}),
    ApiCall("POST", "/api/v1/admin/users/{account}/disable", "admin", path_kinds={"account": "resident_meter"}),
    ApiCall("POST", "/api/v1/admin/users/{account}/enable", "admin", path_kinds={"account": "resident_meter"}),
    ApiCall("POST", "/api/v1/admin/users/{account}/reset-password", "admin", path_kinds={"account": "staff"}),
    ApiCall("DELETE", "/api/v1/admin/users/{account}", "admin", path_kinds={"account": "spare_meter"}),
    ApiCall("POST", "/api/v1/admin/meters/{meter_no}/unlink", "admin", path_kinds={"meter_no": "resident_meter"}),
    # The prepaid policy (#20).
    ApiCall("POST", "/api/v1/admin/sites/{site_id}/tariffs", "admin", {"grid": "9.00", "dg": "22.00"}),
    ApiCall("GET", "/api/v1/admin/sites/{site_id}/tariffs", "admin"),
    ApiCall("POST", "/api/v1/admin/sites/{site_id}/holidays", "admin", {"date": "2026-12-31", "name": "matrix"}),
    ApiCall("GET", "/api/v1/admin/sites/{site_id}/holidays", "admin"),
    ApiCall("DELETE", "/api/v1/admin/sites/{site_id}/holidays/{date}", "admin", path_kinds={"date": "holiday"}),
    ApiCall("GET", "/api/v1/admin/sites/{site_id}/events", "admin"),
    ApiCall("PUT", "/api/v1/admin/sites/{site_id}/webhook", "admin", {"url": "http://127.0.0.1:9/site-hook"}),
    ApiCall("GET", "/api/v1/admin/sites/{site_id}/webhook", "admin"),
    ApiCall("DELETE", "/api/v1/admin/sites/{site_id}/webhook", "admin"),
)

# Calls of DESIGN.md still to be built on another branch, not yet routes: listed here until
# merged (the route test says when to remove one). Branch `commands` (calls 3, 4, 6-9) is in.
PENDING: frozenset[tuple[str, str]] = frozenset()

# Routes outside the API-key matrix, and why. Anything else under /api/v1 must be in CALLS.
NOT_API_KEY_ROUTES = {
    "/meter": "device tokens or ingest keys: test_tenancy's ingest tests",
    "/dg": "ingest keys: test_tenancy's ingest tests",
}

ROLES_BELOW = {"read": (), "operate": ("read",), "admin": ("read", "operate")}
