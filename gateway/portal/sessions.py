"""Portal sessions: an encrypted, signed cookie (aiohttp-session with Fernet), a CSRF token per
session checked on every POST form, and who is logged in.

The cookie holds only the user's id and the CSRF token; the account
is read from the database on each request, so a removed account stops working at once.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from aiohttp import web
from aiohttp_session import Session, get_session, new_session
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet

from gateway.keys import DB
from gateway.portal.secret import fernet_key, secret_key
from gateway.settings import Settings
from storage import portal_users
from storage.errors import NotFound
from storage.portal_users import Account

COOKIE_NAME = "gateway_portal"
SESSION_HOURS = 8
CSRF_FIELD = "csrf_token"


def cookie_storage(settings: Settings) -> EncryptedCookieStorage:
    """Encrypted (Fernet: AES + HMAC) cookies: HttpOnly, SameSite=Lax, Secure when configured."""
    return EncryptedCookieStorage(
        Fernet(fernet_key(secret_key(settings))),
        cookie_name=COOKIE_NAME,
        max_age=SESSION_HOURS * 3600,
        httponly=True,
        samesite="Lax",
        secure=settings.cookie_secure,
    )


async def csrf_token(request: web.Request) -> str:
    """This session's CSRF token, made on first use (anonymous visitors get a session for it)."""
    session = await get_session(request)
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


async def posted_form(request: web.Request) -> dict[str, str]:
    """The POSTed form, once its CSRF token matches the session's; 403 otherwise (400 if unreadable)."""
    try:
        form = await request.post()
    except ValueError as exc:  # not UTF-8 (no browser sends that for a UTF-8 page), or multipart without a boundary
        why = "it is not valid UTF-8" if isinstance(exc, UnicodeDecodeError) else "it is malformed"
        raise web.HTTPBadRequest(text=f"This form could not be read: {why}. Reload the page and try again.") from None
    session = await get_session(request)
    expected = session.get("csrf") or ""
    given = form.get(CSRF_FIELD, "")
    if not expected or not isinstance(given, str) or not hmac.compare_digest(expected, given):
        raise web.HTTPForbidden(
            text="This form has expired or did not come from this site. Reload the page and try again."
        )
    return {name: value for name, value in form.items() if isinstance(value, str)}


async def start_session(request: web.Request, account: Account) -> None:
    """A fresh session for a user who just logged in (a new cookie and CSRF token: no fixation)."""
    session: Session = await new_session(request)
    session["uid"] = account.user_id
    session["csrf"] = secrets.token_urlsafe(32)


async def end_session(request: web.Request) -> None:
    """Log out: the cookie is cleared."""
    (await get_session(request)).invalidate()


async def current_account(request: web.Request) -> Account | None:
    """The logged-in account, or None."""
    session = await get_session(request)
    user_id: Any = session.get("uid")
    if not isinstance(user_id, int):
        return None
    try:
        return await portal_users.get_account(request.app[DB], user_id=user_id)
    except NotFound:
        session.invalidate()
        return None
