"""Requests schemathesis found to break the gateway: each is a client error now, never a 500."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, make_mocked_request

from gateway.app import create_app
from gateway.app_keys import DB
from gateway.errors import error_middleware
from gateway.settings import Settings
from storage.registry import dgs
from tests.api_setup import add_key, add_site, headers


@pytest.fixture
async def api(aiohttp_client, sqlite_url: str) -> tuple[TestClient, str]:  # type: ignore[no-untyped-def]
    client = await aiohttp_client(create_app(Settings(database_url=sqlite_url)))
    await add_site(client.app[DB], "S1")
    return client, await add_key(client.app[DB], "admin", "*")


async def test_multipart_body_without_boundary_is_bad_input(api: tuple[TestClient, str]) -> None:
    client, key = api
    response = await client.post(
        "/api/v1/admin/sites/S1/dgs",
        data=b'{"dg_number": "0"}',
        headers={**headers(key), "Content-Type": "multipart/form-data"},
    )
    assert response.status == 400
    assert "Malformed form body" in (await response.json())["errors"]["body"][0]


async def test_body_that_is_not_utf8_is_bad_input(api: tuple[TestClient, str]) -> None:
    client, key = api
    response = await client.post(
        "/api/v1/admin/keys", data=b"\xe9Jhk>\xde\x9b", headers={**headers(key), "Content-Type": "application/json"}
    )
    assert response.status == 400
    assert (await response.json())["errors"] == {"body": ["Not valid UTF-8."]}


MULTIPART = "multipart/form-data; boundary=zz"


def _part(part_headers: str) -> bytes:
    return (f'--zz\r\nContent-Disposition: form-data; name="dg_number"\r\n{part_headers}\r\n0\r\n--zz--\r\n').encode()


@pytest.mark.parametrize(
    ("content_type", "extra", "body", "named"),
    [
        ("application/x-www-form-urlencoded; charset=foobar", {}, b"dg_number=DG9", "unknown encoding: foobar"),
        (MULTIPART, {}, _part("Content-Type: text/plain; charset=foobar\r\n"), "unknown encoding: foobar"),
        (MULTIPART, {}, _part("Content-Transfer-Encoding: x-unknown\r\n"), "x-unknown"),
        ("application/json", {"Content-Encoding": "gzip"}, b"notgzip", "could not be read"),
        ("application/x-www-form-urlencoded", {"Content-Encoding": "deflate"}, b"notdeflate", "Malformed form body"),
    ],
    ids=["form-charset", "part-charset", "part-transfer-encoding", "corrupt-gzip-json", "corrupt-deflate-form"],
)
async def test_a_body_that_cannot_be_decoded_is_bad_input_and_creates_nothing(
    api: tuple[TestClient, str], content_type: str, extra: dict[str, str], body: bytes, named: str
) -> None:
    """aiohttp raises LookupError, RuntimeError or its payload error while it reads such a body:
    each was a 500."""
    client, key = api
    response = await client.post(
        "/api/v1/admin/sites/S1/dgs", data=body, headers={**headers(key), "Content-Type": content_type, **extra}
    )
    assert response.status == 400
    reply = await response.json()
    assert reply["status"] == "error" and named in reply["errors"]["body"][0], reply
    assert await dgs.list_dgs(client.app[DB], site_id="S1") == []


async def test_a_packet_with_a_corrupt_compressed_body_is_bad_input(api: tuple[TestClient, str]) -> None:
    client, _key = api
    ingest = await add_key(client.app[DB], "ingest", "S1")
    response = await client.post(
        "/meter",
        data=b"notdeflate",
        headers={
            "Authorization": f"Bearer {ingest}",
            "Content-Type": "application/json",
            "Content-Encoding": "deflate",
        },
    )
    assert response.status == 400
    assert "could not be read" in (await response.json())["errors"]["body"][0]


@pytest.mark.parametrize(
    ("content_type", "extra", "body"),
    [
        ("application/x-www-form-urlencoded; charset=foobar", {}, b"username=a"),
        (MULTIPART, {}, _part("Content-Transfer-Encoding: x-unknown\r\n")),
        ("application/x-www-form-urlencoded", {"Content-Encoding": "gzip"}, b"notgzip"),
    ],
    ids=["charset", "transfer-encoding", "corrupt-gzip"],
)
async def test_a_portal_form_that_cannot_be_decoded_is_a_400_page(
    api: tuple[TestClient, str], content_type: str, extra: dict[str, str], body: bytes
) -> None:
    client, _key = api
    response = await client.post("/register", data=body, headers={"Content-Type": content_type, **extra})
    assert response.status == 400
    assert "This form could not be read" in await response.text()


async def test_method_not_allowed_says_which_are(api: tuple[TestClient, str]) -> None:
    client, key = api
    response = await client.delete("/api/v1/site/readings", headers=headers(key))
    assert response.status == 405
    assert set(response.headers["Allow"].split(",")) >= {"GET"}
    assert (await response.json())["status"] == "error"


async def test_portal_form_without_boundary_is_bad_request(api: tuple[TestClient, str]) -> None:
    client, _key = api
    response = await client.post("/register", data=b"x", headers={"Content-Type": "multipart/form-data"})
    assert response.status == 400


async def test_a_client_gone_mid_body_is_left_to_aiohttp_not_logged_as_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The body read fails with ConnectionResetError when the client hangs up: nobody to answer,
    so the middleware lets aiohttp drop the request (it notes it at debug level) instead of
    logging a traceback and a 500."""

    async def hung_up(_request: web.Request) -> web.StreamResponse:
        raise ConnectionResetError("Connection lost")

    request = make_mocked_request("POST", "/meter")
    with pytest.raises(ConnectionResetError):
        await error_middleware(request, hung_up)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
