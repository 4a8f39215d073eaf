"""Validation once, at the edge: the one meter-number, login, day and amount rules of
`schemas.fields`, shared by the API's schemas, the ingest packets, the portal and the CLI."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from marshmallow import ValidationError

from schemas.fields import (
    FIRST_DAY,
    LAST_DAY,
    Amount,
    Day,
    EventCursor,
    LocalDateTime,
    MeterNumber,
    amount_flag,
    day_from_text,
    known_timezone,
    meter_number,
    parse_login,
)
from schemas.packets import Window, parse_meter_no


@pytest.mark.parametrize(
    ("value", "plain", "typed"),
    [
        ("999999999", 999999999, 999999999),
        (" 42 ", 42, 42),
        (42, 42, 42),
        ("999-999-999", None, 999999999),
        ("-42", None, None),
        ("42-", None, 42),
        ("0", None, None),
        ("000", None, None),
        (0, None, None),
        (-1, None, None),
        (True, None, None),
        ("١٢٣", None, None),  # Arabic-Indic digits: str.isdigit() says yes, a meter number is ASCII
        ("9" * 18, 10**18 - 1, 10**18 - 1),
        ("1" + "0" * 18, None, None),
        (10**18, None, None),
        ("", None, None),
        (4.0, None, None),
    ],
)
def test_one_meter_number_rule(value: object, plain: int | None, typed: int | None) -> None:
    assert meter_number(value) == plain
    assert meter_number(value, dashes=True) == typed
    if plain is None:
        with pytest.raises(ValidationError, match="Not a valid meter number"):
            MeterNumber().deserialize(value)
    else:
        assert MeterNumber().deserialize(value) == plain


def test_a_meter_number_is_text_or_an_integer_only() -> None:
    assert meter_number(None) is None and meter_number(b"5") is None


def test_a_packet_id_is_a_json_integer_meter_number() -> None:
    assert parse_meter_no(5) == 5
    with pytest.raises(ValidationError, match="send the meter number as a JSON number"):
        parse_meter_no("5")
    with pytest.raises(ValidationError, match="Must be between 1 and 999999999999999999"):
        parse_meter_no(0)
    with pytest.raises(ValidationError, match="Must be between 1 and"):
        parse_meter_no(10**18)


def test_a_login_is_a_meter_number_or_a_username() -> None:
    assert parse_login(" 999-999-999 ") == 999999999
    assert parse_login("ann") == "ann"
    assert parse_login("0") == "0"  # not a meter: looked up as a username (none has only digits)


def test_one_day_rule() -> None:
    assert day_from_text("2025-02-08") == dt.date(2025, 2, 8)
    for text in ("2025-2-8", "2025-02-30", "2025-W06-6", "0001-01-02", "1969-12-31", "9999-01-01", " 2025-02-08"):
        assert day_from_text(text) is None, text
    assert day_from_text("1970-01-01") == FIRST_DAY and day_from_text("9998-12-31") == LAST_DAY
    assert Day().deserialize(" 2025-02-08 ") == dt.date(2025, 2, 8)
    with pytest.raises(ValidationError, match=r"expected a day from 1970-01-01 to 9998-12-31\."):
        Day().deserialize("0001-01-01")
    with pytest.raises(ValidationError, match=r"^Not a valid date\.$"):
        Day().deserialize("2025-02-30")


def test_local_times_timezones_and_event_cursors_refuse_what_would_overflow() -> None:
    """Each of these was a 500 (an OverflowError converting to UTC or into SQLite, an OSError
    opening a timezone file)."""
    assert LocalDateTime().deserialize("1970-01-01 00:00") == dt.datetime(1970, 1, 1)
    for text in ("0001-01-01 00:00:00", "9999-12-31 23:59:59", "1969-12-31 23:59"):
        with pytest.raises(ValidationError, match="its day must be from 1970-01-01 to 9998-12-31"):
            LocalDateTime().deserialize(text)
    assert not known_timezone("a" * 300) and known_timezone("Asia/Kolkata")
    assert EventCursor().deserialize(str(2**63 - 1)) == (2**63 - 1, None)
    with pytest.raises(ValidationError, match="Give an event id"):
        EventCursor().deserialize(str(2**63))


def test_cli_amounts_follow_the_api_rule_in_the_flags_words() -> None:
    assert amount_flag(" 100.50 ", "--balance") == Decimal("100.50")
    cases = {
        "abc": "--balance is not a number",
        "1.234": "--balance has more than 2 decimals",
        "1e2": "--balance: exponents are not accepted",
        "nan": "--balance is out of range",
        "1000000000000": "--balance is out of range",
    }
    for text, words in cases.items():
        with pytest.raises(ValidationError) as refused:
            amount_flag(text, "--balance")
        assert str(refused.value.messages[0]).startswith(words), text
        with pytest.raises(ValidationError):
            Amount().deserialize(text)  # the API refuses the same, in its own words
    with pytest.raises(ValidationError, match="--start-grid must be at least 0"):
        amount_flag("-1", "--start-grid", places=3, minimum=Decimal(0))


def test_one_timestamp_window_for_readings_and_dg_posts() -> None:
    now = dt.datetime(2025, 2, 8, 6, 0, tzinfo=dt.UTC)
    window = Window(now, dt.timedelta(days=35))
    for stamp in (now, now + dt.timedelta(minutes=5), now - dt.timedelta(days=35)):
        assert window.holds(stamp) and window.errors(stamp) is None
    ahead = now + dt.timedelta(minutes=5, seconds=1)
    assert not window.holds(ahead)
    assert window.errors(ahead) == {
        "timestamp": ["More than 5 minutes in the future (server time 2025-02-08T06:00:00Z)."]
    }
    old = now - dt.timedelta(days=35, seconds=1)
    assert not window.holds(old)
    assert window.errors(old) == {"timestamp": ["Older than 35 days; such packets are no longer accepted."]}
