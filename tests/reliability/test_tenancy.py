"""Tenancy matrix, generated from tests/reliability/calls.py and checked against the app's routes.

For every `/api/v1` call: each input naming an object (site_id, meter_no, dg_number,
transaction_id, event_id, key name, and the path parameters of admin routes), alone and all
together, set to another society's object, with an admin key of our society → 404 and not a
row changed anywhere. The same request naming our objects is then answered (not 400/404): the
404 came from the scope, not from a malformed request. No key or a bad key → 401; a key whose
role is below the call's (and `ingest` keys) → 403; nothing changed either way. Ingest with
another society's key → 404.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from storage.clock import FixedClock
from storage.db.engine import Database
from tests.reliability.calls import CALLS, NOT_API_KEY_ROUTES, PENDING, ROLES_BELOW, ApiCall
from tests.reliability.world import NOW, World, build_world, describe_change, dump_tables

FOREIGN_MARKERS = ("THEIRS", "90000000")  # their site id and meter numbers: never in an answer to us


@dataclass
class Env:
    client: TestClient
    db: Database
    world: World
    routes: set[tuple[str, str]]

    async def send(self, call: ApiCall, path: str, inputs: dict[str, Any], key: str | None) -> tuple[int, str]:
        headers = {"X-API-Key": key} if key is not None else {}
        if call.method == "GET":
            response = await self.client.get(path, params=inputs, headers=headers)
        else:
            response = await self.client.request(call.method, path, json=inputs, headers=headers)
        return response.status, await response.text()

    def active(self) -> list[ApiCall]:
        """The calls this app has (pending ones appear once their branch is merged)."""
        return [call for call in CALLS if call.key in self.routes]


def api_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path template) of every /api/v1 route of the app."""
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None and route.resource.canonical.startswith("/api/v1")
    }


async def _transactions(env: Env) -> None:
    """Once the recharge call exists, give each side a recharge whose transaction_id call 4 can name."""
    if ("POST", "/api/v1/meter/recharge") not in env.routes:
        return
    for side in (env.world.ours, env.world.theirs):
        response = await env.client.post(
            "/api/v1/meter/recharge",
            json={"site_id": side.site_id, "meter_no": str(side.meter_no), "amount": "10.00"},
            headers={"X-API-Key": side.keys["admin"]},
        )
        side.transaction_id = str((await response.json())["data"]["transaction_id"])


@pytest.fixture
async def env(aiohttp_client: Any, database_url: str) -> AsyncIterator[Env]:
    db = Database(database_url)
    world = await build_world(db)
    # Private callback targets allowed: call 11's positive control registers a loopback URL
    # without a DNS lookup. No scheduler: nothing changes the tables behind the test's back.
    settings = Settings(database_url=database_url, callback_allow_private=True, scheduler=False)
    app = create_app(settings, clock=FixedClock(NOW))
    environment = Env(await aiohttp_client(app), db, world, api_routes(app))
    await _transactions(environment)
    yield environment
    await db.dispose()


def test_every_api_route_is_in_the_matrix(tmp_path: Path) -> None:
    # Routes are known once the app is built; nothing is opened (the database only at startup).
    routes = api_routes(create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/unused.db")))
    table = {call.key for call in CALLS}
    assert len(table) == len(CALLS), "a call is listed twice"
    missing = routes - table
    assert not missing, f"routes without a row in tests/reliability/calls.py CALLS: {sorted(missing)}"
    unknown = table - routes - PENDING
    assert not unknown, f"rows in CALLS that are neither routes nor PENDING: {sorted(unknown)}"
    merged = PENDING & routes
    assert not merged, f"now routes, remove from PENDING in tests/reliability/calls.py: {sorted(merged)}"
    assert all(path.startswith("/") for path in NOT_API_KEY_ROUTES)


def foreign_cases(call: ApiCall) -> list[frozenset[str]]:
    """Each object input alone, then all of them together, naming the other society's object."""
    objects = call.objects()
    cases = [frozenset([name]) for name in objects]
    if len(objects) > 1:
        cases.append(frozenset(objects))
    return cases


async def test_objects_of_another_site_answer_404_and_change_nothing(env: Env) -> None:
    ours, theirs = env.world.ours, env.world.theirs
    failures, checked = [], 0
    before = await dump_tables(env.db)
    for call in env.active():
        for foreign in foreign_cases(call):
            path, inputs = call.request(ours, theirs, foreign)
            status, body = await env.send(call, path, inputs, ours.keys["admin"])
            after = await dump_tables(env.db)
            checked += 1
            if status != 404:
                failures.append(f"{call.method} {path} {inputs} (foreign: {sorted(foreign)}) → {status} {body[:200]}")
            if after != before:
                failures.append(
                    f"{call.method} {path} (foreign: {sorted(foreign)}) changed {describe_change(before, after)}"
                )
                before = after
    assert not failures, "\n".join(failures)
    print(f"{checked} foreign-object requests over {len(env.active())} calls")
    assert checked >= 30  # the matrix is not empty by accident

    # Controls: the same requests naming our own objects are answered, and never show theirs.
    for call in env.active():
        path, inputs = call.request(ours, theirs)
        status, body = await env.send(call, path, inputs, env.world.star_admin if _global(call) else ours.keys["admin"])
        if status in (400, 401, 403, 404) or status >= 500:
            failures.append(f"control {call.method} {path} {inputs} → {status} {body[:200]}")
        if any(marker in body for marker in FOREIGN_MARKERS) and not _global(call):
            failures.append(f"control {call.method} {path} shows another society's objects: {body[:300]}")
    assert not failures, "\n".join(failures)
    print(f"{len(env.active())} controls naming our own objects answered, none showing theirs")


def _global(call: ApiCall) -> bool:
    """Creating a site needs a key for '*'; it names no object of a site."""
    return call.key == ("POST", "/api/v1/admin/sites")


async def test_lists_show_only_the_keys_sites(env: Env) -> None:
    for path in ("/api/v1/admin/sites", "/api/v1/admin/keys", "/api/v1/admin/users"):
        response = await env.client.get(path, headers={"X-API-Key": env.world.ours.keys["admin"]})
        body = await response.text()
        assert response.status == 200 and "OURS" in body
        assert not any(marker in body for marker in FOREIGN_MARKERS), body


async def test_the_audit_trail_shows_only_the_keys_sites(env: Env) -> None:
    for side in (env.world.theirs, env.world.ours):
        response = await env.client.patch(
            f"/api/v1/admin/sites/{side.site_id}", json={"name": "Renamed"}, headers={"X-API-Key": side.keys["admin"]}
        )
        assert response.status == 200
    response = await env.client.get("/api/v1/admin/audit", headers={"X-API-Key": env.world.ours.keys["admin"]})
    body = await response.text()
    assert response.status == 200 and "admin-OURS" in body
    assert not any(marker in body for marker in FOREIGN_MARKERS), body


async def test_conflicts_do_not_tell_whose_object_it_is(env: Env) -> None:
    """A name or number taken by another society answers exactly as one taken by our own: the 409
    says the id is taken (ids are unique across the gateway), never whose or where."""
    ours, theirs = env.world.ours, env.world.theirs
    key = {"X-API-Key": ours.keys["admin"]}
    answers = []
    for taken in (ours, theirs):
        requests = [
            ("/api/v1/admin/keys", {"name": f"read-{taken.site_id}", "role": "read", "sites": [ours.site_id]}),
            (f"/api/v1/admin/sites/{ours.site_id}/meters", {"meter_no": str(taken.spare_meter), "unit_no": "U9"}),
            (
                "/api/v1/admin/meter-changes",
                {
                    "site_id": ours.site_id,
                    "old_meter_no": str(ours.change_meter),
                    "new_meter_no": str(taken.spare_meter),
                    "meter_change_date": "2026-11-15",
                },
            ),
        ]
        replies = []
        for path, body in requests:
            response = await env.client.post(path, json=body, headers=key)
            text = (await response.text()).replace(taken.site_id, "SITE").replace(str(taken.spare_meter), "N")
            replies.append((response.status, text))
        answers.append(replies)
    assert [status for status, _ in answers[0]] == [409, 409, 409]
    assert answers[0] == answers[1]
    assert not any(marker in text for _, text in answers[1] for marker in FOREIGN_MARKERS)


async def test_no_key_or_a_bad_key_answers_401_and_a_lesser_role_403(env: Env) -> None:
    ours = env.world.ours
    failures, sent = [], 0
    before = await dump_tables(env.db)
    for call in env.active():
        path, inputs = call.request(ours, env.world.theirs)
        attempts: list[tuple[str | None, int]] = [(None, 401), ("", 401), ("mgk_" + "0" * 43, 401)]
        attempts += [(ours.keys[role], 403) for role in (*ROLES_BELOW[call.role], "ingest")]
        for key, expected in attempts:
            status, body = await env.send(call, path, inputs, key)
            sent += 1
            if status != expected:
                role = next((r for r, k in ours.keys.items() if k == key), repr(key)[:12])
                failures.append(f"{call.method} {path} with key {role} → {status}, expected {expected}: {body[:200]}")
    after = await dump_tables(env.db)
    assert after == before, describe_change(before, after)
    assert not failures, "\n".join(failures)
    print(f"{sent} requests without a key, with a bad key, a lesser role or an ingest key: all 401/403")


async def test_ingest_with_another_sites_credentials_is_refused(env: Env) -> None:
    ours, theirs = env.world.ours, env.world.theirs
    before = await dump_tables(env.db)
    packet = {"id": theirs.meter_no, "timestamp": "2026-11-20T10:31:00Z", "reading_kWh": 1.5}
    for credential in (ours.keys["ingest"], ours.token):
        response = await env.client.post("/meter", json=packet, headers={"Authorization": f"Bearer {credential}"})
        # An ingest key of our site: their meter does not exist for it (404); our meter's
        # device token: it may post only its own readings (403).
        assert response.status == (404 if credential.startswith("mgk_") else 403), await response.text()
        response = await env.client.post(
            "/meter", json=[packet, packet], headers={"Authorization": f"Bearer {credential}"}
        )
        assert response.status == 400, await response.text()
        assert len((await response.json())["data"]["rejected"]) == 2
    dg = {
        "site_id": theirs.site_id,
        "dg_number": theirs.dg_number,
        "timestamp": "2026-11-20T10:31:00Z",
        "status": "OFF",
    }
    response = await env.client.post("/dg", json=dg, headers={"Authorization": f"Bearer {ours.keys['ingest']}"})
    assert response.status == 404, await response.text()
    for role in ("read", "operate", "admin"):  # API keys of other roles are not for devices
        response = await env.client.post("/meter", json=packet, headers={"Authorization": f"Bearer {ours.keys[role]}"})
        assert response.status == 403, await response.text()
    after = await dump_tables(env.db)
    assert after == before, describe_change(before, after)
    # A mixed batch: ours is stored, theirs rejected by index.
    mixed = [{**packet, "id": ours.meter_no}, packet]
    response = await env.client.post("/meter", json=mixed, headers={"Authorization": f"Bearer {ours.keys['ingest']}"})
    body = await response.json()
    assert response.status == 207 and body["data"]["accepted"] == 1
    assert [item["index"] for item in body["data"]["rejected"]] == [1]


def test_matrix_cases_cover_every_object_input() -> None:
    for call in CALLS:
        cases = foreign_cases(call)
        assert set(itertools.chain.from_iterable(cases)) == set(call.objects())
