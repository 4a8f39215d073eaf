"""Fuzz: random bytes in the headers, query strings, paths and bodies of every route; never a 5xx.

Hypothesis draws each request: a route of the app (the router's own list, so a new route is
fuzzed without a line here), path parameters, a query string, credential and other headers
(sometimes a valid key, so bodies get parsed, sometimes random bytes, including bytes that are
not UTF-8), and a body (random bytes, JSON built of odd values, or a form). It is sent over a
raw socket, since client libraries refuse such bytes. Any status of 500 or more fails.

Bounded: a fixed number of examples per route group, drawn from a fixed seed (`derandomize`),
so every run sends the same requests and takes the same few seconds. The gateway runs in its own
thread and event loop; it resolves no names (a callback URL's host is answered as loopback,
so refused) and talks to nothing but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.resolver import ThreadedResolver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.settings import Settings
from storage.clock import FixedClock
from storage.db.engine import Database
from tests.reliability.world import NOW, World, build_world

EXAMPLES = 150  # per route group: about 1-2 s each on the 2-core CI machine
PARAMS = [
    "site_id", "meter_no", "dg_number", "amount", "url", "transaction_id", "from_date", "to_date",
    "load_dg", "load_grid", "day", "after", "name", "role", "sites", "reason", "id", "timestamp",
    "reading_kWh", "source", "status", "fuel_litres", "period", "legacy_ingest", "tariff_grid", "csrf_token",
]  # fmt: skip
HEADER_BYTES = st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
ODD_TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["OURS", "THEIRS", "500000001", "900000001", "DG-OURS", "1e2", "NaN", "-1", "\x00", "\ud800"]),
)
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), ODD_TEXT),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(PARAMS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=12,
)


@dataclass
class Running:
    """The gateway on a port, with our credentials."""

    port: int
    world: World


def _no_dns(host: str) -> list[dict[str, Any]]:
    return [{"hostname": host, "host": "127.0.0.1", "port": 0, "family": socket.AF_INET, "proto": 0, "flags": 0}]


@pytest.fixture
def gateway(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    """The real app on 127.0.0.1 in a thread of its own, over a database holding two societies."""

    async def resolve(_self: Any, host: str, port: int = 0, family: Any = 0) -> list[dict[str, Any]]:
        return _no_dns(host)

    monkeypatch.setattr(ThreadedResolver, "resolve", resolve)
    ready = threading.Event()
    started: dict[str, Any] = {}

    async def serve() -> None:
        db = Database(database_url)
        started["world"] = await build_world(db)
        await db.dispose()
        app = create_app(Settings(database_url=database_url, scheduler=False), clock=FixedClock(NOW))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        started["port"] = runner.addresses[0][1]
        stop = asyncio.Event()
        started["stop"] = lambda: loop.call_soon_threadsafe(stop.set)
        loop = asyncio.get_running_loop()
        ready.set()
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # reported to the test, not lost in the thread
            started["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, name="fuzzed-gateway", daemon=True)
    thread.start()
    assert ready.wait(60), "the gateway did not start"
    if "error" in started:
        raise started["error"]
    yield Running(started["port"], started["world"])
    started["stop"]()
    thread.join(30)


def routes_of(prefixes: tuple[str, ...], exclude: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(method, path template) of the app's routes under these prefixes (HEAD left out: GET's twin)."""
    app = create_app(Settings(database_url="sqlite+aiosqlite:///unused.db"))
    found = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    return sorted(
        (method, path)
        for method, path in found
        if path.startswith(prefixes) and not any(path.startswith(x) for x in exclude)
    )


def _quote(raw: bytes) -> bytes:
    return urllib.parse.quote_from_bytes(raw, safe="").encode()


def _credentials(world: World, path: str) -> list[bytes]:
    ours = world.ours
    if path in ("/meter", "/dg"):
        return [b"Authorization: Bearer " + secret.encode() for secret in (ours.keys["ingest"], ours.token)]
    if "/admin/" in path:
        return [b"X-API-Key: " + ours.keys["admin"].encode(), b"X-API-Key: " + world.star_admin.encode()]
    return [b"X-API-Key: " + ours.keys["operate"].encode()]


@st.composite
def requests(draw: st.DrawFn, routes: list[tuple[str, str]], world: World) -> bytes:
    """One whole HTTP/1.1 request to one of `routes`, as bytes."""
    method, template = draw(st.sampled_from(routes))
    path = template
    for name in [part[1:-1] for part in template.split("/") if part.startswith("{")]:
        value = draw(st.one_of(ODD_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")), st.binary(max_size=20)))
        path = path.replace(f"{{{name}}}", _quote(value).decode() or "x")
    query = draw(
        st.one_of(
            st.just(b""),
            st.dictionaries(st.sampled_from(PARAMS), ODD_TEXT, max_size=5).map(
                lambda d: urllib.parse.urlencode(d, errors="surrogatepass").encode()
            ),
            st.binary(max_size=80).map(_quote),
        )
    )
    headers = [b"Host: 127.0.0.1", b"Connection: close"]
    credential = draw(st.sampled_from(["valid", "random", "none"]))
    if credential == "valid":
        headers.append(draw(st.sampled_from(_credentials(world, template))))
    elif credential == "random":
        name = draw(st.sampled_from([b"X-API-Key", b"Authorization", b"Cookie"]))
        prefix = draw(st.sampled_from([b"", b"Bearer ", b"Bearer mgk_", b"Bearer mtr_", b"gateway_portal="]))
        headers.append(name + b": " + prefix + draw(HEADER_BYTES))
    for name in draw(st.sets(st.sampled_from([b"Idempotency-Key", b"X-Forwarded-For", b"Accept", b"Origin"]))):
        headers.append(name + b": " + draw(HEADER_BYTES))
    body_kind = draw(st.sampled_from(["none", "bytes", "json", "form"]))
    body = b""
    if body_kind == "bytes":
        body = draw(st.binary(max_size=300))
        headers.append(b"Content-Type: " + draw(st.sampled_from([b"application/json", b"text/plain"]) | HEADER_BYTES))
    elif body_kind == "json":
        body = repr(draw(JSON_VALUES)).encode("utf-8", "surrogatepass")  # Python literals: near-JSON, often not
        if draw(st.booleans()):
            import json

            body = json.dumps(draw(JSON_VALUES)).encode()
        headers.append(b"Content-Type: application/json")
    elif body_kind == "form":
        form = draw(st.dictionaries(st.sampled_from(PARAMS), ODD_TEXT, max_size=5))
        body = urllib.parse.urlencode(form, errors="surrogatepass").encode()
        headers.append(b"Content-Type: application/x-www-form-urlencoded")
    if body or method != "GET":
        headers.append(b"Content-Length: " + str(len(body)).encode())
    target = path.encode() + (b"?" + query if query else b"")
    return b"\r\n".join([method.encode() + b" " + target + b" HTTP/1.1", *headers, b"", b""]) + body


def send(port: int, request: bytes) -> bytes:
    """Send the bytes, return the status line and headers of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(request)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
    return reply.split(b"\r\n\r\n")[0]


def fuzz(running: Running, routes: list[tuple[str, str]]) -> None:
    """Send EXAMPLES drawn requests to these routes; fail on the first 5xx (Hypothesis shrinks it)."""
    assert routes, "no routes to fuzz"
    statuses: dict[int, int] = {}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=requests(routes, running.world))
    def one(request: bytes) -> None:
        head = send(running.port, request)
        assert head.startswith(b"HTTP/1."), head  # the parser answers its own 400s as HTTP/1.0
        status = int(head.split(b" ")[1])
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500, f"{head.decode('latin-1')}\nfor request:\n{request!r}"

    one()
    print(f"{len(routes)} routes, statuses {dict(sorted(statuses.items()))}")


def test_ingest_routes_never_answer_5xx(gateway: Running) -> None:
    fuzz(gateway, routes_of(("/meter", "/dg")))


def test_factech_calls_never_answer_5xx(gateway: Running) -> None:
    fuzz(gateway, routes_of(("/api/v1/",), exclude=("/api/v1/admin/",)))


def test_admin_routes_never_answer_5xx(gateway: Running) -> None:
    fuzz(gateway, routes_of(("/api/v1/admin/",)))


def test_portal_docs_and_ops_routes_never_answer_5xx(gateway: Running) -> None:
    fuzz(gateway, routes_of(("/",), exclude=("/api/", "/meter", "/dg")))
