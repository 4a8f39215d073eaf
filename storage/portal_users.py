"""Web portal accounts: residents claim their meter with its fin_no, staff are made from the CLI.

Passwords are hashed with Argon2id (argon2-cffi's defaults, RFC 9106's low-memory profile).
A login that names no account still verifies a password against a dummy hash, so the answer
takes as long as for a real account and does not tell which meters have one.
"""

from __future__ import annotations

import datetime as dt
import functools
import hmac
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from storage.engine import Database
from storage.errors import Conflict, InvalidInput, NotFound, Unauthorized
from storage.models import Meter, PortalUser

PASSWORD_MIN = 10
PASSWORD_MAX = 128  # Argon2 takes any length; this bounds the work one request can ask for
# A few passwords that pass the length rule and are still guessed first.
COMMON_PASSWORDS = frozenset(
    {"1234567890", "0123456789", "password123", "password12", "qwertyuiop", "1q2w3e4r5t", "iloveyou12", "abcdefghij"}
)

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    # Made on first use, not at import: hashing costs a quarter second that start-up need not pay.
    return _hasher.hash("not a password anyone has")


@dataclass(frozen=True)
class Account:
    """Who is logged in: a resident of one meter, or staff."""

    user_id: int
    is_staff: bool
    meter_no: int | None
    username: str | None


def _account(user: PortalUser) -> Account:
    assert user.id is not None
    return Account(user.id, user.is_staff, user.meter_no, user.username)


def check_password(password: str, *, avoid: tuple[str, ...] = ()) -> None:
    """InvalidInput (field `password`) unless the password is long enough and not an obvious one."""
    problem = None
    if len(password) < PASSWORD_MIN:
        problem = f"Use at least {PASSWORD_MIN} characters."
    elif len(password) > PASSWORD_MAX:
        problem = f"Use at most {PASSWORD_MAX} characters."
    elif password.lower() in COMMON_PASSWORDS or len(set(password)) < 4:
        problem = "This password is too easy to guess."
    elif any(word and word.lower() in password.lower() for word in avoid):
        problem = "Do not use your meter number or FIN in the password."
    if problem:
        raise InvalidInput(f"weak password: {problem}", {"password": [problem]})


def hash_password(password: str) -> str:
    """The Argon2id hash to store."""
    return _hasher.hash(password)


async def register_resident(db: Database, *, meter_no: int, fin_no: str, password: str) -> Account:
    """Claim a meter: its fin_no must match (case and spaces ignored) and nobody has claimed it.

    Errors: NotFound (no such active meter), Unauthorized (wrong fin_no), Conflict (already
    claimed), InvalidInput (weak password).
    """
    async with db.transaction() as session:
        meter = await session.get(Meter, meter_no)
        if meter is None or not meter.active:
            raise NotFound(f"unknown meter {meter_no}", {"meter_no": ["No meter with this number."]})
        if not meter.fin_no or not hmac.compare_digest(_fin(meter.fin_no), _fin(fin_no)):
            raise Unauthorized("fin_no does not match", {"fin_no": ["This FIN does not match the meter's records."]})
        taken = await session.execute(select(PortalUser.id).where(PortalUser.meter_no == meter_no))
        if taken.first() is not None:
            raise Conflict("meter already claimed", {"meter_no": ["This meter already has an account."]})
        check_password(password, avoid=(str(meter_no), meter.fin_no))
        user = PortalUser(is_staff=False, meter_no=meter_no, password_hash=hash_password(password))
        session.add(user)
        try:
            await session.flush()
        except IntegrityError:  # claimed at the same moment by another request
            raise Conflict("meter already claimed", {"meter_no": ["This meter already has an account."]}) from None
        return _account(user)


def _fin(text: str) -> str:
    return "".join(text.split()).upper()


async def add_staff(db: Database, *, username: str, password: str) -> PortalUser:
    """Create a staff account; Conflict if the username is taken."""
    username = username.strip()
    if not username or len(username) > 100 or any(c.isspace() for c in username):
        raise InvalidInput("username must be 1-100 characters without spaces", {"username": ["Invalid username."]})
    if username.isdigit():  # the login form tells a meter number from a username this way
        raise InvalidInput("username must not be only digits", {"username": ["Must not be only digits."]})
    check_password(password, avoid=(username,))
    async with db.transaction() as session:
        user = PortalUser(is_staff=True, username=username, password_hash=hash_password(password))
        session.add(user)
        try:
            await session.flush()
        except IntegrityError:
            raise Conflict(f"user {username!r} exists", {"username": ["Already taken."]}) from None
        return user


async def log_in(db: Database, *, login: str, password: str, now: dt.datetime) -> Account:
    """The account for a meter number (residents) or a username (staff) and its password.

    Unauthorized with one message whatever was wrong, so the answer does not tell whether
    the account exists.
    """
    login = login.strip()
    meter_no = parse_meter_no(login, strict=False)
    if "\x00" in login:  # no username holds a NUL, and PostgreSQL cannot even compare one (was a 500)
        _verify(_dummy_hash(), password)  # same work as a real account
        raise _bad_login()
    async with db.reader() as session:
        if meter_no is not None:
            query = select(PortalUser).where(PortalUser.meter_no == meter_no)
        else:
            query = select(PortalUser).where(PortalUser.username == login)
        user = (await session.execute(query)).scalars().first()
    if user is None:
        _verify(_dummy_hash(), password)  # same work as a real account
        raise _bad_login()
    if not _verify(user.password_hash, password):
        raise _bad_login()
    async with db.transaction() as session:
        await session.execute(update(PortalUser).where(PortalUser.id == user.id).values(last_login_at=now))
        if _hasher.check_needs_rehash(user.password_hash):  # parameters raised since it was set
            await session.execute(
                update(PortalUser).where(PortalUser.id == user.id).values(password_hash=hash_password(password))
            )
    return _account(user)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _bad_login() -> Unauthorized:
    return Unauthorized("login failed", {"password": ["Wrong meter number, username or password."]})


async def get_account(db: Database, *, user_id: int) -> Account:
    """The account with this id; NotFound if it was removed."""
    async with db.reader() as session:
        user = await session.get(PortalUser, user_id)
    if user is None:
        raise NotFound(f"no portal user {user_id}")
    return _account(user)


def parse_meter_no(text: str, *, strict: bool = True) -> int | None:
    """A meter number from digits, dashes allowed between them ("999-999-999" is 999999999).

    None for anything else when `strict` is False; InvalidInput when it is True.
    """
    digits = text.strip().replace("-", "")
    if digits.isascii() and digits.isdigit() and 0 < len(digits) <= 18 and not text.strip().startswith("-"):
        return int(digits)
    if strict:
        raise InvalidInput(f"not a meter number: {text!r}", {"meter_no": ["Digits only, dashes allowed."]})
    return None
