"""Portal passwords: the strength rule, and Argon2id hashing on a small thread pool.

Argon2 costs tens of milliseconds of CPU by design. On the event loop that stalled every
ingest packet and recharge behind each login (six login loops took `/healthz` from 2 ms to
257 ms median). argon2-cffi releases the GIL while it hashes, so a thread runs it beside the
loop; the pool has one thread fewer than the machine has cores (at least one) so logins can
never take every core from the loop; excess logins queue for a thread instead.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from storage.errors import InvalidInput

PASSWORD_MIN = 10
PASSWORD_MAX = 128  # Argon2 takes any length; this bounds the work one request can ask for
# A few passwords that pass the length rule and are still guessed first.
COMMON_PASSWORDS = frozenset(
    {"1234567890", "0123456789", "password123", "password12", "qwertyuiop", "1q2w3e4r5t", "iloveyou12", "abcdefghij"}
)

_hasher = PasswordHasher()


@functools.cache
def _pool() -> ThreadPoolExecutor:
    threads = max(1, len(os.sched_getaffinity(0)) - 1)  # the cores this process may use
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="argon2")


@functools.cache
def _dummy_hash() -> str:
    # Made on first use, not at import: hashing costs a quarter second that start-up need not pay.
    return _hasher.hash("not a password anyone has")


def check_password(password: str, *, avoid: tuple[str, ...] = ()) -> None:
    """InvalidInput (field `password`) unless the password is long enough and not an obvious one."""
    problem = None
    if len(password) < PASSWORD_MIN:
        problem = f"Use at least {PASSWORD_MIN} characters."
    elif len(password) > PASSWORD_MAX:
        problem = f"Use at most {PASSWORD_MAX} characters."
    elif password.lower() in COMMON_PASSWORDS or len(set(password)) < 4:
        problem = "This password is too easy to guess."
    elif found := next((word for word in avoid if word and word.lower() in password.lower()), None):
        # Named, not "your meter number or FIN": staff have neither, their username is avoided.
        problem = f"The password must not contain “{found}”: leave out your own login, numbers and ids."
    if problem:
        raise InvalidInput(f"weak password: {problem}", {"password": [problem]})


def generated_password() -> str:
    """A random password for a reset by staff (about 96 bits), shown once."""
    return secrets.token_urlsafe(12)


def hash_password_now(password: str) -> str:
    """The Argon2id hash to store, computed in the calling thread (CLI, tests)."""
    return _hasher.hash(password)


def _verify_now(password_hash: str | None, password: str) -> tuple[bool, bool]:
    try:
        # No account: the same work against a dummy hash, so timing does not tell who exists.
        matches = _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False, False
    return matches, matches and _hasher.check_needs_rehash(password_hash or "")


async def hash_password(password: str) -> str:
    """The Argon2id hash to store, computed on the hashing pool (never on the event loop)."""
    return await asyncio.get_running_loop().run_in_executor(_pool(), _hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> tuple[bool, bool]:
    """(matches, needs a rehash) on the hashing pool; None as the hash costs the same and fails."""
    return await asyncio.get_running_loop().run_in_executor(_pool(), _verify_now, password_hash, password)
