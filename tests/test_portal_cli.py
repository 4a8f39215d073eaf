"""`gateway user add --staff`: staff accounts for the dashboard, from the command line."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json

import pytest

from gateway.cli import main
from schemas.fields import parse_login
from storage.db.engine import Database
from storage.errors import Unauthorized
from storage.portal import portal_users


def add_user(monkeypatch: pytest.MonkeyPatch, url: str, stdin: str, *argv: str) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(["user", "add", *argv, "--site", "*", "--database-url", url])


async def can_log_in(url: str, login: str, password: str) -> bool:
    db = Database(url)
    try:
        await portal_users.log_in(db, login=parse_login(login), password=password, now=dt.datetime.now(dt.UTC))
        return True
    except Unauthorized:
        return False
    finally:
        await db.dispose()


def test_staff_account_from_standard_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    code = add_user(
        monkeypatch, database_url, "a long staff password\n", "--staff", "ops", "--password-stdin", "--json"
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["username"] == "ops" and result["staff"] is True
    assert asyncio.run(can_log_in(database_url, "ops", "a long staff password"))
    assert not asyncio.run(can_log_in(database_url, "ops", "a long staff password\n"))


@pytest.mark.parametrize(
    ("username", "password", "error"),
    [
        ("ops", "short\n", "weak password: Use at least 10 characters."),
        ("12345", "a long staff password\n", "username must not be only digits"),
        ("999-999-999", "a long staff password\n", "the login form reads that as a meter number"),
        ("two words", "a long staff password\n", "without spaces"),
    ],
)
def test_refused_staff_accounts(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    sqlite_url: str,
    username: str,
    password: str,
    error: str,
) -> None:
    assert add_user(monkeypatch, sqlite_url, password, "--staff", username, "--password-stdin") == 1
    assert error in capsys.readouterr().err


def test_taken_username_and_no_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sqlite_url: str
) -> None:
    assert add_user(monkeypatch, sqlite_url, "a long staff password\n", "--staff", "ops", "--password-stdin") == 0
    assert add_user(monkeypatch, sqlite_url, "another long password\n", "--staff", "ops", "--password-stdin") == 1
    assert "user 'ops' exists" in capsys.readouterr().err
    assert add_user(monkeypatch, sqlite_url, "", "--staff", "other") == 1  # StringIO is not a terminal
    assert "--password-stdin" in capsys.readouterr().err
