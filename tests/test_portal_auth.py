"""Portal security over real HTTP: registration and login errors, CSRF, the login rate limit,
residents confined to their own meter, staff-only dashboard, cookie flags, the secret key."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.portal.secret import KEY_FILE_NAME, secret_key
from gateway.settings import Settings
from storage.clock import FixedClock
from storage.db.engine import Database
from tests.portaldata import (
    CUT,
    NEIGHBOUR,
    NOW,
    PASSWORD,
    RESIDENT,
    STAFF,
    add_accounts,
    log_in,
    make_world,
    portal_settings,
    submit,
)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
async def portal(aiohttp_client, database_url: str, clock: FixedClock) -> TestClient:  # type: ignore[no-untyped-def]
    db = Database(database_url)
    try:
        await make_world(db)
        await add_accounts(db)
    finally:
        await db.dispose()
    return await aiohttp_client(create_app(portal_settings(database_url), clock=clock))


def register_data(meter: str = str(NEIGHBOUR), fin: str = "A1234567I", password: str = PASSWORD) -> dict[str, str]:
    return {"meter_no": meter, "fin_no": fin, "password": password, "password_again": password}


def message_of(html: str) -> str:
    return " ".join(re.findall(r'class="(?:field-error|alert)"[^>]*>([^<]+)<', html))


async def test_landing_offers_new_and_existing_user(portal: TestClient) -> None:
    html = await (await portal.get("/")).text()
    assert 'href="/register"' in html and 'href="/profile"' in html and "New user" in html


async def test_registering_claims_the_meter_and_logs_in(portal: TestClient) -> None:
    response = await submit(portal, "/register", register_data(meter="555-555-555", fin=" a1234567i "))
    assert response.status == 303 and response.headers["Location"] == f"/profile/{NEIGHBOUR}"
    page = await portal.get(f"/profile/{NEIGHBOUR}")
    assert page.status == 200 and "555-555-555" in await page.text()


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (register_data(meter="123456789"), 400, "do not match a meter that can be registered"),
        (register_data(meter="12a"), 400, "Enter the meter number"),
        (register_data(fin="X0000000X"), 400, "do not match a meter that can be registered"),
        (register_data(meter=str(RESIDENT), fin="A3389127I"), 400, "do not match a meter that can be registered"),
        (register_data(password="short"), 400, "at least 10 characters"),
        (register_data(password="1234567890"), 400, "too easy to guess"),
        (register_data(password="my555555555pw"), 400, "must not contain “555555555”"),
        ({**register_data(), "password_again": "something else"}, 400, "not the same"),
    ],
    ids=["unknown-meter", "not-a-number", "wrong-fin", "already-claimed", "short", "common", "meter-in-it", "mismatch"],
)
async def test_registration_errors_are_clear(portal: TestClient, data: dict[str, str], status: int, words: str) -> None:
    response = await submit(portal, "/register", data)
    html = await response.text()
    assert response.status == status and words in message_of(html)
    assert PASSWORD not in html  # the password is never echoed back
    assert 'value="' + data["meter_no"] + '"' in html  # the meter number is kept for a retry


async def test_login_with_dashes_and_logout(portal: TestClient) -> None:
    response = await log_in(portal, "999-999-999")
    assert response.status == 303 and response.headers["Location"] == f"/profile/{RESIDENT}"
    assert (await portal.get("/profile", allow_redirects=False)).headers["Location"] == f"/profile/{RESIDENT}"
    logout = await submit(portal, "/logout", {}, form_page=f"/profile/{RESIDENT}")
    assert logout.status == 303 and logout.headers["Location"] == "/"
    after = await portal.get(f"/profile/{RESIDENT}", allow_redirects=False)
    assert after.status == 303 and after.headers["Location"] == "/profile"


async def test_wrong_password_and_unknown_account_read_the_same(portal: TestClient) -> None:
    wrong = await log_in(portal, password="not the password")
    unknown = await log_in(portal, "123456789")
    assert wrong.status == unknown.status == 400
    assert message_of(await wrong.text()) == message_of(await unknown.text())
    assert "Wrong meter number, username or password" in message_of(await wrong.text())


async def test_forms_without_the_csrf_token_are_refused(portal: TestClient) -> None:
    await portal.get("/profile")  # a session with a token exists, but the form does not carry it
    for path, data in (("/profile", {"login": str(RESIDENT), "password": PASSWORD}), ("/register", register_data())):
        for token in (None, "forged"):
            form = data if token is None else {**data, "csrf_token": token}
            response = await portal.post(path, data=form, allow_redirects=False)
            assert response.status == 403 and response.content_type == "text/html"
            assert "did not come from this site" in await response.text()
    assert (await portal.get(f"/profile/{NEIGHBOUR}", allow_redirects=False)).status == 303  # nobody logged in


async def test_logout_needs_the_csrf_token(portal: TestClient) -> None:
    await log_in(portal)
    assert (await portal.post("/logout", data={}, allow_redirects=False)).status == 403
    assert (await portal.get(f"/profile/{RESIDENT}")).status == 200  # still logged in


async def test_a_resident_sees_only_their_own_meter(portal: TestClient) -> None:
    await log_in(portal)
    for path in (f"/profile/{NEIGHBOUR}", f"/profile/{NEIGHBOUR}/consumption?period=current-day", "/profile/42"):
        response = await portal.get(path, allow_redirects=False)
        assert response.status == 404 and response.content_type == "text/html"
        assert "There is no meter at this address" in await response.text()
    csv = await portal.get(f"/profile/{NEIGHBOUR}/consumption?period=current-day&format=csv")
    assert csv.status == 404 and csv.content_type == "text/html"


async def test_dashboard_is_for_staff_only(portal: TestClient) -> None:
    anonymous = await portal.get("/management-dashboard/", allow_redirects=False)
    assert anonymous.status == 303 and anonymous.headers["Location"] == "/management-dashboard/login"
    await log_in(portal)
    resident = await portal.get("/management-dashboard/")
    assert resident.status == 403 and "for staff accounts" in await resident.text()


async def test_staff_log_in_and_see_both_regions_and_any_meter(portal: TestClient) -> None:
    response = await log_in(portal, STAFF, staff=True)
    assert response.status == 303 and response.headers["Location"] == "/management-dashboard/"
    html = await (await portal.get("/management-dashboard/?period=current-week")).text()
    assert "<td>North</td>" in html and "<td>South</td>" in html
    assert (await portal.get(f"/profile/{CUT}")).status == 200


async def test_session_cookie_is_httponly_samesite_and_secure_when_asked(
    aiohttp_client, database_url: str, portal: TestClient
) -> None:  # type: ignore[no-untyped-def]
    cookie = (await portal.get("/profile")).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    secure = await aiohttp_client(create_app(portal_settings(database_url, cookie_secure=True)))
    assert "Secure" in (await secure.get("/profile")).headers["Set-Cookie"]


async def test_output_is_escaped(portal: TestClient) -> None:
    response = await submit(portal, "/register", register_data(meter="<script>alert(1)</script>"))
    html = await response.text()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_portal_errors_are_html_and_api_errors_stay_json(portal: TestClient) -> None:
    page = await portal.get("/profile/1/no/such/page")
    assert page.status == 404 and page.content_type == "text/html"
    assert (await portal.get("/no/such/path")).content_type == "application/json"


async def test_secret_key_is_made_once_beside_the_sqlite_file(aiohttp_client, sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    first = await aiohttp_client(create_app(portal_settings(sqlite_url)))
    key_file = Path(sqlite_url.split("///", 1)[1]).parent / KEY_FILE_NAME
    key = key_file.read_text()
    assert len(key.strip()) >= 32 and key_file.stat().st_mode & 0o077 == 0
    await first.get("/profile")
    cookie = first.session.cookie_jar.filter_cookies(first.make_url("/"))["gateway_portal"].value
    # A second app on the same database reads the same key, so it accepts the first one's cookie.
    second = await aiohttp_client(create_app(portal_settings(sqlite_url)))
    assert key_file.read_text() == key
    second.session.cookie_jar.update_cookies({"gateway_portal": cookie})
    response = await second.get("/profile")
    assert "Set-Cookie" not in response.headers  # the session was read, not replaced


def test_secret_key_without_a_file_is_per_process_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    postgres = Settings(database_url="postgresql+asyncpg://u@127.0.0.1/db")
    with caplog.at_level(logging.WARNING, logger="gateway.portal"):
        first, second = secret_key(postgres), secret_key(postgres)
    assert first != second and "GATEWAY_SECRET_KEY is not set" in caplog.text
    given = Settings(database_url="postgresql+asyncpg://u@127.0.0.1/db", secret_key="k" * 32)
    assert secret_key(given) == "k" * 32
    with pytest.raises(ValueError, match="secret_key"):
        Settings(secret_key="too short")
