"""Many requests at once: one credential load for a burst, and an exhausted pool answers 503."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import pytest
import sqlalchemy.exc
from aiohttp import web

from gateway.app import create_app
from gateway.auth import CredentialCache
from gateway.errors import error_middleware
from gateway.settings import Settings
from storage.registry import keys, meters


class SlowLoader:
    """A credential store that takes a moment, counting its loads."""

    def __init__(self, value: str | None = "meter-1", error: Exception | None = None) -> None:
        self.calls = 0
        self.value = value
        self.error = error
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def __call__(self, _secret_hash: str) -> str | None:
        self.calls += 1
        value = self.value  # what the store held when the load began
        self.started.set()
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return value


async def test_a_burst_of_lookups_of_one_secret_loads_it_once() -> None:
    loader = SlowLoader()
    cache: CredentialCache[str] = CredentialCache(loader)
    lookups = [asyncio.create_task(cache.lookup("mgk_secret")) for _ in range(500)]
    await asyncio.sleep(0)
    loader.release.set()
    assert await asyncio.gather(*lookups) == ["meter-1"] * 500
    assert loader.calls == 1
    assert await cache.lookup("mgk_secret") == "meter-1" and loader.calls == 1  # remembered


async def test_a_failed_load_reaches_every_waiter_and_is_not_remembered() -> None:
    loader = SlowLoader(error=RuntimeError("database down"))
    cache: CredentialCache[str] = CredentialCache(loader)
    lookups = [asyncio.create_task(cache.lookup("mgk_secret")) for _ in range(3)]
    await asyncio.sleep(0)
    loader.release.set()
    results = await asyncio.gather(*lookups, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results) and loader.calls == 1
    loader.error = None
    assert await cache.lookup("mgk_secret") == "meter-1" and loader.calls == 2


async def test_a_caller_that_goes_away_does_not_cancel_the_others_load() -> None:
    loader = SlowLoader()
    cache: CredentialCache[str] = CredentialCache(loader)
    leaving, staying = (asyncio.create_task(cache.lookup("mgk_secret")) for _ in range(2))
    await asyncio.sleep(0)
    leaving.cancel()
    loader.release.set()
    assert await staying == "meter-1"


async def test_a_load_begun_before_a_revoke_is_not_remembered() -> None:
    loader = SlowLoader()
    cache: CredentialCache[str] = CredentialCache(loader)
    lookup = asyncio.create_task(cache.lookup("mgk_secret"))
    await loader.started.wait()
    cache.clear()  # a revoke lands while the old answer is on its way
    loader.value = None
    loader.release.set()
    assert await lookup == "meter-1"  # that request started before the revoke
    assert await cache.lookup("mgk_secret") is None and loader.calls == 2


@pytest.mark.parametrize("path", ["/meter", "/api/v1/admin/sites"])
async def test_an_exhausted_connection_pool_answers_503_with_retry_after(aiohttp_client: Any, path: str) -> None:
    async def busy(_request: web.Request) -> web.Response:
        raise sqlalchemy.exc.TimeoutError("QueuePool limit of size 10 overflow 10 reached")

    app = web.Application(middlewares=[error_middleware])
    app.router.add_post(path, busy)
    client = await aiohttp_client(app)
    response = await client.post(path)
    assert response.status == 503
    assert response.headers["Retry-After"] == "2"
    assert "retry" in (await response.json())["message"]


class Store:
    """Credentials by hash: one good secret; counts the loads of each hash."""

    def __init__(self, good: str) -> None:
        self.good = keys.hash_secret(good)
        self.loads: collections.Counter[str] = collections.Counter()

    async def __call__(self, secret_hash: str) -> str | None:
        self.loads[secret_hash] += 1
        return "meter-1" if secret_hash == self.good else None


async def test_a_flood_of_unknown_tokens_never_evicts_a_good_entry() -> None:
    store = Store("mtr_good")
    cache: CredentialCache[str] = CredentialCache(store, max_unknown=100)
    assert await cache.lookup("mtr_good") == "meter-1"
    for n in range(1_000):
        assert await cache.lookup(f"mtr_random-{n}") is None
    assert cache.sizes == (1, 100)  # the unknown ones are bounded; the good one is still there
    assert await cache.lookup("mtr_good") == "meter-1"
    assert store.loads[store.good] == 1
    assert await cache.lookup("mtr_random-999") is None  # a repeated bad token costs nothing
    assert store.loads[keys.hash_secret("mtr_random-999")] == 1


async def test_a_random_bearer_token_costs_one_lookup_and_a_repeat_none(
    aiohttp_client: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await aiohttp_client(create_app(Settings(database_url=database_url, scheduler=False)))
    lookups: list[str] = []
    for module, name in ((keys, "find_key"), (meters, "find_meter_by_token")):
        real = getattr(module, name)

        async def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            lookups.append(_name)
            return await _real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)
    packet = {"id": 1, "timestamp": "2026-11-20T00:31:00Z", "reading_kWh": 1}
    for token in ("random-token", "random-token", "mgk_random-key", "mgk_random-key"):
        response = await client.post("/meter", json=packet, headers={"Authorization": f"Bearer {token}"})
        assert response.status == 401
    assert lookups == ["find_meter_by_token", "find_key"]
