"""Web portal accounts: residents claim their meter with its fin_no, staff are made by staff;
logging in, with a growing delay per account after wrong passwords.

Hashing happens on `storage.portal.passwords`' thread pool and never inside a transaction: a write
lock is never held while Argon2 runs. A login that names no account still verifies a password
against a dummy hash, so the answer takes as long as for a real account and does not tell
which meters have one. The account life cycle (disable, reset, remove…) is `storage.portal.accounts`.
"""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db.engine import Database
from storage.db.models import Meter, PortalUser, Site
from storage.errors import Conflict, DomainError, InvalidInput, NotFound, Unauthorized, unknown_site
from storage.portal.passwords import check_password, hash_password, verify_password

ALL_SITES = "*"
Login = int | str  # how an account logs in: a resident by meter number, staff by username
# Wrong passwords for one account: this many cost nothing; then each try waits twice as long
# as the one before, up to MAX_DELAY. The right password always gets in once the wait is over
# (no lock an attacker can hold shut), and failures a day old are forgotten.
FREE_FAILURES = 5
MAX_DELAY = dt.timedelta(minutes=5)
FORGET_FAILURES_AFTER = dt.timedelta(days=1)


@dataclass(frozen=True)
class Account:
    """Who is logged in: a resident of one meter, or staff of some sites."""

    user_id: int
    is_staff: bool
    meter_no: int | None
    username: str | None
    sites: frozenset[str] = frozenset()
    session_version: int = 0
    disabled: bool = False

    def sees_site(self, site_id: str) -> bool:
        """True for staff whose sites include this one (residents see only their own meter)."""
        return self.is_staff and (ALL_SITES in self.sites or site_id in self.sites)

    @property
    def site_filter(self) -> frozenset[str] | None:
        """The sites to limit a staff listing to; None for every site."""
        return None if ALL_SITES in self.sites else self.sites


class LoginDelayed(DomainError):
    """Too many wrong passwords for this account just now: try again after `retry_after` seconds."""

    kind = "too_many"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "login delayed", {"password": [f"Too many wrong passwords. Wait {retry_after} second(s) and try again."]}
        )
        self.retry_after = retry_after


def to_account(user: PortalUser) -> Account:
    """The logged-in view of a stored user."""
    assert user.id is not None
    return Account(
        user.id,
        user.is_staff,
        user.meter_no,
        user.username,
        frozenset(user.sites or ()),
        user.session_version,
        user.disabled_at is not None,
    )


def failure_delay(failures: int) -> dt.timedelta:
    """How long after the last wrong password the next try must wait (the one delay rule)."""
    if failures < FREE_FAILURES:
        return dt.timedelta(0)
    return min(MAX_DELAY, dt.timedelta(seconds=2 ** min(failures - FREE_FAILURES, 16)))


def wait_left(failures: int, last_failed_at: dt.datetime | None, now: dt.datetime) -> int:
    """Whole seconds still to wait before the next try (0: go ahead)."""
    if last_failed_at is None or now - last_failed_at >= FORGET_FAILURES_AFTER:
        return 0
    left = last_failed_at + failure_delay(failures) - now
    return max(0, int(left.total_seconds()) + (1 if left.microseconds else 0))


def claim_refused() -> Unauthorized:
    """One answer for an unknown meter, a wrong FIN and a meter already claimed: no oracle."""
    return Unauthorized(
        "meter cannot be claimed",
        {
            "fin_no": [
                "This meter number and FIN do not match a meter that can be registered. If you registered "
                "before, log in instead; if someone else holds your meter, ask the society office."
            ]
        },
    )


class ClaimRefused(Unauthorized):
    """`claim_refused()`, telling the gateway (not the client) whether the meter exists, to count guesses."""

    def __init__(self, *, meter_exists: bool) -> None:
        refused = claim_refused()
        super().__init__(refused.message, refused.errors)
        self.meter_exists = meter_exists


async def register_resident(db: Database, *, meter_no: int, fin_no: str, password: str) -> Account:
    """Claim a meter: its fin_no must match (case and spaces ignored) and nobody has claimed it.

    Errors: ClaimRefused (no such active meter, wrong fin_no or already claimed: one answer),
    InvalidInput (weak password), Conflict (claimed by someone else meanwhile).
    """
    async with db.reader() as session:
        meter = await _claimable(session, meter_no, fin_no)
    check_password(password, avoid=(str(meter_no), meter.fin_no))
    password_hash = await hash_password(password)  # outside any transaction
    async with db.transaction() as session:
        await _claimable(session, meter_no, fin_no)  # still so (the FIN may have changed meanwhile)
        user = PortalUser(is_staff=False, meter_no=meter_no, password_hash=password_hash)
        session.add(user)
        try:
            await session.flush()
        except IntegrityError:  # claimed at the same moment by another request
            raise Conflict("meter already claimed", claim_refused().errors) from None
        return to_account(user)


async def _claimable(session: AsyncSession, meter_no: int, fin_no: str) -> Meter:
    meter = await session.get(Meter, meter_no)
    if meter is None or not meter.active:
        raise ClaimRefused(meter_exists=False)
    right_fin = bool(meter.fin_no) and hmac.compare_digest(_fin(meter.fin_no), _fin(fin_no))
    taken = await session.execute(select(PortalUser.id).where(PortalUser.meter_no == meter_no))
    if not right_fin or taken.first() is not None:
        raise ClaimRefused(meter_exists=True)
    return meter


def _fin(text: str) -> str:
    return "".join(text.split()).upper()


def check_username(username: str) -> str:
    """The username stripped, or InvalidInput saying what is wrong with it."""
    username = username.strip()
    if not username or len(username) > 100 or any(c.isspace() or not c.isprintable() for c in username):
        raise InvalidInput("username must be 1-100 characters without spaces", {"username": ["Invalid username."]})
    # The login form reads digits, with dashes between them, as a meter number (parse_login).
    if username.replace("-", "").isdigit():
        raise InvalidInput(
            "username must not be only digits and dashes: the login form reads that as a meter number",
            {"username": ["Must not be only digits and dashes."]},
        )
    return username


async def add_staff(db: Database, *, username: str, password: str, sites: list[str]) -> PortalUser:
    """Create a staff account seeing `sites` (["*"]: every site); Conflict if the username is taken."""
    username = check_username(username)
    check_password(password, avoid=(username,))
    if not sites:
        raise InvalidInput("a staff account needs at least one site", {"sites": ["Give a site id, or '*'."]})
    password_hash = await hash_password(password)
    async with db.transaction() as session:
        if ALL_SITES not in sites:
            known = set((await session.execute(select(Site.id).where(Site.id.in_(sites)))).scalars())  # type: ignore[attr-defined]
            unknown = [site for site in sites if site not in known]
            if unknown:
                raise unknown_site(unknown[0], "sites")
        user = PortalUser(is_staff=True, username=username, password_hash=password_hash, sites=sorted(set(sites)))
        session.add(user)
        try:
            await session.flush()
        except IntegrityError:
            raise Conflict(f"user {username!r} exists", {"username": ["Already taken."]}) from None
        return user


async def log_in(db: Database, *, login: Login, password: str, now: dt.datetime) -> Account:
    """The account for a meter number (residents) or a username (staff) and its password.

    Unauthorized with one message whatever was wrong, so the answer does not tell whether the
    account exists; LoginDelayed (before any hashing) while the account's delay runs; a
    disabled account is told so only with its right password.
    """
    user = None
    # No username holds a NUL, and PostgreSQL cannot even compare one (was a 500).
    if isinstance(login, int) or "\x00" not in login:
        async with db.reader() as session:
            if isinstance(login, int):
                query = select(PortalUser).where(PortalUser.meter_no == login)
            else:
                query = select(PortalUser).where(PortalUser.username == login)
            user = (await session.execute(query)).scalars().first()
    if user is not None:
        wait = wait_left(user.failed_logins, user.last_failed_at, now)
        if wait:
            raise LoginDelayed(wait)
    matches, needs_rehash = await verify_password(user.password_hash if user else None, password)
    if user is None:
        raise _bad_login(unknown=True)
    if not matches:
        forgotten = user.last_failed_at is None or now - user.last_failed_at >= FORGET_FAILURES_AFTER
        async with db.transaction() as session:
            failures = 1 if forgotten else PortalUser.failed_logins + 1
            await session.execute(
                update(PortalUser)
                .where(PortalUser.id == user.id)  # type: ignore[arg-type]
                .values(failed_logins=failures, last_failed_at=now)
            )
        raise _bad_login()
    if user.disabled_at is not None:
        raise Unauthorized("account disabled", {"password": ["This account is disabled. Ask the society office."]})
    new_hash = await hash_password(password) if needs_rehash else None  # parameters raised since it was set
    async with db.transaction() as session:
        values: dict[str, object] = {"last_login_at": now, "failed_logins": 0, "last_failed_at": None}
        if new_hash is not None:
            values["password_hash"] = new_hash
        await session.execute(update(PortalUser).where(PortalUser.id == user.id).values(**values))  # type: ignore[arg-type]
    return to_account(user)


class UnknownLogin(Unauthorized):
    """`_bad_login()` for a login that names no account: the gateway mimics the delays (decoys)."""


def _bad_login(*, unknown: bool = False) -> Unauthorized:
    errors = {"password": ["Wrong meter number, username or password."]}
    return UnknownLogin("login failed", errors) if unknown else Unauthorized("login failed", errors)


async def get_account(db: Database, *, user_id: int) -> Account:
    """The account with this id; NotFound if it was removed."""
    async with db.reader() as session:
        user = await session.get(PortalUser, user_id)
    if user is None:
        raise NotFound(f"no portal user {user_id}")
    return to_account(user)


async def meter_site(db: Database, *, meter_no: int) -> str | None:
    """The site of a meter, or None if there is no such meter (for staff scope checks)."""
    async with db.reader() as session:
        return (await session.execute(select(Meter.site_id).where(Meter.meter_no == meter_no))).scalar()
