"""The spec of the admin API's portal-account routes (`/api/v1/admin/users…`, meter unlink)."""

from __future__ import annotations

from typing import Any

from openapi.fields import PRINTABLE
from openapi.other_ops import (
    ADMIN_ERRORS,
    ADMIN_READ_ERRORS,
    API_KEY,
    METER_NO,
    Extend,
    Ref,
    admin_ok,
    body,
    error_responses,
    path_param,
)
from schemas import admin as wire

ACCOUNT = path_param(
    "account",
    {"type": "string", "minLength": 1, "maxLength": 100, "pattern": PRINTABLE},
    "A resident's meter number or a staff username",
)


def account_ops(ref: Ref, extend: Extend) -> dict[tuple[str, str], dict[str, Any]]:
    """List, create, disable, enable, reset and remove portal accounts; unlink a meter's resident."""

    def op(summary: str, responses: dict[str, Any], errors: tuple[int, ...], **rest: Any) -> dict[str, Any]:
        if rest.get("parameters") and 400 not in errors:
            errors = (400, *errors)
        return {
            "tags": ["admin"],
            "summary": summary,
            "security": API_KEY,
            **rest,
            "responses": {**responses, **error_responses(errors)},
        }

    account = ref(wire.AccountOut)
    password = {"type": "string", "description": "The password: shown in this reply only"}
    with_password = extend(wire.AccountOut, "AccountOutWithPassword", {"password": password})
    base = "/api/v1/admin"
    return {
        ("GET", f"{base}/users"): op(
            "Portal accounts within the caller's sites", admin_ok("Accounts", {"type": "array", "items": account}),
            (401, 403)),
        ("POST", f"{base}/users"): op(
            "Create a staff account (a made-up password is in the reply when none is given)",
            admin_ok("Account created", with_password, 201), (*ADMIN_ERRORS, 409),
            requestBody=body(ref(wire.StaffCreate), form=False)),
        ("GET", f"{base}/users/{{account}}"): op("One account", admin_ok("Account", account), ADMIN_READ_ERRORS,
                                                 parameters=[ACCOUNT]),
        ("POST", f"{base}/users/{{account}}/disable"): op(
            "Disable an account; its sessions end", admin_ok("Account disabled", account), ADMIN_READ_ERRORS,
            parameters=[ACCOUNT]),
        ("POST", f"{base}/users/{{account}}/enable"): op(
            "Enable a disabled account", admin_ok("Account enabled", account), ADMIN_READ_ERRORS,
            parameters=[ACCOUNT]),
        ("POST", f"{base}/users/{{account}}/reset-password"): op(
            "Set a new password (made up unless given); every session ends",
            admin_ok("Password reset", with_password), ADMIN_ERRORS, parameters=[ACCOUNT]),
        ("DELETE", f"{base}/users/{{account}}"): op(
            "Remove an account (a resident's meter can be claimed again)", admin_ok("Account removed", account),
            ADMIN_READ_ERRORS, parameters=[ACCOUNT]),
        ("POST", f"{base}/meters/{{meter_no}}/unlink"): op(
            "Remove the resident account that claimed this meter", admin_ok("Resident unlinked", account),
            ADMIN_READ_ERRORS, parameters=[METER_NO]),
    }  # fmt: skip
