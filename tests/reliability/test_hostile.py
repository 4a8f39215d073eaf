"""Hostile input: every bad request gets a clear 4xx, never a 500, and changes nothing.

Covers ingest (`/meter`, `/dg`), the Factech calls, the admin API and the portal's forms with
oversized bodies, deep nesting, wrong content types, control and odd unicode characters in
ids, SQL-looking strings, huge numbers, NaN/Infinity, timestamps far outside the window,
callback URLs aimed at private addresses, and CR/LF in headers. After each request the whole
database is compared with a dump taken before it.
"""

from __future__ import annotations

import asyncio
import collections
import io
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from storage.clock import FixedClock
from storage.db.engine import Database
from tests.reliability.world import NOW, World, build_world, describe_change, dump_tables

BIG = 3 * 1024 * 1024  # over the default 2 MiB body limit
DEEP_ARRAY = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
NEAR_LIMIT = b'{"a":' * 1020 + b"1" + b"}" * 1020  # under orjson's 1,024 levels, over Python's stack
DEEP_ID = b'[{"id": ' + b"[" * 300 + b"]" * 300 + b', "timestamp": "2026-11-20T10:31:00Z", "reading_kWh": 1}]'

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


@dataclass
class Case:
    """One hostile request and the statuses that are a clear answer to it."""

    label: str
    method: str
    path: str
    body: bytes | None = None
    content_type: str | None = JSON
    expect: tuple[int, ...] = (400,)
    key: str = ""  # role of our key to send ("" = the route's natural credential)


@dataclass
class Env:
    client: TestClient
    db: Database
    world: World


@pytest.fixture
async def env(aiohttp_client: Any, database_url: str) -> AsyncIterator[Env]:
    db = Database(database_url)
    world = await build_world(db)
    app = create_app(Settings(database_url=database_url, scheduler=False), clock=FixedClock(NOW))
    yield Env(await aiohttp_client(app), db, world)
    await db.dispose()


def j(value: Any) -> bytes:
    return json.dumps(value).encode()


def packet(**changes: Any) -> dict[str, Any]:
    return {"id": 500000001, "timestamp": "2026-11-20T10:31:00Z", "reading_kWh": 1.5, **changes}


def raw_packet(kwh: str) -> bytes:
    return b'{"id": 500000001, "timestamp": "2026-11-20T10:31:00Z", "reading_kWh": ' + kwh.encode() + b"}"


def dg(**changes: Any) -> dict[str, Any]:
    return {"site_id": "OURS", "dg_number": "DG-OURS", "timestamp": "2026-11-20T10:31:00Z", **changes}


INGEST = [
    Case("body over 2 MiB", "POST", "/meter", b"[" + b"1," * (BIG // 2) + b"1]", expect=(413,)),
    Case("batch over 5,000 packets", "POST", "/meter", j([packet()] * 5001), expect=(413,)),
    Case("100k nested arrays", "POST", "/meter", DEEP_ARRAY),
    Case("100k nested objects", "POST", "/meter", DEEP_OBJECT),
    Case("not JSON, text/plain", "POST", "/meter", b"id=1&kwh=2", "text/plain"),
    Case("invalid UTF-8", "POST", "/meter", b'{"id": "\xff\xfe"}'),
    Case("empty body", "POST", "/meter", b""),
    Case("a JSON string", "POST", "/meter", b'"hello"'),
    Case("id 10^30", "POST", "/meter", j(packet(id=10**30))),
    Case("id as SQL", "POST", "/meter", j(packet(id="1 OR 1=1"))),
    Case("id negative", "POST", "/meter", j(packet(id=-500000001))),
    Case("id true", "POST", "/meter", j(packet(id=True))),
    Case("kWh NaN", "POST", "/meter", raw_packet("NaN")),
    Case("kWh Infinity", "POST", "/meter", raw_packet("Infinity")),
    Case("kWh 1e400", "POST", "/meter", raw_packet("1e400")),
    Case("kWh 1e308", "POST", "/meter", raw_packet("1e308")),
    Case("kWh 'NaN' string", "POST", "/meter", j(packet(reading_kWh="NaN"))),
    Case("kWh negative", "POST", "/meter", j(packet(reading_kWh=-1))),
    Case("timestamp year 9999", "POST", "/meter", j(packet(timestamp="9999-12-31T23:59:59+14:00"))),
    Case("timestamp year 1", "POST", "/meter", j(packet(timestamp="0001-01-01T00:00:00-12:00"))),
    Case("timestamp 1970", "POST", "/meter", j(packet(timestamp="1970-01-01T00:00:00Z"))),
    Case("timestamp 6 min ahead", "POST", "/meter", j(packet(timestamp="2026-11-20T12:06:00Z"))),
    Case("timestamp without zone", "POST", "/meter", j(packet(timestamp="2026-11-20T10:31:00"))),
    Case("timestamp with NUL", "POST", "/meter", j(packet(timestamp="2026-11-20T10:31:00\u0000Z"))),
    Case("timestamp Arabic digits", "POST", "/meter", j(packet(timestamp="٢٠٢٦-11-20T10:31:00Z"))),
    Case("unknown field", "POST", "/meter", j(packet(extra="x"))),
    Case("source as SQL", "POST", "/meter", j(packet(source="grid'; DROP TABLE reading;--"))),
    Case("batch of garbage", "POST", "/meter", j([1, "x", None, [], {}])),
    Case("batch item id nested 300 deep", "POST", "/meter", DEEP_ID),
    Case("batch item id 100k chars", "POST", "/meter", j([packet(id="9" * 100_000)])),
    Case("no token, meter not legacy", "POST", "/meter", j(packet()), expect=(401,), key="none"),
    Case("no token, batch", "POST", "/meter", j([packet()]), expect=(401,), key="none"),
    Case("DG without a key", "POST", "/dg", j(dg(status="ON")), expect=(401,), key="none"),
    Case("DG with a device token", "POST", "/dg", j(dg(status="ON")), expect=(403,), key="device"),
    Case("DG 100k nested", "POST", "/dg", DEEP_OBJECT),
    Case("DG site NUL", "POST", "/dg", j(dg(site_id="OURS\u0000"))),
    Case("DG number CR/LF", "POST", "/dg", j(dg(dg_number="DG\r\nX-Evil: 1"))),
    Case("DG site as SQL", "POST", "/dg", j(dg(site_id="' OR '1'='1")), expect=(404,)),
    Case("DG fuel NaN", "POST", "/dg", j(dg(fuel_litres="NaN"))),
    Case("DG fuel 1e308", "POST", "/dg", j(dg(fuel_litres=1e308))),
    Case("DG register Infinity", "POST", "/dg", j(dg(reading_kWh="Infinity"))),
    Case("DG timestamp year 1", "POST", "/dg", j(dg(timestamp="0001-01-01T00:00:00-12:00"))),
    Case("DG status lowercase", "POST", "/dg", j(dg(status="on"))),
]

SENSE = "/api/v1/dg/sensing"
RECHARGE = "/api/v1/meter/recharge"


def recharge(amount: str) -> bytes:
    return j({"site_id": "OURS", "meter_no": "500000001", "amount": amount})


def sensing(url: str) -> bytes:
    return j({"site_id": "OURS", "dg_number": "DG-OURS", "url": url})


FACTECH = [
    Case("site_id NUL", "GET", "/api/v1/site/readings?site_id=%00", None, None),
    Case("site_id CR/LF", "GET", "/api/v1/site/readings?site_id=OURS%0d%0aX-Evil:%201", None, None),
    Case("site_id SQL", "GET", "/api/v1/site/readings?site_id=%27%20OR%201%3D1--", None, None, (404,)),
    Case("site_id RTL override", "GET", "/api/v1/site/readings?site_id=OURS%E2%80%AE", None, None, (404,)),
    Case("site_id 5k chars", "GET", "/api/v1/site/readings?site_id=" + "A" * 5_000, None, None),
    Case("meter_no 20 digits", "GET", "/api/v1/meter/reading?meter_no=" + "9" * 20, None, None),
    Case("meter_no fullwidth", "GET", "/api/v1/meter/reading?meter_no=%EF%BC%95%EF%BC%90", None, None),
    Case("meter_no SQL", "GET", "/api/v1/meter/reading?meter_no=1%20OR%201%3D1", None, None),
    Case("meter_no -1", "GET", "/api/v1/meter/reading?meter_no=-1", None, None),
    Case("dates reversed", "GET", "/api/v1/meter/changes?site_id=OURS&from_date=2026-11-20&to_date=2026-11-01"),
    Case("date year 0", "GET", "/api/v1/meter/changes?site_id=OURS&from_date=0000-01-01&to_date=2026-11-01"),
    Case(
        "dg_number SQL",
        "GET",
        "/api/v1/dg/status?site_id=OURS&dg_number=x%27%3B%20DROP%20TABLE%20dg%3B--",
        None,
        None,
        (404,),
    ),
    Case("sensing 100k nested", "POST", SENSE, DEEP_ARRAY),
    Case("sensing 1,020 nested", "POST", SENSE, NEAR_LIMIT),
    Case("sensing body over 2 MiB", "POST", SENSE, b'{"x": "' + b"a" * BIG + b'"}', expect=(413,)),
    Case("sensing XML", "POST", SENSE, b"<url>http://example.com</url>", "application/xml"),
    Case("sensing invalid UTF-8 JSON", "POST", SENSE, b'{"url": "\xff"}'),
    Case("sensing invalid UTF-8 form", "POST", SENSE, b"site_id=\xff\xfe", FORM),
    Case("sensing lone surrogate", "POST", SENSE, b'{"site_id": "\\ud800", "dg_number": "DG-OURS", "url": "x"}'),
    Case("sensing NaN site", "POST", SENSE, b'{"site_id": NaN, "dg_number": "DG-OURS", "url": "http://x.org"}'),
    Case("sensing array body", "POST", SENSE, b"[1, 2]"),
    Case("callback loopback", "POST", SENSE, sensing("http://127.0.0.1:8080/hook"), expect=(422,)),
    Case("callback localhost", "POST", SENSE, sensing("http://localhost/hook"), expect=(422,)),
    Case("callback metadata", "POST", SENSE, sensing("http://169.254.169.254/latest/meta-data"), expect=(422,)),
    Case("callback private 10/8", "POST", SENSE, sensing("https://10.1.2.3/"), expect=(422,)),
    Case("callback private 192.168", "POST", SENSE, sensing("https://192.168.0.1/"), expect=(422,)),
    Case("callback shared 100.64", "POST", SENSE, sensing("https://100.64.0.1/"), expect=(422,)),
    Case("callback 0.0.0.0", "POST", SENSE, sensing("http://0.0.0.0/"), expect=(422,)),
    Case("callback hex loopback", "POST", SENSE, sensing("http://0x7f000001/"), expect=(400, 422)),
    Case("callback decimal loopback", "POST", SENSE, sensing("http://2130706433/"), expect=(400, 422)),
    Case("callback IPv6 loopback", "POST", SENSE, sensing("http://[::1]/"), expect=(422,)),
    Case("callback IPv4-mapped", "POST", SENSE, sensing("http://[::ffff:127.0.0.1]/"), expect=(400, 422)),
    Case("callback unique-local", "POST", SENSE, sensing("http://[fd00::1]/"), expect=(422,)),
    Case("callback userinfo trick", "POST", SENSE, sensing("http://example.com@127.0.0.1/"), expect=(400, 422)),
    Case("callback file scheme", "POST", SENSE, sensing("file:///etc/passwd")),
    Case("recharge amount NaN", "POST", RECHARGE, recharge("NaN")),
    Case("recharge amount Infinity", "POST", RECHARGE, recharge("Infinity")),
    Case("recharge amount 1e400", "POST", RECHARGE, b'{"site_id": "OURS", "meter_no": "500000001", "amount": 1e400}'),
    Case("recharge amount 20 digits", "POST", RECHARGE, recharge("99999999999999999999")),
    Case("recharge amount negative", "POST", RECHARGE, recharge("-100.00")),
    Case("recharge amount 3 decimals", "POST", RECHARGE, recharge("100.005")),
    Case("recharge amount '1e2'", "POST", RECHARGE, recharge("1e2")),
    Case("recharge amount '1E-2'", "POST", RECHARGE, recharge("1E-2")),
    Case("recharge amount number 1e2", "POST", RECHARGE, recharge("1e2").replace(b'"1e2"', b"1e2")),
    Case("recharge amount form 1E-2", "POST", RECHARGE, b"site_id=OURS&meter_no=500000001&amount=1E-2", FORM),
    Case("recharge meter SQL", "POST", RECHARGE, j({"site_id": "OURS", "meter_no": "1 OR 1=1", "amount": "10"})),
    Case(
        "load NaN",
        "POST",
        "/api/v1/meter/load",
        j({"site_id": "OURS", "meter_no": "500000001", "load_dg": "NaN", "load_grid": "1"}),
    ),
    Case(
        "callback NAT64 metadata",
        "POST",
        SENSE,
        sensing("http://[64:ff9b::a9fe:a9fe]/latest/"),
        expect=(422,),
    ),
    Case("callback NAT64 loopback", "POST", SENSE, sensing("http://[64:ff9b::7f00:1]/"), expect=(422,)),
    Case("callback local-use NAT64", "POST", SENSE, sensing("http://[64:ff9b:1::a00:1]/"), expect=(422,)),
    Case("callback 6to4", "POST", SENSE, sensing("http://[2002:a9fe:a9fe::1]/"), expect=(422,)),
    Case("callback Teredo", "POST", SENSE, sensing("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/"), expect=(422,)),
    Case("callback IPv4-compatible", "POST", SENSE, sensing("http://[::a9fe:a9fe]/"), expect=(422,)),
    Case("callback gopher", "POST", SENSE, sensing("gopher://127.0.0.1:6379/_INFO")),
    Case("callback CR/LF", "POST", SENSE, sensing("http://example.com/\r\nX-Evil: 1")),
]

ADMIN = [
    Case("site NUL in path", "GET", "/api/v1/admin/sites/%00", None, None, key="star"),
    Case("site CR/LF in path", "PATCH", "/api/v1/admin/sites/OURS%0d%0aX", j({"name": "x"}), key="star"),
    Case("patch 100k nested", "PATCH", "/api/v1/admin/sites/OURS", DEEP_OBJECT),
    Case("patch 1,020 nested", "PATCH", "/api/v1/admin/sites/OURS", NEAR_LIMIT),
    Case("patch name NUL", "PATCH", "/api/v1/admin/sites/OURS", j({"name": "a\u0000b"})),
    Case("patch name ESC", "PATCH", "/api/v1/admin/sites/OURS", j({"name": "\u001b[31mred"})),
    Case("patch lone surrogate", "PATCH", "/api/v1/admin/sites/OURS", b'{"name": "\\ud800"}'),
    Case("patch invalid UTF-8", "PATCH", "/api/v1/admin/sites/OURS", b'{"name": "\xff"}'),
    Case("patch invalid UTF-8 form", "PATCH", "/api/v1/admin/sites/OURS", b"name=\xff", FORM),
    Case("patch octet-stream", "PATCH", "/api/v1/admin/sites/OURS", b"\x00\x01\x02", "application/octet-stream"),
    Case("patch over 2 MiB", "PATCH", "/api/v1/admin/sites/OURS", j({"name": "a" * BIG}), expect=(413,)),
    Case("tariff NaN", "PATCH", "/api/v1/admin/sites/OURS", b'{"tariff_grid": NaN}'),
    Case("tariff 'Infinity'", "PATCH", "/api/v1/admin/sites/OURS", j({"tariff_grid": "Infinity"})),
    Case("tariff 1e999999", "PATCH", "/api/v1/admin/sites/OURS", b'{"tariff_grid": 1e999999}'),
    Case("tariff 5,000 digits", "PATCH", "/api/v1/admin/sites/OURS", b'{"tariff_grid": 1' + b"0" * 5000 + b"}"),
    Case("tariff 1e1", "PATCH", "/api/v1/admin/sites/OURS", b'{"tariff_grid": 1e1}'),
    Case("adjustment '-1e2'", "POST", "/api/v1/admin/meters/500000001/adjustments", j({"amount": "-1e2", "reason": "x"})),  # noqa: E501
    Case("tariff negative", "PATCH", "/api/v1/admin/sites/OURS", j({"tariff_grid": "-1"})),
    Case("unknown field", "PATCH", "/api/v1/admin/sites/OURS", j({"timezone": "UTC"})),
    Case("meter 20 digits", "GET", "/api/v1/admin/meters/" + "9" * 20, None, None),
    Case("meter NUL", "GET", "/api/v1/admin/meters/%00", None, None),
    Case("meter balance 1e12", "POST", "/api/v1/admin/sites/OURS/meters", j({"meter_no": "7", "unit_no": "U7", "balance": "1e12"})),  # noqa: E501
    Case("meter unit NUL", "POST", "/api/v1/admin/sites/OURS/meters", j({"meter_no": "7", "unit_no": "\u0000"})),
    Case("meter consumer CR/LF", "PATCH", "/api/v1/admin/meters/500000001", j({"consumer_name": "A\r\nB"})),
    Case("meter fin DEL", "PATCH", "/api/v1/admin/meters/500000001", j({"fin_no": "A\u007f"})),
    Case("dg number 100k chars", "POST", "/api/v1/admin/sites/OURS/dgs", j({"dg_number": "D" * 100_000})),
    Case("dg number NUL", "POST", "/api/v1/admin/sites/OURS/dgs", j({"dg_number": "\u0000"})),
    Case("dg NUL in path", "GET", "/api/v1/admin/sites/OURS/dgs/%00/deliveries", None, None),
    Case("event NUL in path", "POST", "/api/v1/admin/sites/OURS/dgs/DG-OURS/deliveries/%00/redeliver", None, None),
    Case("key name CR/LF", "POST", "/api/v1/admin/keys", j({"name": "k\r\nX-Evil: 1", "role": "read", "sites": ["OURS"]})),  # noqa: E501
    Case("key sites a string", "POST", "/api/v1/admin/keys", j({"name": "k", "role": "read", "sites": "OURS"})),
    Case("key sites nested", "POST", "/api/v1/admin/keys", j({"name": "k", "role": "read", "sites": [["OURS"]]})),
    Case("key role SQL", "POST", "/api/v1/admin/keys", j({"name": "k", "role": "admin' --", "sites": ["OURS"]})),
    Case("key NUL in path", "POST", "/api/v1/admin/keys/%00/revoke", None, None, key="star"),
    Case("change date malformed", "POST", "/api/v1/admin/meter-changes", j({"site_id": "OURS", "old_meter_no": "500000003", "new_meter_no": "7", "meter_change_date": "0001-1-1"})),  # noqa: E501
    Case("gaps day year 1", "GET", "/api/v1/admin/gaps?site_id=OURS&day=0001-01-01", None, None),
    Case("gaps day year 9999", "GET", "/api/v1/admin/gaps?site_id=OURS&day=9999-12-31", None, None),
    Case("gaps day 9999-12-30", "GET", "/api/v1/admin/gaps?site_id=OURS&day=9999-12-30", None, None, (400, 409)),
    Case("today site NUL", "GET", "/api/v1/admin/today?site_id=%00", None, None, key="star"),
    # Found by an outside probe: each was a 500 (an OverflowError, an OSError, a URL that failed to parse).
    Case("change date year 1", "POST", "/api/v1/admin/meter-changes", j({"site_id": "OURS", "old_meter_no": "500000003", "new_meter_no": "7", "meter_change_date": "0001-01-02"})),  # noqa: E501
    Case("tariff from year 1", "POST", "/api/v1/admin/sites/OURS/tariffs", j({"grid": "9.00", "dg": "22.00", "effective_from": "0001-01-01 00:00:00"})),  # noqa: E501
    Case("tariff from 9999-12-31", "POST", "/api/v1/admin/sites/OURS/tariffs", j({"grid": "9.00", "dg": "22.00", "effective_from": "9999-12-31 23:59:59"})),  # noqa: E501
    Case("quality day 0001-01-02", "GET", "/api/v1/admin/sites/OURS/quality?day=0001-01-02", None, None),
    Case("audit after 2^64", "GET", "/api/v1/admin/audit?after=99999999999999999999", None, None, key="star"),
    Case("site timezone 300 chars", "POST", "/api/v1/admin/sites", j({"site_id": "TZ1", "name": "x", "region": "X", "timezone": "a" * 300}), key="star"),  # noqa: E501
    Case("webhook IPv6 unclosed", "PUT", "/api/v1/admin/sites/OURS/webhook", j({"url": "http://[::1"})),
    Case("webhook port 99999", "PUT", "/api/v1/admin/sites/OURS/webhook", j({"url": "http://example.com:99999/"})),
    Case("webhook empty label", "PUT", "/api/v1/admin/sites/OURS/webhook", j({"url": "http://a..b/"})),
    Case("webhook bad punycode", "PUT", "/api/v1/admin/sites/OURS/webhook", j({"url": "http://xn--/"})),
    Case("sensing port 99999", "POST", "/api/v1/dg/sensing", j({"site_id": "OURS", "dg_number": "DG-OURS", "url": "http://example.com:99999/"})),
]  # fmt: skip


def _payload(body: bytes | None) -> Any:
    """Large bodies as a stream (aiohttp warns about big raw bytes, and warnings are errors here)."""
    return io.BytesIO(body) if body is not None and len(body) > 2**20 else body


def credential(env: Env, case: Case) -> dict[str, str]:
    ours = env.world.ours
    if case.key == "none":
        return {}
    if case.key == "device":
        return {"Authorization": f"Bearer {ours.token}"}
    if case.path in ("/meter", "/dg"):
        return {"Authorization": f"Bearer {ours.keys['ingest']}"}
    if case.key == "star":
        return {"X-API-Key": env.world.star_admin}
    return {"X-API-Key": ours.keys["admin" if "/admin/" in case.path else "operate"]}


async def check_cases(env: Env, cases: list[Case]) -> None:
    failures = []
    before = await dump_tables(env.db)
    for case in cases:
        headers = credential(env, case)
        if case.content_type:
            headers["Content-Type"] = case.content_type
        response = await env.client.request(case.method, case.path, data=_payload(case.body), headers=headers)
        text = await response.text()
        if response.status not in case.expect:
            failures.append(f"{case.label}: {response.status}, expected {case.expect}: {text[:200]}")
        elif not re.search(r'"message": ?"[^"]+"', text):
            failures.append(f"{case.label}: no clear message: {text[:200]}")
        if "X-Evil" in response.headers:
            failures.append(f"{case.label}: a header was injected")
        after = await dump_tables(env.db)
        if after != before:
            failures.append(f"{case.label}: changed {describe_change(before, after)}")
            before = after
    assert not failures, "\n".join(failures)
    statuses = collections.Counter(case.expect[0] for case in cases)
    print(f"{len(cases)} hostile requests answered as expected ({dict(statuses)}), no row changed")


async def test_hostile_ingest_is_refused_and_changes_nothing(env: Env) -> None:
    await check_cases(env, INGEST)


async def test_hostile_factech_calls_are_refused_and_change_nothing(env: Env) -> None:
    await check_cases(env, FACTECH)


async def test_hostile_admin_calls_are_refused_and_change_nothing(env: Env) -> None:
    await check_cases(env, ADMIN)


async def test_hostile_portal_forms_are_refused_and_change_nothing(env: Env) -> None:
    client = env.client
    page = await (await client.get("/register")).text()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token, "the register form carries a CSRF token"
    csrf = token.group(1)
    before = await dump_tables(env.db)
    forms: list[tuple[str, str, Any, tuple[int, ...]]] = [
        ("no CSRF token", "/register", {"meter_no": "500000001", "fin_no": "x", "password": "p"}, (403,)),
        ("meter NUL", "/register", {"csrf_token": csrf, "meter_no": "\u0000", "fin_no": "x"}, (400,)),
        ("meter SQL", "/register", {"csrf_token": csrf, "meter_no": "1' OR '1'='1", "fin_no": "x"}, (400,)),
        ("fin NUL", "/register", {"csrf_token": csrf, "meter_no": "500000001", "fin_no": "\u0000"}, (400,)),
        ("login NUL", "/profile", {"csrf_token": csrf, "login": "a\u0000b", "password": "x"}, (400,)),
        ("login SQL", "/management-dashboard/login", {"csrf_token": csrf, "login": "' OR 1=1--", "password": "x"}, (400,)),  # noqa: E501
        ("password 1 MiB", "/profile", {"csrf_token": csrf, "login": "500000001", "password": "p" * 2**20}, (400,)),
        ("form over 2 MiB", "/register", {"csrf_token": csrf, "meter_no": "1", "fin_no": "f" * BIG}, (413,)),
        ("invalid UTF-8", "/register", b"csrf_token=" + csrf.encode() + b"&meter_no=\xff\xfe", (400,)),
    ]  # fmt: skip
    failures = []
    print(f"{len(forms)} hostile portal forms")
    for label, path, form, expect in forms:
        data = form if isinstance(form, bytes) else "&".join(f"{k}={_quote(v)}" for k, v in form.items())
        response = await client.post(
            path,
            data=_payload(data.encode() if isinstance(data, str) else data),
            headers={"Content-Type": FORM},
            allow_redirects=False,
        )
        text = await response.text()
        if response.status not in expect:
            failures.append(f"{label}: {response.status}, expected {expect}: {text[:200]}")
        elif "text/html" not in response.headers.get("Content-Type", ""):
            failures.append(f"{label}: not an HTML page")
    after = await dump_tables(env.db)
    assert after == before, describe_change(before, after)
    assert not failures, "\n".join(failures)


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


async def raw_request(port: int, request: bytes) -> bytes:
    """Send bytes as they are (a client library would refuse them) and read the reply's head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), 10)
    finally:
        writer.close()


async def test_cr_lf_and_nul_in_headers_are_refused(env: Env) -> None:
    port = env.client.port
    assert port is not None
    key = env.world.ours.keys["read"].encode()
    before = await dump_tables(env.db)
    for header in (
        b"X-API-Key: " + key + b"\rX-Evil: 1",  # a bare CR inside a value
        b"X-API-Key: " + key + b"\x00",
        b"X-API-Key: " + key + b"\nX-Evil: 1",  # a bare LF starts no new header
        b"Authorization: Bearer x\r\n X-Evil: 1",  # obsolete line folding
    ):
        request = b"GET /api/v1/site/readings?site_id=OURS HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n\r\n"
        head = (await raw_request(port, request)).split(b"\r\n\r\n")[0]
        status = int(head.split(b" ")[1])
        assert 400 <= status < 500, head
        assert b"X-Evil" not in head, head
    assert await dump_tables(env.db) == before


async def test_bytes_that_are_not_utf8_in_headers_are_refused_not_500(env: Env) -> None:
    """A non-UTF-8 byte in X-API-Key or Authorization was a 500 with a traceback; now 401 (Idempotency-Key: 400)."""
    port = env.client.port
    assert port is not None
    ours = env.world.ours
    before = await dump_tables(env.db)
    body = recharge("10.00")
    requests = [
        (b"GET /api/v1/site/readings?site_id=OURS", b"X-API-Key: mgk_\xff\xfe", b"", 401),
        (b"GET /api/v1/admin/audit", b"X-API-Key: \xc3\x28", b"", 401),
        (b"POST /meter", b"Authorization: Bearer \xff\xfe", j(packet()), 401),
        (b"POST /meter", b"Authorization: \xff", j(packet()), 401),
        (b"POST /dg", b"Authorization: Bearer mtr_\x80", j(dg(status="ON")), 401),
        (b"POST /api/v1/meter/recharge", b"X-API-Key: " + ours.keys["operate"].encode() + b"\r\nIdempotency-Key: \xff", body, 400),  # noqa: E501
    ]  # fmt: skip
    for start, header, payload, expected in requests:
        head_lines = [start + b" HTTP/1.1", b"Host: x", b"Connection: close", b"Content-Type: application/json"]
        length = b"Content-Length: " + str(len(payload)).encode()
        request = b"\r\n".join([*head_lines, header, length, b""]) + b"\r\n" + payload
        head = (await raw_request(port, request)).split(b"\r\n\r\n")[0]
        assert int(head.split(b" ")[1]) == expected, (header, head)
    assert await dump_tables(env.db) == before


async def test_hostile_portal_cookies_and_forwarded_headers(env: Env) -> None:
    """Portal cookies with bytes we never send are 400 (and cleared), not 500; forwarded headers
    from a peer that is not a trusted proxy change nothing, whatever they hold."""
    port = env.client.port
    assert port is not None
    before = await dump_tables(env.db)
    cases = [
        (b"Cookie: gateway_portal=ab\xff\xfecd", b"/profile", 400),
        (b"Cookie: __Host-gateway_portal=\xc3\x28", b"/", 400),
        (b"Cookie: gateway_portal=" + b"A" * 3000, b"/profile", 200),  # not ours: a fresh session
        (b"Cookie: gateway_portal=\x7f\x01", b"/register", 400),  # the HTTP parser refuses control bytes
        (b"X-Forwarded-For: \xff\xfe, 10.0.0.1", b"/profile", 200),
        (b"X-Forwarded-For: " + b"1.2.3.4, " * 800 + b"5.6.7.8", b"/profile", 200),  # near the 8 KiB header limit
        (b"X-Forwarded-Proto: https\xff", b"/profile", 200),
    ]
    print(f"{len(cases)} hostile portal cookies and forwarded headers")
    for header, path, expect in cases:
        request = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + header + b"\r\n\r\n"
        head = (await raw_request(port, request)).split(b"\r\n\r\n")[0]
        status = int(head.split(b" ")[1])
        assert status == expect, (header[:60], head)
        assert b"__Host-" not in head.replace(b'__Host-gateway_portal=""', b""), head  # plain HTTP, untrusted peer
    assert await dump_tables(env.db) == before
