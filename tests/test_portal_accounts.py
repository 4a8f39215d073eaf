"""Issue 18 (portal side): sessions that end, throttling that cannot lock a user out, hashing off
the event loop, HTTPS cookies behind a trusted proxy, staff scoped to sites, no claim oracle."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from unittest import mock

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, make_mocked_request
from argon2 import PasswordHasher
from sqlalchemy import update

from gateway.app import create_app
from gateway.app_keys import SETTINGS
from gateway.portal.access import ADDRESSES
from gateway.portal.ratelimit import AddressLimiter
from gateway.proxies import came_over_https, client_address
from gateway.settings import Settings
from storage.clock import FixedClock
from storage.db.engine import Database
from storage.db.models import PortalUser
from storage.portal import accounts, portal_users
from storage.registry import meters
from tests.portaldata import (
    CUT,
    NEIGHBOUR,
    NOW,
    PASSWORD,
    RESIDENT,
    STAFF,
    log_in,
    portal_settings,
    seed_world,
    submit,
)

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


async def build(database_url: str) -> None:
    await seed_world(database_url)


@pytest.fixture
async def portal(aiohttp_client, database_url: str, clock: FixedClock) -> TestClient:  # type: ignore[no-untyped-def]
    await build(database_url)
    return await aiohttp_client(create_app(portal_settings(database_url), clock=clock))


def cookie_of(client: TestClient, name: str = "gateway_portal") -> str:
    return client.session.cookie_jar.filter_cookies(client.make_url("/"))[name].value


def use_cookie(client: TestClient, value: str) -> None:
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({"gateway_portal": value})


async def logged_in(client: TestClient, meter_no: int = RESIDENT) -> bool:
    response = await client.get(f"/profile/{meter_no}", allow_redirects=False)
    return response.status == 200


async def run_store(database_url: str, action):  # type: ignore[no-untyped-def]
    db = Database(database_url)
    try:
        return await action(db)
    finally:
        await db.dispose()


# --- Sessions end: logout, password change, reset, disable (item 4, 5) ---------------------------


async def test_logout_ends_a_copied_cookie(portal: TestClient) -> None:
    assert (await log_in(portal)).status == 303
    copied = cookie_of(portal)
    assert (await submit(portal, "/logout", {}, form_page=f"/profile/{RESIDENT}")).status == 303
    use_cookie(portal, copied)  # someone kept a copy of the cookie
    assert not await logged_in(portal)


async def test_password_change_ends_other_sessions_and_keeps_this_one(portal: TestClient) -> None:
    await log_in(portal)
    other = cookie_of(portal)  # another browser's session
    portal.session.cookie_jar.clear()
    await log_in(portal)
    page = "/profile/password"
    wrong = await submit(
        portal, page, {"current_password": "not it at all", "password": NEW_PASSWORD, "password_again": NEW_PASSWORD}
    )
    assert wrong.status == 400 and "not your current password" in await wrong.text()
    changed = await submit(
        portal, page, {"current_password": PASSWORD, "password": NEW_PASSWORD, "password_again": NEW_PASSWORD}
    )
    assert changed.status == 200 and "Your password was changed" in await changed.text()
    assert await logged_in(portal)  # this session carries on
    use_cookie(portal, other)
    assert not await logged_in(portal)  # the other one ended
    assert (await log_in(portal)).status == 400
    assert (await log_in(portal, password=NEW_PASSWORD)).status == 303


async def test_disable_reset_and_remove_end_sessions(portal: TestClient, database_url: str) -> None:
    await log_in(portal)
    now = NOW
    await run_store(database_url, lambda db: accounts.set_disabled(db, login=RESIDENT, disabled=True, now=now))
    assert not await logged_in(portal)
    refused = await log_in(portal)
    assert refused.status == 400 and "disabled" in await refused.text()
    await run_store(database_url, lambda db: accounts.set_disabled(db, login=RESIDENT, disabled=False, now=now))
    assert (await log_in(portal)).status == 303
    info, password = await run_store(database_url, lambda db: accounts.reset_password(db, login=RESIDENT))
    assert info.login == str(RESIDENT) and len(password) >= 16
    assert not await logged_in(portal)
    assert (await log_in(portal)).status == 400
    assert (await log_in(portal, password=password)).status == 303
    await run_store(database_url, lambda db: accounts.remove_account(db, login=RESIDENT))
    assert not await logged_in(portal)
    claimed = await submit(
        portal,
        "/register",
        {"meter_no": str(RESIDENT), "fin_no": "A3389127I", "password": PASSWORD, "password_again": PASSWORD},
    )
    assert claimed.status == 303  # the meter could be claimed again


# --- No oracle, no squatting (item 4) -----------------------------------------------------------


async def test_wrong_and_right_fin_on_a_claimed_meter_answer_the_same(portal: TestClient) -> None:
    answers = []
    for fin in ("X0000000X", "A3389127I"):  # RESIDENT's meter is claimed; the second FIN is right
        data = {"meter_no": str(RESIDENT), "fin_no": fin, "password": PASSWORD, "password_again": PASSWORD}
        response = await submit(portal, "/register", data)
        html = (await response.text()).replace(fin, "")
        answers.append((response.status, html))
    assert answers[0] == answers[1]


async def test_a_new_fin_unlinks_the_old_resident(portal: TestClient, database_url: str) -> None:
    await log_in(portal)
    meter, unlinked = await run_store(
        database_url, lambda db: meters.edit_meter(db, meter_no=RESIDENT, changes={"fin_no": "NEW-FIN-1"})
    )
    assert unlinked and meter.fin_no == "NEW-FIN-1"
    assert not await logged_in(portal)  # the old resident no longer sees the meter
    data = {"meter_no": str(RESIDENT), "fin_no": "NEW-FIN-1", "password": PASSWORD, "password_again": PASSWORD}
    assert (await submit(portal, "/register", data)).status == 303  # the new one can claim it
    _, unchanged = await run_store(
        database_url, lambda db: meters.edit_meter(db, meter_no=RESIDENT, changes={"fin_no": "NEW-FIN-1"})
    )
    assert not unchanged  # the same FIN again is no change of resident


# --- Staff see their sites only (item 4) --------------------------------------------------------


async def test_staff_see_only_the_sites_of_their_account(portal: TestClient, database_url: str) -> None:
    async def scope(db: Database) -> None:
        async with db.transaction() as session:
            await session.execute(update(PortalUser).where(PortalUser.username == STAFF).values(sites=["S1"]))

    await run_store(database_url, scope)
    await log_in(portal, STAFF, staff=True)
    html = await (await portal.get("/management-dashboard/?period=current-week")).text()
    assert "<td>North</td>" in html and "<td>South</td>" not in html and str(CUT) not in html
    assert (await portal.get(f"/profile/{NEIGHBOUR}")).status == 200  # site S1
    assert (await portal.get(f"/profile/{CUT}", allow_redirects=False)).status == 404  # site S2


# --- Throttling that cannot be turned against a user (item 3) -----------------------------------


async def test_the_right_password_gets_in_after_a_short_growing_delay(portal: TestClient, clock: FixedClock) -> None:
    for _ in range(5):
        assert (await log_in(portal, password="wrong password!")).status == 400
    delayed = await log_in(portal)  # right away, even the right password waits a moment
    assert delayed.status == 429 and delayed.headers["Retry-After"] == "1"
    clock.advance(seconds=1)
    assert (await log_in(portal, password="wrong password!")).status == 400
    longer = await log_in(portal)
    assert longer.status == 429 and longer.headers["Retry-After"] == "2"  # growing
    clock.advance(seconds=2)
    assert (await log_in(portal)).status == 303  # never a lock: the owner gets in


async def test_a_delay_does_not_tell_that_an_account_exists(portal: TestClient) -> None:
    answers = []
    for login in (str(RESIDENT), "123-456-789"):  # an account, and a meter number with none
        replies = [await log_in(portal, login, "wrong password!") for _ in range(6)]
        answers.append([(r.status, r.headers.get("Retry-After")) for r in replies])
    assert answers[0] == answers[1] == [(400, None)] * 5 + [(429, "1")]


async def test_failures_from_one_address_do_not_lock_out_its_other_users(portal: TestClient) -> None:
    for number in range(8):
        assert (await log_in(portal, f"12345678{number}")).status == 400
    assert (await log_in(portal)).status == 303


async def test_the_address_limit_counts_successful_logins_too(portal: TestClient) -> None:
    portal.server.app[ADDRESSES].max_attempts = 3
    for _ in range(3):
        assert (await log_in(portal)).status == 303
    blocked = await log_in(portal)
    assert blocked.status == 429 and int(blocked.headers["Retry-After"]) > 0


async def test_forwarded_for_counts_only_from_a_trusted_proxy(
    aiohttp_client, database_url: str, clock: FixedClock
) -> None:  # type: ignore[no-untyped-def]
    await build(database_url)
    for trusted, expected in (("", [303, 303, 429]), ("127.0.0.1", [303, 303, 303])):
        app = create_app(portal_settings(database_url, trusted_proxies=trusted), clock=clock)
        app[ADDRESSES] = AddressLimiter(max_attempts=2)
        client = await aiohttp_client(app)
        statuses = []
        for number in range(3):
            client.session.headers["X-Forwarded-For"] = f"203.0.113.{number}, 127.0.0.1"
            statuses.append((await log_in(client)).status)
        assert statuses == expected, trusted


def test_a_full_address_table_does_not_flush_live_counters() -> None:
    limiter = AddressLimiter(max_attempts=2, max_keys=3)
    assert limiter.attempt("198.51.100.7", NOW) == limiter.attempt("198.51.100.7", NOW) == 0
    for number in range(100):  # cheap requests from many addresses
        limiter.attempt(f"192.0.2.{number}", NOW)
    assert limiter.attempt("198.51.100.7", NOW) > 0  # still counted
    assert limiter.attempt("2001:db8::1", NOW) == limiter.attempt("2001:db8::2", NOW) == 0  # untracked while full


def test_ipv6_clients_count_per_64() -> None:
    limiter = AddressLimiter(max_attempts=2)
    assert limiter.attempt("2001:db8:1:2::1", NOW) == limiter.attempt("2001:db8:1:2::ffff", NOW) == 0
    assert limiter.attempt("2001:db8:1:2:abcd::9", NOW) > 0
    assert limiter.attempt("2001:db8:1:3::1", NOW) == 0


async def test_guessing_fins_slows_down_for_that_meter_only(portal: TestClient) -> None:
    for number in range(5):
        data = {
            "meter_no": str(NEIGHBOUR),
            "fin_no": f"guess{number}",
            "password": PASSWORD,
            "password_again": PASSWORD,
        }
        assert (await submit(portal, "/register", data)).status == 400
    again = {"meter_no": str(NEIGHBOUR), "fin_no": "A1234567I", "password": PASSWORD, "password_again": PASSWORD}
    assert (await submit(portal, "/register", again)).status == 429
    assert (await log_in(portal)).status == 303  # nobody else is slowed


# --- Argon2 off the event loop, outside write locks (item 2) ------------------------------------


async def test_hashing_runs_off_the_loop_and_outside_any_write_lock(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await build(sqlite_url)
    path = sqlite_url.split("///", 1)[1]
    loop_thread = threading.get_ident()
    seen: list[tuple[str, bool, bool]] = []
    real_hash, real_verify = PasswordHasher.hash, PasswordHasher.verify

    def probe(what: str) -> None:
        connection = sqlite3.connect(path, timeout=0)
        try:
            connection.execute("BEGIN IMMEDIATE")  # fails at once if a writer holds the lock
            connection.rollback()
            free = True
        except sqlite3.OperationalError:
            free = False
        finally:
            connection.close()
        seen.append((what, threading.get_ident() == loop_thread, free))

    def hash_probe(self, password, *args, **kwargs):  # type: ignore[no-untyped-def]
        probe("hash")
        return real_hash(self, password, *args, **kwargs)

    def verify_probe(self, hash_, password):  # type: ignore[no-untyped-def]
        probe("verify")
        return real_verify(self, hash_, password)

    monkeypatch.setattr(PasswordHasher, "hash", hash_probe)
    monkeypatch.setattr(PasswordHasher, "verify", verify_probe)
    db = Database(sqlite_url)
    try:
        await portal_users.register_resident(db, meter_no=NEIGHBOUR, fin_no="A1234567I", password=PASSWORD)
        await portal_users.log_in(db, login=NEIGHBOUR, password=PASSWORD, now=NOW)
    finally:
        await db.dispose()
    assert seen == [("hash", False, True), ("verify", False, True)]


# --- Cookies: Secure and __Host- over HTTPS, unreadable bytes (items 5, 7) -----------------------


async def test_cookie_is_secure_with_host_prefix_over_https_via_a_trusted_proxy(
    aiohttp_client, database_url: str
) -> None:  # type: ignore[no-untyped-def]
    await build(database_url)
    https = {"X-Forwarded-Proto": "https"}
    trusted = await aiohttp_client(create_app(portal_settings(database_url, trusted_proxies="127.0.0.0/8")))
    cookie = (await trusted.get("/profile", headers=https)).headers["Set-Cookie"]
    assert cookie.startswith("__Host-gateway_portal=") and "Secure" in cookie and "Path=/" in cookie
    assert "Domain" not in cookie and "HttpOnly" in cookie
    plain = (await trusted.get("/profile")).headers["Set-Cookie"]
    assert plain.startswith("gateway_portal=") and "Secure" not in plain  # the proxy says plain HTTP
    untrusted = await aiohttp_client(create_app(portal_settings(database_url)))
    spoofed = (await untrusted.get("/profile", headers=https)).headers["Set-Cookie"]
    assert spoofed.startswith("gateway_portal=") and "Secure" not in spoofed


async def test_a_host_cookie_is_read_back_over_https(aiohttp_client, aiohttp_server, database_url: str) -> None:  # type: ignore[no-untyped-def]
    await build(database_url)
    server = await aiohttp_server(create_app(portal_settings(database_url, trusted_proxies="127.0.0.1")))
    # The proxy speaks HTTPS to the browser: the client keeps and sends Secure cookies as a browser would.
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[f"http://127.0.0.1:{server.port}"])
    client = await aiohttp_client(server, cookie_jar=jar, headers={"X-Forwarded-Proto": "https"})
    assert (await log_in(client)).status == 303
    assert await logged_in(client)
    assert [cookie.key for cookie in jar] == ["__Host-gateway_portal"]


@pytest.mark.parametrize("path", [b"/", b"/profile", b"/profile/999999999", b"/management-dashboard/"])
async def test_a_cookie_with_bytes_that_are_not_utf8_is_400_and_cleared(
    aiohttp_client, sqlite_url: str, path: bytes
) -> None:  # type: ignore[no-untyped-def]
    client = await aiohttp_client(create_app(portal_settings(sqlite_url)))
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(
        b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nCookie: gateway_portal=ab\xff\xfecd\r\nConnection: close\r\n\r\n"
    )
    reply = await reader.read()
    writer.close()
    status_line, *headers = reply.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 400")
    assert any(h.lower().startswith(b'set-cookie: gateway_portal=""') for h in headers)


@pytest.mark.parametrize(
    ("peer", "forwarded", "proto", "client", "https"),
    [
        ("203.0.113.9", "198.51.100.1", "https", "203.0.113.9", False),  # not a proxy of ours: ignored
        ("10.0.0.2", "198.51.100.1, 10.0.0.3", "https", "198.51.100.1", True),  # right-most untrusted hop
        ("10.0.0.2", "6.6.6.6, 198.51.100.1", "http", "198.51.100.1", False),  # the left one is the client's word
        ("10.0.0.2", "garbage, 10.0.0.3", "HTTPS", "10.0.0.2", True),  # garbage where our proxy writes: the peer
        ("::ffff:10.0.0.2", "198.51.100.1", "https", "198.51.100.1", True),  # a dual-stack socket's IPv4 peer
        ("10.0.0.2", "", "", "10.0.0.2", False),
    ],
)
def test_client_address_and_https_behind_trusted_proxies(
    peer: str, forwarded: str, proto: str, client: str, https: bool
) -> None:
    app = web.Application()
    app[SETTINGS] = Settings(trusted_proxies="10.0.0.0/8")
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (peer, 5000) if name == "peername" else default
    headers = {name: value for name, value in (("X-Forwarded-For", forwarded), ("X-Forwarded-Proto", proto)) if value}
    request = make_mocked_request("GET", "/", headers=headers, app=app, transport=transport)
    assert (client_address(request), came_over_https(request)) == (client, https)


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    assert [str(n) for n in Settings(trusted_proxies="127.0.0.1, 10.0.0.0/8,::1").trusted_proxy_networks] == [
        "127.0.0.1/32",
        "10.0.0.0/8",
        "::1/128",
    ]
    with pytest.raises(ValueError, match="not an IP address or network: 'nginx'"):
        Settings(trusted_proxies="nginx")
