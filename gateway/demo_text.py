"""What `gateway demo` prints once it is up: where to look, the keys, a curl line per Factech call.

Kept apart from the process handling so the text can be read (and tested) as one piece. The
calls follow DESIGN.md's table of the Factech document: GET takes the query string, POST a form
body (curl's `-d`), every call the header `X-API-Key`. Read calls use the `read` key, the
others the `operate` key (staff's rights).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode


@dataclass(frozen=True)
class Banner:
    """Everything the text names: addresses, ids and keys."""

    base: str  # the gateway, e.g. http://127.0.0.1:8080
    headend: str  # the mock head-end, e.g. http://127.0.0.1:9090
    headend_token: str
    data_dir: str
    sites: list[tuple[str, str, int]]  # (site_id, region, active meters)
    site_id: str  # the site the calls use (GREENPARK)
    meter_no: int  # the seed's meter 999999999, for readings and recharge
    other_meter_no: int  # a meter to stop, start and re-load
    dg_no: str
    change_site_id: str  # the site with the recorded meter change (call 5)
    change_date: str
    keys: dict[str, str]  # key name -> key
    resident_fin: str = "A3389127I"  # the seed meter's FIN, which registration asks for
    callback_url: str = "https://example.com/dg-events"  # where call 11 subscribes (the demo's receiver)


def _get(base: str, key: str, path: str, **params: object) -> str:
    return f"curl -s '{base}{path}?{urlencode(params)}' -H 'X-API-Key: {key}'"


def _post(base: str, key: str, path: str, **params: object) -> str:
    form = " ".join(f"-d {name}={value}" for name, value in params.items())
    return f"curl -s {base}{path} -H 'X-API-Key: {key}' {form}"


# Call 3 keeps its transaction id in $TXN (its reply is still shown), so call 4 pasted after it works.
TXN_OF_REPLY = """python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["transaction_id"])'"""


def factech_calls(b: Banner) -> list[tuple[int, str, str]]:
    """(number, what, curl line) for each of the 13 calls, in an order that works when pasted
    top to bottom: 3 before 4 (which reads 3's transaction id), 7 (stop) before 6 (start)."""
    read, operate = b.keys["demo-read"], b.keys["demo-operate"]
    site, meter, other, dg = b.site_id, b.meter_no, b.other_meter_no, b.dg_no
    return [
        (1, "latest readings of every meter of a site", _get(b.base, read, "/api/v1/site/readings", site_id=site)),
        (2, "latest reading of one meter", _get(b.base, read, "/api/v1/meter/reading", meter_no=meter)),
        (
            3,
            "recharge (an Idempotency-Key header makes a retry safe); its transaction id goes to $TXN",
            "TXN=$("
            + _post(b.base, operate, "/api/v1/meter/recharge", site_id=site, meter_no=meter, amount="500.00")
            + f" | tee /dev/stderr | {TXN_OF_REPLY})",
        ),
        (
            4,
            "recharge status of call 3's transaction",
            _get(b.base, read, "/api/v1/meter/recharge-status", site_id=site, transaction_id="TXN_ID")
            .replace("'", '"')
            .replace("TXN_ID", "$TXN"),
        ),
        (
            5,
            "meters changed between dates",
            _get(
                b.base,
                read,
                "/api/v1/meter/changes",
                site_id=b.change_site_id,
                from_date=b.change_date,
                to_date=b.change_date,
            ),
        ),
        (7, "stop a meter", _post(b.base, operate, "/api/v1/meter/stop", site_id=site, meter_no=other)),
        (6, "start it again (after 7)", _post(b.base, operate, "/api/v1/meter/start", site_id=site, meter_no=other)),
        (8, "meter status, asked live", _get(b.base, read, "/api/v1/meter/status", site_id=site, meter_no=other)),
        (
            9,
            "update the sanctioned load (kW)",
            _post(
                b.base, operate, "/api/v1/meter/load", site_id=site, meter_no=other, load_dg="2.00", load_grid="5.00"
            ),
        ),
        (10, "DG energy reading", _get(b.base, read, "/api/v1/dg/reading", site_id=site, dg_number=dg)),
        (
            11,
            "DG sensing: POST ON/OFF changes to a URL (the demo's receiver prints what it gets)",
            _post(
                b.base,
                operate,
                "/api/v1/dg/sensing",
                site_id=site,
                dg_number=dg,
                url=b.callback_url,
            ),
        ),
        (12, "DG status", _get(b.base, read, "/api/v1/dg/status", site_id=site, dg_number=dg)),
        (13, "DG fuel", _get(b.base, read, "/api/v1/dg/fuel", site_id=site, dg_number=dg)),
    ]


def banner(b: Banner) -> str:
    """The whole text printed once the gateway listens."""
    sites = ", ".join(f"{site_id} ({region}, {count} meters, {b.dg_no})" for site_id, region, count in b.sites)
    keys = "\n".join(f"  {name:<24} {key}" for name, key in b.keys.items())
    calls = "\n".join(f"  # {number}. {what}\n  {line}" for number, what, line in factech_calls(b))
    return f"""
================================================================================
Meter gateway demo is running. Stop it with Ctrl-C.

Open:
  portal              {b.base}/
  management          {b.base}/management-dashboard/
  API docs            {b.base}/docs
  health              {b.base}/healthz
  metrics             {b.base}/metrics
  mock head-end       curl -s {b.headend}/control/state -H 'Authorization: Bearer {b.headend_token}'

Log in:
  as a resident       register at {b.base}/register with meter number {b.meter_no} and FIN {b.resident_fin},
                      then log in at {b.base}/profile
  as staff            make an account once (pick your own password), then log in as "manager" at
                      {b.base}/management-dashboard/login:
                      echo 'choose a long password' | .venv/bin/gateway user add --staff manager --site '*' \\
                        --password-stdin --database-url sqlite+aiosqlite:///{b.data_dir}/gateway.db

Sites: {sites}
Keys (also in {b.data_dir}/demo.json; read/operate/admin cover every site):
{keys}

Factech calls (iSocietyManager's third-party meter API):
{calls}

Data: {b.data_dir}/ (delete it to start the demo over).
================================================================================
""".strip("\n")
