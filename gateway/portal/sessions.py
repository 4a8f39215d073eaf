"""Portal sessions: an encrypted, signed cookie (aiohttp-session with Fernet), a CSRF token per
session checked on every POST form, and who is logged in.

The cookie holds the user's id, the account's session version when it was issued and the CSRF
token. The account is read from the database on each request: a removed or disabled account,
or one whose session version moved on (logout, password change or reset), stops working at
once, in every process, whoever holds a copy of the cookie. Over HTTPS (directly, or through a
trusted proxy that says so) the cookie is `Secure` and named with the `__Host-` prefix, which
browsers accept only from a secure origin, for the whole host, never set by a sibling domain.
"""

from __future__ import annotations

import hmac
import json
import secrets
from typing import Any

from aiohttp import web
from aiohttp_session import AbstractStorage, Session, get_session, new_session
from cryptography.fernet import Fernet, InvalidToken

from gateway.api import read_form
from gateway.app_keys import DB, SETTINGS
from gateway.portal.secret import fernet_key, secret_key
from gateway.proxies import came_over_https
from gateway.settings import Settings
from storage.errors import InvalidInput, NotFound
from storage.portal import accounts, portal_users
from storage.portal.portal_users import Account

COOKIE_NAME = "gateway_portal"
SECURE_COOKIE_NAME = "__Host-" + COOKIE_NAME
SESSION_HOURS = 8
CSRF_FIELD = "csrf_token"


def secure_cookies(request: web.Request) -> bool:
    """Whether this request's cookies are Secure (and `__Host-`): HTTPS, or GATEWAY_COOKIE_SECURE."""
    return request.app[SETTINGS].cookie_secure or came_over_https(request)


def cookie_name(request: web.Request) -> str:
    """The session cookie's name for this request."""
    return SECURE_COOKIE_NAME if secure_cookies(request) else COOKIE_NAME


def unreadable_cookie(request: web.Request) -> bool:
    """True if a portal cookie holds bytes no cookie of ours has (ours are ASCII): it is refused."""
    return any(not request.cookies.get(name, "").isascii() for name in (COOKIE_NAME, SECURE_COOKIE_NAME))


class PortalCookieStorage(AbstractStorage):
    """Fernet-encrypted JSON in a cookie that is HttpOnly, SameSite=Lax, and Secure over HTTPS."""

    def __init__(self, fernet: Fernet) -> None:
        super().__init__(cookie_name=COOKIE_NAME, max_age=SESSION_HOURS * 3600, httponly=True, samesite="Lax")
        self._fernet = fernet

    async def load_session(self, request: web.Request) -> Session:
        """The session in the cookie, or a new one if there is none or it is not ours (or expired)."""
        cookie = request.cookies.get(cookie_name(request))
        if cookie is not None:
            try:
                data = json.loads(self._fernet.decrypt(cookie.encode("ascii"), ttl=self.max_age))
                return Session(None, data=data, new=False, max_age=self.max_age)
            except (InvalidToken, UnicodeError, ValueError):
                pass  # expired, forged, or from an old key: start afresh
        return Session(None, data=None, new=True, max_age=self.max_age)

    async def save_session(self, request: web.Request, response: web.StreamResponse, session: Session) -> None:
        """Write the session back, Secure and `__Host-` prefixed over HTTPS."""
        secure = secure_cookies(request)
        name = cookie_name(request)
        params = {"path": "/", "httponly": True, "samesite": "Lax", "secure": secure}
        if session.empty:
            if name in request.cookies:
                response.del_cookie(name, path="/", secure=secure, httponly=True, samesite="Lax")
            return
        value = self._fernet.encrypt(json.dumps(self._get_session_data(session)).encode()).decode("ascii")
        response.set_cookie(name, value, max_age=session.max_age, **params)  # type: ignore[arg-type]


def cookie_storage(settings: Settings) -> PortalCookieStorage:
    """The portal's session storage for these settings (the key comes from gateway/portal/secret.py)."""
    return PortalCookieStorage(Fernet(fernet_key(secret_key(settings))))


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
        form = await read_form(request)
    except InvalidInput as exc:  # no browser sends such a body for this site's pages
        why = exc.errors["body"][0].rstrip(".")
        raise web.HTTPBadRequest(text=f"This form could not be read ({why}). Reload the page and try again.") from None
    session = await get_session(request)
    expected = session.get("csrf") or ""
    given = form.get(CSRF_FIELD, "")
    if not expected or not isinstance(given, str) or not hmac.compare_digest(expected, given):
        raise web.HTTPForbidden(
            text="This form has expired or did not come from this site. Reload the page and try again."
        )
    return {name: value for name, value in form.items() if isinstance(value, str)}


async def start_session(request: web.Request, account: Account, *, version: int | None = None) -> None:
    """A fresh session for a user who just logged in (a new cookie and CSRF token: no fixation)."""
    session: Session = await new_session(request)
    session["uid"] = account.user_id
    session["sv"] = account.session_version if version is None else version
    session["csrf"] = secrets.token_urlsafe(32)


async def end_session(request: web.Request) -> None:
    """Log out: every session of the account ends (its version moves on), and this cookie is cleared."""
    account = await current_account(request)
    if account is not None:
        await accounts.end_sessions(request.app[DB], user_id=account.user_id)
    (await get_session(request)).invalidate()


async def current_account(request: web.Request) -> Account | None:
    """The logged-in account, or None (also for a disabled account or an ended session)."""
    session = await get_session(request)
    user_id: Any = session.get("uid")
    if not isinstance(user_id, int):
        return None
    try:
        account = await portal_users.get_account(request.app[DB], user_id=user_id)
    except NotFound:
        account = None
    if account is None or account.disabled or session.get("sv") != account.session_version:
        session.invalidate()
        return None
    return account
