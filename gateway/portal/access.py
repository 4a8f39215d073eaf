"""Getting in and out of the portal: registration, the login form's handling (residents and
staff), logout, and changing one's own password, all throttled by `gateway.portal.ratelimit`.

Client addresses come from `gateway.proxies` (X-Forwarded-For only from a trusted proxy).
"""

from __future__ import annotations

from aiohttp import web

from gateway.app_keys import CLOCK, DB
from gateway.portal.ratelimit import AddressLimiter, ClaimGuesses, UnknownLogins
from gateway.portal.render import render
from gateway.portal.sessions import current_account, end_session, posted_form, start_session
from gateway.proxies import client_address
from schemas.fields import meter_number, parse_login
from storage.errors import DomainError, InvalidInput
from storage.portal import accounts, portal_users
from storage.portal.portal_users import ClaimRefused, LoginDelayed, UnknownLogin

routes = web.RouteTableDef()
ADDRESSES = web.AppKey("portal_address_limiter", AddressLimiter)
CLAIMS = web.AppKey("portal_claim_guesses", ClaimGuesses)
UNKNOWN = web.AppKey("portal_unknown_logins", UnknownLogins)
PASSWORD_PAGE = "/profile/password"


def too_many(wait: int, what: str = "attempts from your network") -> web.HTTPTooManyRequests:
    """429 with Retry-After and a page that says how long to wait."""
    when = f"{wait} second(s)" if wait < 120 else f"about {round(wait / 60)} minute(s)"
    return web.HTTPTooManyRequests(
        headers={"Retry-After": str(wait)}, text=f"Too many {what}. Please wait {when} and try again."
    )


def count_attempt(request: web.Request) -> None:
    """Count a login, registration or password change from the client's address (429 when over)."""
    wait = request.app[ADDRESSES].attempt(client_address(request), request.app[CLOCK].now())
    if wait:
        raise too_many(wait)


async def log_in(request: web.Request, *, template: str, context: dict[str, object]) -> web.StreamResponse:
    """Handle a POSTed login form (meter number or staff username, and password)."""
    form = await posted_form(request)
    login = form.get("login", "").strip()
    count_attempt(request)
    now, decoys = request.app[CLOCK].now(), request.app[UNKNOWN]
    account_login = parse_login(login)
    name = str(account_login)  # one decoy per account however it is typed (999-999-999 is 999999999)
    if wait := decoys.wait(name, now):
        raise too_many(wait, "wrong passwords for this account")
    try:
        account = await portal_users.log_in(
            request.app[DB], login=account_login, password=form.get("password", ""), now=now
        )
    except LoginDelayed as delayed:
        raise too_many(delayed.retry_after, "wrong passwords for this account") from None
    except DomainError as error:
        if isinstance(error, UnknownLogin):
            decoys.failed(name, now)
        page = {**context, "errors": error.errors, "login": login}
        return await render(request, template, page, status=400)
    await start_session(request, account)
    raise web.HTTPSeeOther("/management-dashboard/" if account.is_staff else f"/profile/{account.meter_no}")


@routes.get("/register")
async def register_form(request: web.Request) -> web.Response:
    """The form to claim a meter."""
    return await render(request, "register.html", {"errors": {}, "values": {}})


@routes.post("/register")
async def register(request: web.Request) -> web.StreamResponse:
    """Claim a meter with its number and FIN, set a password, and log in."""
    form = await posted_form(request)
    values = {"meter_no": form.get("meter_no", "").strip(), "fin_no": form.get("fin_no", "").strip()}
    meter_no = meter_number(values["meter_no"], dashes=True)
    count_attempt(request)
    now = request.app[CLOCK].now()
    guesses = request.app[CLAIMS]
    if meter_no is not None and (wait := guesses.wait(meter_no, now)):
        raise too_many(wait, "tries for this meter")
    try:
        if meter_no is None:
            raise InvalidInput("bad meter number", {"meter_no": ["Enter the meter number: digits, dashes allowed."]})
        if form.get("password", "") != form.get("password_again", ""):
            raise InvalidInput("passwords differ", {"password_again": ["The two passwords are not the same."]})
        account = await portal_users.register_resident(
            request.app[DB], meter_no=meter_no, fin_no=values["fin_no"], password=form.get("password", "")
        )
    except DomainError as error:
        if isinstance(error, ClaimRefused) and error.meter_exists and meter_no is not None:
            guesses.failed(meter_no, now)  # a wrong FIN and a claimed meter count (and read) the same
        # A form with errors is 400 (401 would need a WWW-Authenticate challenge).
        return await render(request, "register.html", {"errors": error.errors, "values": values}, status=400)
    guesses.forget(meter_no)
    await start_session(request, account)
    raise web.HTTPSeeOther(f"/profile/{account.meter_no}")


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    """End every session of the account (copied cookies included)."""
    await posted_form(request)
    await end_session(request)
    raise web.HTTPSeeOther("/")


@routes.get(PASSWORD_PAGE)
async def password_form(request: web.Request) -> web.Response:
    """The form to change one's own password."""
    if await current_account(request) is None:
        raise web.HTTPSeeOther("/profile")
    return await render(request, "password.html", {"errors": {}, "changed": False})


@routes.post(PASSWORD_PAGE)
async def change_password(request: web.Request) -> web.StreamResponse:
    """Change one's password: every other session of the account ends, this one carries on."""
    form = await posted_form(request)
    account = await current_account(request)
    if account is None:
        raise web.HTTPSeeOther("/profile")
    count_attempt(request)
    try:
        if form.get("password", "") != form.get("password_again", ""):
            raise InvalidInput("passwords differ", {"password_again": ["The two passwords are not the same."]})
        version = await accounts.change_password(
            request.app[DB],
            user_id=account.user_id,
            current=form.get("current_password", ""),
            new=form.get("password", ""),
            now=request.app[CLOCK].now(),
        )
    except LoginDelayed as delayed:
        raise too_many(delayed.retry_after, "wrong passwords for this account") from None
    except DomainError as error:
        return await render(request, "password.html", {"errors": error.errors, "changed": False}, status=400)
    await start_session(request, account, version=version)
    return await render(request, "password.html", {"errors": {}, "changed": True})
