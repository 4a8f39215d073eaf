"""The spec of the admin API's portal-account routes (`/api/v1/admin/users…`, meter unlink)."""

from __future__ import annotations

import functools
from typing import Any

from openapi.fields import PRINTABLE
from openapi.other_ops import (
    ADMIN_ERRORS,
    ADMIN_READ_ERRORS,
    METER_NO,
    Extend,
    Ref,
    admin_op,
    body,
    path_param,
    reply,
)
from schemas import admin as wire
from schemas import admin_replies as admin_reply

ACCOUNT = path_param(
    "account",
    {"type": "string", "minLength": 1, "maxLength": 100, "pattern": PRINTABLE},
    "A resident's meter number or a staff username",
)


def account_ops(ref: Ref, extend: Extend) -> dict[tuple[str, str], dict[str, Any]]:
    """List, create, disable, enable, reset and remove portal accounts; unlink a meter's resident."""

    op, ok = functools.partial(admin_op, ref), functools.partial(reply, ref)
    base = "/api/v1/admin"
    return {
        ("GET", f"{base}/users"): op("Portal accounts within the caller's sites", ok(admin_reply.Accounts), (401, 403)),
        ("POST", f"{base}/users"): op(
            "Create a staff account (a made-up password is in the reply when none is given)",
            ok(admin_reply.AccountCreated, 201), (*ADMIN_ERRORS, 409),
            requestBody=body(ref(wire.StaffCreate), form=False)),
        ("GET", f"{base}/users/{{account}}"): op("One account", ok(admin_reply.AccountReply), ADMIN_READ_ERRORS,
                                                 parameters=[ACCOUNT]),
        ("POST", f"{base}/users/{{account}}/disable"): op(
            "Disable an account; its sessions end", ok(admin_reply.AccountDisabled), ADMIN_READ_ERRORS,
            parameters=[ACCOUNT]),
        ("POST", f"{base}/users/{{account}}/enable"): op(
            "Enable a disabled account", ok(admin_reply.AccountEnabled), ADMIN_READ_ERRORS, parameters=[ACCOUNT]),
        ("POST", f"{base}/users/{{account}}/reset-password"): op(
            "Set a new password (made up unless given); every session ends",
            ok(admin_reply.PasswordReset), ADMIN_ERRORS, parameters=[ACCOUNT]),
        ("DELETE", f"{base}/users/{{account}}"): op(
            "Remove an account (a resident's meter can be claimed again)", ok(admin_reply.AccountRemoved),
            ADMIN_READ_ERRORS, parameters=[ACCOUNT]),
        ("POST", f"{base}/meters/{{meter_no}}/unlink"): op(
            "Remove the resident account that claimed this meter", ok(admin_reply.ResidentUnlinked),
            ADMIN_READ_ERRORS, parameters=[METER_NO]),
    }  # fmt: skip
