"""The portal accounts' life cycle: list, disable, enable, remove, reset or change a password,
unlink a resident from a meter, end every session of an account.

An account is named as it logs in: a resident by meter number, staff by username. Every change
that should end the account's sessions bumps `session_version` in the same transaction, so a
copied cookie stops working on the next request, in every process. Password hashing happens
before the transaction, never inside it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db.engine import Database
from storage.db.models import Meter, PortalUser
from storage.errors import Conflict, InvalidInput, NotFound, Unauthorized, unknown
from storage.portal.passwords import check_password, generated_password, hash_password, verify_password
from storage.portal.portal_users import ALL_SITES, Login, LoginDelayed, wait_left


@dataclass(frozen=True)
class AccountInfo:
    """An account as staff see it (never its password hash)."""

    user_id: int
    kind: str  # "resident" | "staff"
    login: str  # the meter number or the username
    meter_no: int | None
    site_id: str | None  # a resident's meter's site
    sites: list[str]  # a staff account's sites
    disabled: bool
    created_at: dt.datetime
    last_login_at: dt.datetime | None

    def within(self, sites: Collection[str] | None) -> bool:
        """True if every site this account touches is among `sites` (None: every site)."""
        if sites is None or ALL_SITES in sites:
            return True
        touched = [self.site_id] if self.kind == "resident" else self.sites
        return ALL_SITES not in touched and all(site in sites for site in touched)


def _info(user: PortalUser, site_id: str | None) -> AccountInfo:
    assert user.id is not None
    return AccountInfo(
        user_id=user.id,
        kind="staff" if user.is_staff else "resident",
        login=user.username if user.is_staff else str(user.meter_no),  # type: ignore[arg-type]
        meter_no=user.meter_no,
        site_id=site_id,
        sites=list(user.sites or []) if user.is_staff else ([site_id] if site_id else []),
        disabled=user.disabled_at is not None,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
    )


def _unknown(login: Login) -> NotFound:
    return unknown("account", str(login), field="account", reason="No such account.")


async def _find(session: AsyncSession, login: Login) -> tuple[PortalUser, str | None]:
    if isinstance(login, str) and "\x00" in login:
        raise _unknown(login)
    condition = PortalUser.meter_no == login if isinstance(login, int) else PortalUser.username == login
    row = (
        await session.execute(
            select(PortalUser, Meter.site_id)
            .outerjoin(Meter, Meter.meter_no == PortalUser.meter_no)  # type: ignore[arg-type]
            .where(condition)
        )
    ).first()
    if row is None:
        raise _unknown(login)
    return row[0], row[1]


async def list_accounts(db: Database, *, only: Collection[str] | None = None) -> list[AccountInfo]:
    """Every account, staff first then residents by meter; limited to accounts within `only`."""
    async with db.reader() as session:
        rows = await session.execute(
            select(PortalUser, Meter.site_id)
            .outerjoin(Meter, Meter.meter_no == PortalUser.meter_no)  # type: ignore[arg-type]
            .order_by(PortalUser.is_staff.desc(), PortalUser.username, PortalUser.meter_no)  # type: ignore[attr-defined]
        )
        accounts = [_info(user, site_id) for user, site_id in rows.all()]
    return [a for a in accounts if a.within(only)]


async def get_account_info(db: Database, *, login: Login) -> AccountInfo:
    """One account by meter number or username; NotFound if there is none."""
    async with db.reader() as session:
        return _info(*await _find(session, login))


async def set_disabled(db: Database, *, login: Login, disabled: bool, now: dt.datetime) -> AccountInfo:
    """Disable (its sessions end at once; it cannot log in) or enable an account."""
    async with db.transaction() as session:
        user, site_id = await _find(session, login)
        if disabled and user.disabled_at is None:
            user.disabled_at = now
            user.session_version += 1
        elif not disabled:
            user.disabled_at = None
        return _info(user, site_id)


async def remove_account(db: Database, *, login: Login) -> AccountInfo:
    """Delete an account (a resident's meter can then be claimed again)."""
    async with db.transaction() as session:
        user, site_id = await _find(session, login)
        await session.delete(user)
        return _info(user, site_id)


async def unlink_meter(db: Database, *, meter_no: int) -> AccountInfo:
    """Remove the resident account that claimed this meter; NotFound if none did."""
    return await remove_account(db, login=meter_no)


async def unlink_in(session: AsyncSession, *, meter_no: int) -> bool:
    """Inside a caller's transaction: remove the meter's resident account, if any (True if one was)."""
    removed = await session.execute(
        delete(PortalUser).where(PortalUser.meter_no == meter_no, PortalUser.is_staff.is_(False))  # type: ignore[arg-type,attr-defined]
    )
    return bool(removed.rowcount)  # type: ignore[attr-defined]


async def reset_password(db: Database, *, login: Login, password: str | None = None) -> tuple[AccountInfo, str]:
    """A new password for an account (generated when not given, to be handed over once);
    every session of the account ends and its wrong-password delay is cleared."""
    async with db.reader() as session:
        user, _ = await _find(session, login)
    avoid = (user.username or "",) if user.is_staff else (str(user.meter_no),)
    password = generated_password() if password is None else password
    check_password(password, avoid=avoid)
    password_hash = await hash_password(password)
    async with db.transaction() as session:
        user, site_id = await _find(session, login)
        user.password_hash = password_hash
        user.session_version += 1
        user.failed_logins = 0
        user.last_failed_at = None
        return _info(user, site_id), password


async def change_password(db: Database, *, user_id: int, current: str, new: str, now: dt.datetime) -> int:
    """The account's own password change; the current one must be right (wrong tries count
    toward the login delay). Every session ends; returns the new session version (the caller's
    own session is carried over to it)."""
    async with db.reader() as session:
        user = await session.get(PortalUser, user_id)
    if user is None or user.disabled_at is not None:
        raise NotFound("account gone")
    seen = user.session_version
    wait = wait_left(user.failed_logins, user.last_failed_at, now)
    if wait:
        raise LoginDelayed(wait)
    matches, _ = await verify_password(user.password_hash, current)
    if not matches:
        async with db.transaction() as session:
            await session.execute(
                update(PortalUser)
                .where(PortalUser.id == user_id)  # type: ignore[arg-type]
                .values(failed_logins=PortalUser.failed_logins + 1, last_failed_at=now)
            )
        raise Unauthorized("wrong current password", {"current_password": ["This is not your current password."]})
    if new == current:
        raise InvalidInput("same password", {"password": ["Choose a password you have not used here."]})
    avoid = (user.username or "",) if user.is_staff else (str(user.meter_no),)
    check_password(new, avoid=avoid)
    password_hash = await hash_password(new)
    async with db.transaction() as session:
        user = await session.get(PortalUser, user_id)
        if user is None:
            raise NotFound("account gone")
        if user.session_version != seen:  # logged out, reset or disabled while we hashed
            raise Conflict("account changed meanwhile", {"password": ["Your account changed meanwhile: log in again."]})
        user.password_hash = password_hash
        user.session_version += 1
        return user.session_version


async def end_sessions(db: Database, *, user_id: int) -> None:
    """Log out everywhere: every cookie of this account stops working."""
    async with db.transaction() as session:
        await session.execute(
            update(PortalUser)
            .where(PortalUser.id == user_id)  # type: ignore[arg-type]
            .values(session_version=PortalUser.session_version + 1)
        )
