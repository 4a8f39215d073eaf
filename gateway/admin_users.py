"""Admin API for portal accounts, under `/api/v1/admin/users`: what `gateway user` does.

An account is named in the path as it logs in: a resident by meter number, staff by username.
Scoped like keys: a key manages a resident if it covers the meter's site, and a staff account
only if it covers every site of that account (so `*` staff need a `*` key); other accounts
answer 404 as unknown ones. Passwords appear only in the reply that sets them.
"""

from __future__ import annotations

from aiohttp import web

from gateway.admin import _meter_in_scope, _path, _require_all_sites, ok
from gateway.api import authenticated, request_inputs
from gateway.app_keys import CLOCK, DB
from gateway.audit import record_change
from gateway.auth import Principal
from schemas import admin as wire
from schemas.fields import parse_login
from storage.errors import unknown
from storage.portal import accounts, portal_users
from storage.portal.accounts import AccountInfo
from storage.portal.passwords import generated_password
from storage.registry import keys

routes = web.RouteTableDef()
admin_only = authenticated("admin")


async def _account_in_scope(request: web.Request, principal: Principal) -> portal_users.Login:
    login = parse_login(_path(request, "account"))
    info = await accounts.get_account_info(request.app[DB], login=login)
    if not info.within(principal.sites):
        raise unknown("account", str(login), field="account", reason="No such account.")
    return login


def _out(info: AccountInfo) -> dict[str, object]:
    return wire.AccountOut().dump(info)


async def _audit(request: web.Request, action: str, info: AccountInfo) -> None:
    """The account change in the audit trail (an account of one site is filed under it)."""
    site_id = info.site_id
    if site_id is None and len(info.sites) == 1 and info.sites[0] != keys.ALL_SITES:
        site_id = info.sites[0]
    await record_change(request, action, site_id=site_id, target=info.login)


@routes.get("/api/v1/admin/users")
@admin_only
async def list_users(request: web.Request, principal: Principal) -> web.Response:
    """The portal accounts within this key's sites."""
    found = await accounts.list_accounts(request.app[DB], only=principal.sites)
    return ok("Accounts", wire.AccountOut(many=True).dump(found))


@routes.post("/api/v1/admin/users")
@admin_only
async def create_staff(request: web.Request, principal: Principal) -> web.Response:
    """A staff account for sites this key covers; a made-up password is in this reply only."""
    args = wire.StaffCreate().load(await request_inputs(request))
    if keys.ALL_SITES in args["sites"]:
        _require_all_sites(principal, "a staff account for every site")
    principal.check_sites(args["sites"])
    password = args["password"] or generated_password()
    await portal_users.add_staff(request.app[DB], username=args["username"], password=password, sites=args["sites"])
    info = await accounts.get_account_info(request.app[DB], login=args["username"].strip())
    data = _out(info) if args["password"] else {**_out(info), "password": password}
    await _audit(request, "user.create", info)
    return ok("Account created", data, 201)


@routes.get("/api/v1/admin/users/{account}")
@admin_only
async def get_user(request: web.Request, principal: Principal) -> web.Response:
    """One account."""
    login = await _account_in_scope(request, principal)
    return ok("Account", _out(await accounts.get_account_info(request.app[DB], login=login)))


@routes.post("/api/v1/admin/users/{account}/disable")
@admin_only
async def disable_user(request: web.Request, principal: Principal) -> web.Response:
    """Disable an account: it cannot log in, and its sessions end now."""
    login = await _account_in_scope(request, principal)
    info = await accounts.set_disabled(request.app[DB], login=login, disabled=True, now=request.app[CLOCK].now())
    await _audit(request, "user.disable", info)
    return ok("Account disabled", _out(info))


@routes.post("/api/v1/admin/users/{account}/enable")
@admin_only
async def enable_user(request: web.Request, principal: Principal) -> web.Response:
    """Let a disabled account log in again."""
    login = await _account_in_scope(request, principal)
    info = await accounts.set_disabled(request.app[DB], login=login, disabled=False, now=request.app[CLOCK].now())
    await _audit(request, "user.enable", info)
    return ok("Account enabled", _out(info))


@routes.post("/api/v1/admin/users/{account}/reset-password")
@admin_only
async def reset_password(request: web.Request, principal: Principal) -> web.Response:
    """A new password (made up unless given, in this reply only); every session of the account ends."""
    login = await _account_in_scope(request, principal)
    args = wire.PasswordReset().load(await request_inputs(request))
    info, password = await accounts.reset_password(request.app[DB], login=login, password=args["password"])
    await _audit(request, "user.reset-password", info)
    return ok("Password reset", {**_out(info), "password": password})


@routes.delete("/api/v1/admin/users/{account}")
@admin_only
async def remove_user(request: web.Request, principal: Principal) -> web.Response:
    """Remove an account; a resident's meter can then be claimed again."""
    login = await _account_in_scope(request, principal)
    info = await accounts.remove_account(request.app[DB], login=login)
    await _audit(request, "user.remove", info)
    return ok("Account removed", _out(info))


@routes.post("/api/v1/admin/meters/{meter_no}/unlink")
@admin_only
async def unlink_resident(request: web.Request, principal: Principal) -> web.Response:
    """Remove the resident account that claimed this meter (404 if none did)."""
    meter = await _meter_in_scope(request, principal)
    info = await accounts.unlink_meter(request.app[DB], meter_no=meter.meter_no)
    await _audit(request, "user.unlink", info)
    return ok("Resident unlinked", _out(info))
