"""`gateway user …`: portal accounts from the command line (the admin API's `/users` calls).

An account is named as it logs in: a resident by meter number, staff by username. Passwords
are read from standard input (`--password-stdin`) or typed twice; a reset without one makes
up a password and prints it once.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gateway.settings import Settings
from schemas.fields import parse_login
from storage.clock import Clock
from storage.db.engine import Database
from storage.errors import InvalidInput
from storage.portal import accounts, portal_users
from storage.portal.accounts import AccountInfo


def account_json(info: AccountInfo) -> dict[str, Any]:
    """One account as the CLI prints it."""
    return {
        "kind": info.kind,
        "login": info.login,
        "meter_no": None if info.meter_no is None else str(info.meter_no),
        "sites": info.sites,
        "disabled": info.disabled,
        "created_at": info.created_at.isoformat(),
        "last_login_at": None if info.last_login_at is None else info.last_login_at.isoformat(),
    }


def read_password(args: argparse.Namespace) -> str:
    """The password from standard input's first line (--password-stdin), or typed twice at a terminal."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise InvalidInput("no terminal to type a password: pass it on standard input with --password-stdin")
    import getpass

    password = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != password:
        raise InvalidInput("the two passwords differ")
    return password


async def cmd_user_add(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Create a staff account for the portal's management dashboard (residents register on the web)."""
    user = await portal_users.add_staff(db, username=args.staff, password=read_password(args), sites=args.site)
    return {
        "username": user.username,
        "staff": user.is_staff,
        "sites": user.sites,
        "created_at": user.created_at.isoformat(),
    }


async def cmd_user_list(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Every portal account (staff, then residents by meter), optionally of one site only."""
    found = await accounts.list_accounts(db, only=None if args.site is None else [args.site])
    return {"users": [account_json(info) for info in found]}


async def cmd_user_disable(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Disable an account: it cannot log in, and its sessions end now."""
    return account_json(
        await accounts.set_disabled(db, login=parse_login(args.account), disabled=True, now=Clock().now())
    )


async def cmd_user_enable(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Let a disabled account log in again."""
    return account_json(
        await accounts.set_disabled(db, login=parse_login(args.account), disabled=False, now=Clock().now())
    )


async def cmd_user_remove(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """Remove an account (for a resident: unlink them from the meter, which can be claimed again)."""
    return account_json(await accounts.remove_account(db, login=parse_login(args.account)))


async def cmd_user_reset_password(args: argparse.Namespace, settings: Settings, db: Database) -> dict[str, Any]:
    """A new password (given on standard input, or made up and printed once); every session ends."""
    given = read_password(args) if args.password_stdin else None
    info, password = await accounts.reset_password(db, login=parse_login(args.account), password=given)
    result = account_json(info)
    if given is None:
        result["password"] = password
    return result


def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`gateway user add|list|disable|enable|remove|reset-password`, on the CLI's subcommands."""
    user = sub.add_parser("user", help="web portal accounts").add_subparsers(dest="user_command", required=True)
    user_add = user.add_parser("add", parents=[common], help="create a staff account for the dashboard")
    user_add.add_argument("--staff", metavar="USERNAME", required=True, help="the staff member's login name")
    user_add.add_argument("--site", required=True, action="append", help="site id it sees, repeatable; '*' for all")
    user_add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    user_add.set_defaults(func=cmd_user_add, audit="user.create")
    user_list = user.add_parser("list", parents=[common], help="list portal accounts")
    user_list.add_argument("--site", help="only accounts of this site")
    user_list.set_defaults(func=cmd_user_list)
    for name, func, what in (
        ("disable", cmd_user_disable, "disable an account (its sessions end)"),
        ("enable", cmd_user_enable, "enable a disabled account"),
        ("remove", cmd_user_remove, "remove an account (a resident's: unlink them from the meter)"),
        ("reset-password", cmd_user_reset_password, "set a new password (made up and printed unless given)"),
    ):
        p = user.add_parser(name, parents=[common], help=what)
        p.add_argument("account", help="a resident's meter number or a staff username")
        if name == "reset-password":
            p.add_argument("--password-stdin", action="store_true", help="read the new password from standard input")
        p.set_defaults(func=func, audit=f"user.{name}")
