"""API keys: create, list, find, rotate and revoke them; only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from storage.db.engine import Database
from storage.db.models import ApiKey, Site, utcnow
from storage.errors import Conflict, InvalidInput, unknown, unknown_site

ROLES = ("read", "operate", "admin", "ingest")
ALL_SITES = "*"


def new_secret(prefix: str) -> str:
    """A random credential with 256 bits of entropy, tagged so it is recognisable in a leak."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_secret(secret: str) -> str:
    """SHA-256 hex of a credential. Secrets are random, so a fast hash is the right one."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class NewKey:
    """A created or rotated API key; `key` is shown only this once."""

    api_key: ApiKey
    key: str


async def create_key(db: Database, *, name: str, role: str, sites: list[str]) -> NewKey:
    """Create a named API key with a role and a set of sites (["*"] for all)."""
    if not name.strip():
        raise InvalidInput("key name must not be empty", {"name": ["Must not be empty."]})
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}; one of {', '.join(ROLES)}", {"role": ["Unknown role."]})
    if not sites:
        raise InvalidInput("a key needs at least one site (or '*')", {"sites": ["Must not be empty."]})
    key = new_secret("mgk")
    api_key = ApiKey(name=name, key_hash=hash_secret(key), role=role, sites=sorted(set(sites)))
    try:
        async with db.transaction() as session:
            if (await session.execute(select(ApiKey.id).where(ApiKey.name == name))).first():
                raise Conflict(f"key {name!r} already exists", {"name": ["Already exists."]})
            unknown = [s for s in api_key.sites if s != ALL_SITES and await session.get(Site, s) is None]
            if unknown:
                raise unknown_site(unknown[0], "sites")
            session.add(api_key)
    except IntegrityError:
        raise Conflict(f"key {name!r} already exists", {"name": ["Already exists."]}) from None
    return NewKey(api_key=api_key, key=key)


async def list_keys(db: Database) -> list[ApiKey]:
    """Every API key, revoked ones included, oldest first."""
    async with db.reader() as session:
        return list((await session.execute(select(ApiKey).order_by(ApiKey.id))).scalars())


async def revoke_key(db: Database, *, name: str) -> ApiKey:
    """Revoke a key by name; it stops working at once. Revoking twice is a Conflict."""
    async with db.transaction() as session:
        api_key = (await session.execute(select(ApiKey).where(ApiKey.name == name))).scalar_one_or_none()
        if api_key is None:
            raise unknown("key", name, field="name")
        if api_key.revoked_at is not None:
            raise Conflict(f"key {name!r} is already revoked", {"name": ["Already revoked."]})
        api_key.revoked_at = utcnow()
    return api_key


async def rotate_key(db: Database, *, name: str) -> NewKey:
    """Give a live key a new secret; the old secret stops working at once."""
    key = new_secret("mgk")
    async with db.transaction() as session:
        api_key = (await session.execute(select(ApiKey).where(ApiKey.name == name))).scalar_one_or_none()
        if api_key is None:
            raise unknown("key", name, field="name")
        if api_key.revoked_at is not None:
            raise Conflict(f"key {name!r} is revoked; create a new one", {"name": ["Revoked."]})
        api_key.key_hash = hash_secret(key)
    return NewKey(api_key=api_key, key=key)


async def find_key(db: Database, *, key_hash: str) -> ApiKey | None:
    """The live (not revoked) key with this hash, if any."""
    async with db.reader() as session:
        result = await session.execute(
            select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))  # type: ignore[union-attr]
        )
        return result.scalar_one_or_none()


async def get_key(db: Database, *, name: str) -> ApiKey:
    """One API key by name (revoked ones too); NotFound if unknown."""
    async with db.reader() as session:
        api_key = (await session.execute(select(ApiKey).where(ApiKey.name == name))).scalar_one_or_none()
    if api_key is None:
        raise unknown("key", name, field="name")
    return api_key
