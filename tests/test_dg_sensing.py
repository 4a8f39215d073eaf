"""Factech call 11 (DG sensing) over real HTTP: the envelopes, one subscription per DG, and the
refusal of callback URLs that point inside the network, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.resolver import ThreadedResolver
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from gateway.app import create_app
from gateway.settings import Settings
from storage.db.engine import Database
from storage.db.event_models import DgSubscription
from tests.api_setup import add_dg, add_key, add_site, headers

PATH = "/api/v1/dg/sensing"
PUBLIC_URL = "https://93.184.215.14/hooks/dg"  # a public address: no DNS needed to judge it
NOT_FOUND = {"status": "Error", "message": "Not Found", "data": None}


@pytest.fixture
async def keys(db: Database) -> dict[str, str]:
    """S1 has DG1; S2 has DG9. Keys: operate, read and admin on S1."""
    await add_site(db, "S1")
    await add_site(db, "S2")
    await add_dg(db, "S1", "DG1")
    await add_dg(db, "S2", "DG9")
    return {role: await add_key(db, role, "S1") for role in ("read", "operate", "admin")}


async def register(client: TestClient, key: str | None, **inputs: Any) -> tuple[int, dict[str, Any]]:
    response = await client.post(PATH, json=inputs, headers=headers(key) if key else {})
    return response.status, await response.json()


async def subscriptions(db: Database) -> list[DgSubscription]:
    async with db.reader() as session:
        return list((await session.execute(select(DgSubscription))).scalars())


async def test_registering_answers_the_documented_envelope_with_a_secret(
    client: TestClient, keys: dict[str, str], db: Database
) -> None:
    status, body = await register(client, keys["operate"], site_id="S1", dg_number="DG1", url=PUBLIC_URL)
    assert status == 200
    secret = body["data"].pop("secret")
    assert body == {
        "status": "success",
        "message": "DG Sensing URL configured",
        "data": {"dg_no": "DG1", "url": PUBLIC_URL},
    }
    assert secret.startswith("whsec_") and len(secret) == len("whsec_") + 44  # base64 of 32 bytes
    [stored] = await subscriptions(db)
    assert (stored.site_id, stored.dg_no, stored.url, stored.secret) == ("S1", "DG1", PUBLIC_URL, secret)


async def test_registering_again_replaces_the_url_and_issues_a_new_secret(
    client: TestClient, keys: dict[str, str], db: Database
) -> None:
    _, first = await register(client, keys["operate"], site_id="S1", dg_number="DG1", url=PUBLIC_URL)
    other = "http://93.184.215.15:8080/dg?society=S1"
    _, second = await register(client, keys["admin"], site_id="S1", dg_number="DG1", url=other)
    assert second["data"]["url"] == other and second["data"]["secret"] != first["data"]["secret"]
    [stored] = await subscriptions(db)
    assert (stored.url, stored.secret) == (other, second["data"]["secret"])


@pytest.mark.parametrize("how", ["form", "query"])
async def test_inputs_may_come_as_a_form_or_in_the_query_string(
    client: TestClient, keys: dict[str, str], how: str
) -> None:
    inputs = {"site_id": "S1", "dg_number": "DG1", "url": PUBLIC_URL}
    if how == "form":
        response = await client.post(PATH, data=inputs, headers=headers(keys["operate"]))
    else:
        response = await client.post(PATH, params=inputs, headers=headers(keys["operate"]))
    body = await response.json()
    assert response.status == 200 and body["data"]["url"] == PUBLIC_URL


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        ({"dg_number": "DG1", "url": PUBLIC_URL}, "site_id"),
        ({"site_id": "S1", "url": PUBLIC_URL}, "dg_number"),
        ({"site_id": "S1", "dg_number": "DG1"}, "url"),
        ({"site_id": "S1", "dg_number": "  ", "url": PUBLIC_URL}, "dg_number"),
        ({"site_id": "S1", "dg_number": "DG1", "url": "ftp://93.184.215.14/dg"}, "url"),
        ({"site_id": "S1", "dg_number": "DG1", "url": "not a url"}, "url"),
        ({"site_id": "S1", "dg_number": "DG1", "url": "http://"}, "url"),
        ({"site_id": "S1", "dg_number": "DG1", "url": 42}, "url"),
        ({"site_id": "S1", "dg_number": "DG1", "url": f"https://93.184.215.14/{'x' * 2000}"}, "url"),
    ],
)
async def test_missing_or_malformed_input_is_invalid_input_naming_the_field(
    client: TestClient, keys: dict[str, str], db: Database, inputs: dict[str, Any], field: str
) -> None:
    status, body = await register(client, keys["operate"], **inputs)
    assert status == 400
    remarks = body.pop("remarks")
    assert body == {"status": "Error", "message": "Invalid input", "data": None}
    assert remarks.startswith(f"{field}: ")
    assert await subscriptions(db) == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/dg",
        "http://10.1.2.3/dg",
        "http://192.168.0.10/dg",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://100.100.100.200/",  # shared address space, another cloud's metadata
        "http://[::1]:8080/dg",
        "http://[fd00:ec2::254]/",
        "http://0.0.0.0/dg",
        "http://localhost:8080/dg",  # a name that resolves to loopback
        "http://no-such-host.invalid/dg",  # a name that does not resolve at all
    ],
)
async def test_a_url_inside_the_network_is_not_configured(
    client: TestClient, keys: dict[str, str], db: Database, url: str
) -> None:
    status, body = await register(client, keys["operate"], site_id="S1", dg_number="DG1", url=url)
    assert status == 422
    remarks = body.pop("remarks")
    assert body == {"status": "Error", "message": "Not Configured", "data": None}
    assert remarks.startswith("callback URL refused: ")
    assert await subscriptions(db) == []


EMBEDDED_IPV4 = [
    "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",  # NAT64 of 169.254.169.254 (the review's probe)
    "http://[64:ff9b::7f00:1]/",  # NAT64 of 127.0.0.1
    "http://[64:ff9b:1::a00:1]/",  # local-use NAT64 prefix
    "http://[2002:a9fe:a9fe::1]/",  # 6to4 of 169.254.169.254
    "http://[2002:808:808::1]/",  # 6to4, even of a public address
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",  # Teredo
    "http://[::7f00:1]/",  # IPv4-compatible 127.0.0.1
    "http://[::808:808]/",  # IPv4-compatible, deprecated whatever it carries
    "http://[::ffff:a9fe:a9fe]/",  # IPv4-mapped 169.254.169.254
    "http://[ff02::1]/",  # multicast
]


@pytest.mark.parametrize("url", EMBEDDED_IPV4)
async def test_ipv6_forms_of_internal_ipv4_addresses_are_not_configured(
    client: TestClient, keys: dict[str, str], db: Database, url: str
) -> None:
    status, body = await register(client, keys["operate"], site_id="S1", dg_number="DG1", url=url)
    assert (status, body["message"]) == (422, "Not Configured")
    assert body["remarks"].endswith("is not a public address")
    assert await subscriptions(db) == []


@pytest.mark.parametrize("url", ["https://[64:ff9b::5db8:d70e]/hooks", "https://[::ffff:5db8:d70e]/hooks"])
async def test_nat64_and_mapped_forms_of_public_addresses_are_accepted(
    client: TestClient, keys: dict[str, str], url: str
) -> None:
    status, body = await register(client, keys["operate"], site_id="S1", dg_number="DG1", url=url)
    assert status == 200, body


async def test_the_refusal_never_says_what_a_name_resolved_to(
    client: TestClient, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def internal(_self: Any, host: str, port: int = 0, family: Any = 0) -> list[dict[str, Any]]:
        address = {"metadata.internal": "64:ff9b::a9fe:a9fe", "db.internal": "10.20.30.40"}[host]
        return [{"hostname": host, "host": address, "port": port, "family": 0, "proto": 0, "flags": 0}]

    monkeypatch.setattr(ThreadedResolver, "resolve", internal)
    for name, address in (("metadata.internal", "a9fe"), ("db.internal", "10.20.30.40")):
        status, body = await register(client, keys["operate"], site_id="S1", dg_number="DG1", url=f"http://{name}/")
        assert status == 422 and body["remarks"] == f"callback URL refused: {name} is not a public address"
        assert address not in json.dumps(body)


async def test_the_private_address_override_allows_loopback(
    aiohttp_client: Any, database_url: str, db: Database
) -> None:
    await add_site(db, "S1")
    await add_dg(db, "S1", "DG1")
    key = await add_key(db, "operate", "S1")
    client = await aiohttp_client(create_app(Settings(database_url=database_url, callback_allow_private=True)))
    for url in ("http://127.0.0.1:8080/dg", "http://localhost:8080/dg"):
        status, body = await register(client, key, site_id="S1", dg_number="DG1", url=url)
        assert status == 200 and body["data"]["url"] == url


async def test_unknown_dg_and_other_sites_dgs_are_not_found(client: TestClient, keys: dict[str, str]) -> None:
    key = keys["operate"]
    assert await register(client, key, site_id="S1", dg_number="DG7", url=PUBLIC_URL) == (404, NOT_FOUND)
    assert await register(client, key, site_id="S2", dg_number="DG9", url=PUBLIC_URL) == (404, NOT_FOUND)
    assert await register(client, key, site_id="S9", dg_number="DG1", url=PUBLIC_URL) == (404, NOT_FOUND)
    # An unknown DG is answered before the URL is looked at.
    assert await register(client, key, site_id="S1", dg_number="DG7", url="http://127.0.0.1/") == (404, NOT_FOUND)


async def test_a_read_key_is_forbidden_and_no_key_is_unauthorized(
    client: TestClient, keys: dict[str, str], db: Database
) -> None:
    inputs = {"site_id": "S1", "dg_number": "DG1", "url": PUBLIC_URL}
    status, body = await register(client, keys["read"], **inputs)
    assert status == 403 and "operate" in body.pop("remarks")
    assert body == {"status": "Error", "message": "Forbidden", "data": None}
    status, body = await register(client, None, **inputs)
    assert status == 401 and "X-API-Key" in body.pop("remarks")
    assert body == {"status": "Error", "message": "Unauthorized", "data": None}
    status, body = await register(client, "mgk_not-a-key", **inputs)
    assert status == 401 and body["message"] == "Unauthorized"
    async with db.reader() as session:
        assert await session.scalar(select(func.count()).select_from(DgSubscription)) == 0
