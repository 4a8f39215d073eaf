"""API-key authentication for every `/api/v1` call and for `ingest` keys.

Checked in the order DESIGN.md gives: key valid (401) → role (403) → site scope (404, done by
the caller with `Principal.check_site`, so objects of other sites look like unknown ones).
Lookups are cached by key hash so a request costs no database round trip; revoking or rotating
through this process clears the cache at once, other processes see it within `CACHE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from aiohttp import web

from storage.db.engine import Database
from storage.errors import Forbidden, NotFound, Unauthorized, unknown_site
from storage.registry import keys, meters

API_KEY_HEADER = "X-API-Key"
ROLE_RANK = {"read": 1, "operate": 2, "admin": 3}
CACHE_SECONDS = 5.0
T = TypeVar("T")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a named API key with a role and a set of sites."""

    name: str
    role: str
    sites: frozenset[str]

    def has_role(self, needed: str) -> bool:
        """True if this key's role includes `needed` (read < operate < admin; ingest apart)."""
        if needed == "ingest" or self.role == "ingest":
            return self.role == needed
        return ROLE_RANK[self.role] >= ROLE_RANK[needed]

    def sees_site(self, site_id: str) -> bool:
        """True if the key covers this site."""
        return keys.ALL_SITES in self.sites or site_id in self.sites

    def covers(self, sites: Iterable[str]) -> bool:
        """True if the key covers every one of these sites (so '*' needs a '*' key)."""
        return all(self.sees_site(site) for site in sites)

    def check_sites(self, sites: Iterable[str]) -> None:
        """`check_site` for a list of sites (a new key's, a staff account's): the first one the
        key does not cover is an unknown site."""
        foreign = next((site for site in sites if not self.sees_site(site)), None)
        if foreign is not None:
            raise unknown_site(foreign, "sites")

    def check_site(self, site_id: str, error: NotFound | None = None) -> None:
        """The one site-scope check of every handler: `error` (default: the store's "unknown
        site") unless the key covers this site, so that objects of other sites look unknown."""
        if not self.sees_site(site_id):
            raise error or unknown_site(site_id)


class CredentialCache(Generic[T]):
    """secret hash → what it identifies (None for unknown/revoked), remembered for a few seconds.

    Secrets are looked up by their SHA-256, so the cache never holds a secret itself. Lookups of
    one secret that miss together share one database load: when a busy ingest key's entry
    expires, the thousands of requests in flight with it would otherwise each take a pooled
    connection, and under a backlog flush they waited past the pool's timeout (500s, measured
    with bench/backlog.py on PostgreSQL).

    Known and unknown secrets are kept apart. Known ones can only be as many as the credentials
    staff issued, so they are never evicted. Unknown ones are what a flood of random tokens
    makes: they go to a bounded LRU (`max_unknown`), so a repeated bad token costs no database
    round trip and a flood of fresh ones pushes out only other bad ones.
    """

    def __init__(
        self, load: Callable[[str], Awaitable[T | None]], ttl: float = CACHE_SECONDS, max_unknown: int = 10_000
    ) -> None:
        self._load = load
        self._ttl = ttl
        self._max_unknown = max_unknown
        self._known: dict[str, tuple[float, T]] = {}
        self._unknown: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._loading: dict[str, asyncio.Task[T | None]] = {}
        self._generation = 0  # bumped by clear(): a load begun before it must not be remembered

    async def lookup(self, secret: str) -> T | None:
        """What this secret identifies, or None."""
        secret_hash = keys.hash_secret(secret)
        now = time.monotonic()
        hit = self._known.get(secret_hash)
        if hit is not None and hit[0] > now:
            return hit[1]
        if self._unknown.get(secret_hash, 0.0) > now:
            return None
        task = self._loading.get(secret_hash)
        if task is None:
            task = asyncio.ensure_future(self._load(secret_hash))
            self._loading[secret_hash] = task
            task.add_done_callback(functools.partial(self._loaded, secret_hash, self._generation))
        # Shielded: a caller that goes away does not cancel the load the others wait for.
        return await asyncio.shield(task)

    def _loaded(self, secret_hash: str, generation: int, task: asyncio.Task[T | None]) -> None:
        if self._loading.get(secret_hash) is task:
            del self._loading[secret_hash]
        if task.cancelled() or task.exception() is not None or generation != self._generation:
            return  # the error reaches every waiter; nothing is remembered
        expires = time.monotonic() + self._ttl
        found = task.result()
        if found is not None:
            self._known[secret_hash] = (expires, found)
            self._unknown.pop(secret_hash, None)
            return
        self._known.pop(secret_hash, None)  # revoked since it was last looked up
        self._unknown[secret_hash] = expires
        self._unknown.move_to_end(secret_hash)
        while len(self._unknown) > self._max_unknown:
            self._unknown.popitem(last=False)

    @property
    def sizes(self) -> tuple[int, int]:
        """(known, unknown) entries held, for tests and metrics."""
        return len(self._known), len(self._unknown)

    def clear(self) -> None:
        """Forget everything (after a revoke, rotate or new device token)."""
        self._known.clear()
        self._unknown.clear()
        self._loading.clear()
        self._generation += 1


class KeyCache(CredentialCache[Principal]):
    """API keys by hash."""

    def __init__(self, db: Database, ttl: float = CACHE_SECONDS) -> None:
        async def load(key_hash: str) -> Principal | None:
            api_key = await keys.find_key(db, key_hash=key_hash)
            if api_key is None:
                return None
            return Principal(name=api_key.name, role=api_key.role, sites=frozenset(api_key.sites))

        super().__init__(load, ttl)


class DeviceTokenCache(CredentialCache[int]):
    """Meter device tokens by hash → the meter number."""

    def __init__(self, db: Database, ttl: float = CACHE_SECONDS) -> None:
        async def load(token_hash: str) -> int | None:
            return await meters.find_meter_by_token(db, token_hash=token_hash)

        super().__init__(load, ttl)


class LegacyMeters:
    """The set of meters allowed to post without a token, reloaded every few seconds.

    Asked only by requests that send no credentials, so meters with tokens never pay for it.
    One load at a time serves every request waiting for it; `clear` (a meter's flag changed
    here, or another process NOTIFYs a change on PostgreSQL) makes the next request reload.
    """

    def __init__(self, db: Database, ttl: float = CACHE_SECONDS) -> None:
        self._db = db
        self._ttl = ttl
        self._meters: frozenset[int] = frozenset()
        self._expires = 0.0
        self._loading: asyncio.Task[frozenset[int]] | None = None
        self._generation = 0

    async def get(self) -> frozenset[int]:
        """The meter numbers flagged `legacy_ingest` (active ones)."""
        if self._expires > time.monotonic():
            return self._meters
        if self._loading is None:
            self._loading = asyncio.ensure_future(meters.legacy_meters(self._db))
            self._loading.add_done_callback(functools.partial(self._loaded, self._generation))
        return await asyncio.shield(self._loading)

    def _loaded(self, generation: int, task: asyncio.Task[frozenset[int]]) -> None:
        if self._loading is task:
            self._loading = None
        if task.cancelled() or task.exception() is not None or generation != self._generation:
            return
        self._meters, self._expires = task.result(), time.monotonic() + self._ttl

    def clear(self) -> None:
        """Reload on the next request."""
        self._expires = 0.0
        self._loading = None
        self._generation += 1


def credential_header(request: web.Request, name: str) -> str:
    """A header that carries a secret, stripped; Unauthorized if it holds anything but ASCII.

    Every secret the gateway issues is ASCII. aiohttp hands other bytes over as surrogate
    escapes, which cannot be hashed (encoding them raised, a 500): refuse them as a bad credential.
    """
    value = request.headers.get(name, "")
    if not value.isascii():
        raise Unauthorized(f"Invalid credentials: the {name} header holds characters that are not ASCII")
    return value.strip()


async def authenticate(cache: KeyCache, request: web.Request, role: str) -> Principal:
    """The caller's principal from `X-API-Key`; Unauthorized (401) or Forbidden (403) otherwise."""
    key = credential_header(request, API_KEY_HEADER)
    if not key:
        raise Unauthorized(f"Missing API key: send it in the {API_KEY_HEADER} header")
    principal = await cache.lookup(key)
    if principal is None:
        raise Unauthorized("Invalid or revoked API key")
    if not principal.has_role(role):
        raise Forbidden(f"API key {principal.name!r} has role {principal.role!r}; this call needs {role!r}")
    return principal
