"""Field types shared by the Factech and admin request schemas, and their errors in words.

Every field names what is wrong in words a caller can act on; the gateway turns a
`ValidationError` into a 400 naming the offending parameter.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from marshmallow import ValidationError, fields, validate

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_HOURS = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)", re.ASCII)
_LOCAL = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?", re.ASCII)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
MAX_THRESHOLDS = 10
_DIGITS = re.compile(r"\d{1,18}", re.ASCII)  # a meter number fits a signed 64-bit column; "١٢٣" is not one
# A number written with an exponent ("1e2", "1E-2"): refused for money and amounts, since
# "1e2" is not ₹100 to anyone reading a receipt and "1E-2" hides ₹0.01.
AMOUNT_MAX = Decimal("1e12")  # exclusive: money and kWh fit their Numeric columns
EXPONENT_FORM = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)[eE][+-]?\d+", re.ASCII)
# C0 and C1 control characters (NUL, CR, LF, ESC...) and lone surrogates. No id or name needs
# them; PostgreSQL cannot store NUL in text at all (it was a 500 there), and CR/LF or ESC in a
# name would forge lines in logs and terminals that show it.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(value: str) -> None:
    """Validator: refuse control characters and lone surrogates, naming the first one."""
    found = _UNPRINTABLE.search(value)
    if found:
        raise ValidationError(f"Must not contain control characters (found U+{ord(found.group()):04X}).")


class Text(fields.String):
    """A non-blank string of at most `max_length` characters, stripped of surrounding spaces."""

    def __init__(self, max_length: int = 64, **kwargs: Any) -> None:
        super().__init__(validate=validate.Length(max=max_length), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not text:
            raise ValidationError("Must not be empty.")
        printable(text)
        return text


class FreeText(fields.String):
    """An optional string of at most `max_length` characters (may be empty), without control characters."""

    def __init__(self, max_length: int, **kwargs: Any) -> None:
        super().__init__(validate=[validate.Length(max=max_length), printable], **kwargs)


MAX_METER_NO = 10**18  # exclusive: 1-18 digits fit the signed 64-bit column


def meter_number(value: object, *, dashes: bool = False) -> int | None:
    """The one meter-number rule: a whole number from 1 to 10^18 - 1, as an integer (not a
    boolean) or as 1-18 ASCII digits ("١٢٣" is not one) with spaces around; with `dashes`, as
    people type them in the portal, dashes between the digits too ("999-999-999"). None if not.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value < MAX_METER_NO else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if dashes and not text.startswith("-"):
        text = text.replace("-", "")
    if not _DIGITS.fullmatch(text) or int(text) == 0:
        return None
    return int(text)


def parse_login(text: str) -> int | str:
    """A portal login as typed: a resident's meter number (dashes allowed) or a staff username."""
    text = text.strip()
    meter_no = meter_number(text, dashes=True)
    return text if meter_no is None else meter_no


class MeterNumber(fields.Field[int]):
    """A meter number (`meter_number`): digits (as text, since Factech sends strings) or a JSON integer."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        meter_no = meter_number(value)
        if meter_no is None:
            raise ValidationError("Not a valid meter number: expected a positive whole number.")
        return meter_no

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else str(value)


# The days and local times the gateway takes: no meter posted before 1970, and a day's
# neighbours (a fortnight back, the day after) and its bounds in UTC must still be dates.
FIRST_DAY, LAST_DAY = dt.date(1970, 1, 1), dt.date(9998, 12, 31)
DAY_RANGE = f"from {FIRST_DAY} to {LAST_DAY}"


def day_from_text(text: str) -> dt.date | None:
    """The one day rule: written exactly `YYYY-MM-DD` (ISO's other spellings, week dates
    included, are refused), a real date, from FIRST_DAY to LAST_DAY. None if not."""
    if not _DAY.fullmatch(text):
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        return None
    return day if FIRST_DAY <= day <= LAST_DAY else None


class Day(fields.Date):
    """A calendar day (`day_from_text`), with spaces around allowed."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="%Y-%m-%d", **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dt.date:
        if not isinstance(value, str) or not _DAY.fullmatch(value.strip()):
            raise ValidationError("Not a valid date: expected YYYY-MM-DD.")
        day = day_from_text(value.strip())
        if day is None:
            try:
                dt.date.fromisoformat(value.strip())
            except ValueError:  # no such date (2025-02-30)
                raise self.make_error("invalid") from None
            raise ValidationError(f"Not a valid date: expected a day {DAY_RANGE}.")
        return day


def known_timezone(name: str) -> bool:
    """True if `name` is an IANA timezone (from the tzdata package, not the OS)."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
        return False
    return True


class Timezone(Text):
    """A site's IANA timezone name (`known_timezone`)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        name = super()._deserialize(value, attr, data, **kwargs)
        if not known_timezone(name):
            raise ValidationError("Unknown IANA timezone.")
        return name


class Amount(fields.Decimal):
    """A plain decimal (no exponent) with at most `places` decimals, optionally with a lower bound.

    It comes as a JSON integer, as text (query string, form, JSON string), or as JSON text the
    API's body parser kept as written because it has an exponent (`gateway.api.parse_json_object`):
    either way the digits are checked as written, so "1e2" and 1E-2 are refused, not read as
    ₹100 and ₹0.01.
    """

    default_error_messages = {
        "exponent": "Exponents are not accepted: write a plain decimal such as 100 or 100.50.",
        "range": "Out of range.",
        "places": "At most {places} decimals.",
        "minimum": "Must be at least {minimum}.",
    }

    def __init__(self, places: int = 2, minimum: Decimal | None = None, **kwargs: Any) -> None:
        super().__init__(allow_nan=False, **kwargs)
        self.max_places = places
        self.minimum = minimum

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        if isinstance(value, str | float) and EXPONENT_FORM.fullmatch(str(value).strip()):
            raise self.make_error("exponent")
        number = super()._deserialize(value, attr, data, **kwargs)
        if abs(number) >= AMOUNT_MAX:
            raise self.make_error("range")
        if number.as_tuple().exponent < -self.max_places:  # type: ignore[operator]
            raise self.make_error("places", places=self.max_places)
        if self.minimum is not None and number < self.minimum:
            raise self.make_error("minimum", minimum=self.minimum)
        return number


def amount_flag(text: str, flag: str, *, places: int = 2, minimum: Decimal | None = None) -> Decimal:
    """An amount typed on a command line (`Amount`'s rules), its errors worded with the flag
    ("--balance has more than 2 decimals"); ValidationError otherwise."""
    worded = {
        "invalid": f"{flag} is not a number",
        "special": f"{flag} is out of range",
        "range": f"{flag} is out of range",
        "places": f"{flag} has more than {{places}} decimals",
        "minimum": f"{flag} must be at least {{minimum}}",
        "exponent": f"{flag}: exponents are not accepted, write a plain decimal such as 100 or 100.50",
    }
    return Amount(places=places, minimum=minimum, error_messages=worded).deserialize(text.strip())


class EventCursor(fields.Field[tuple[int | None, dt.datetime | None]]):
    """Where a listing resumes: an event id (digits) or an ISO 8601 date-time with its zone, as
    `(id, None)` or `(None, moment)`."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> tuple[int | None, dt.datetime | None]:
        why = "Give an event id or a date-time with its zone, e.g. 2026-11-20T00:00:00Z."
        if not isinstance(value, str) or not 0 < len(value) <= 40:
            raise ValidationError(why)
        if value.isascii() and value.isdigit():
            if int(value) >= 2**63:  # event ids are signed 64-bit
                raise ValidationError(why)
            return int(value), None
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(why) from None
        if moment.tzinfo is None:
            raise ValidationError(why)
        return None, moment


class LocalDateTime(fields.Field[dt.datetime]):
    """A site-local wall-clock time `YYYY-MM-DD HH:mm:ss` (seconds optional), naive: the store
    places it in the site's timezone."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dt.datetime:
        if not isinstance(value, str) or not _LOCAL.fullmatch(value.strip()):
            raise ValidationError("Not a valid local time: expected YYYY-MM-DD HH:mm:ss.")
        try:
            moment = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValidationError("Not a valid local time: no such date or time.") from None
        if not FIRST_DAY <= moment.date() <= LAST_DAY:
            raise ValidationError(f"Not a valid local time: its day must be {DAY_RANGE}.")
        return moment

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


class NoCutHours(fields.String):
    """`HH:MM-HH:MM` local, 24-hour (may wrap midnight, e.g. 18:00-08:00), or empty for none."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not text:
            return ""
        found = _HOURS.fullmatch(text)
        if not found:
            raise ValidationError("Not valid hours: expected HH:MM-HH:MM (24-hour, e.g. 18:00-08:00) or empty.")
        if found.group(1, 2) == found.group(3, 4):
            raise ValidationError("Start and end must differ.")
        return text


class Weekdays(fields.Field[str]):
    """Weekdays as `sat,sun` (or a JSON list of names), or empty for none; normalized to Monday-first order."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, str):
            names = value.split(",") if value else []
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            names = value
        else:
            raise ValidationError("Not valid weekdays: expected names like 'sat,sun'.")
        unknown = [name for name in names if name not in WEEKDAYS]
        if unknown:
            raise ValidationError(f"Unknown weekday {unknown[0][:10]!r}: use {', '.join(WEEKDAYS)} (lower case).")
        return ",".join(day for day in WEEKDAYS if day in names)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> list[str]:
        return [day for day in (value or "").split(",") if day]


class Thresholds(fields.Field[list[str]]):
    """Alert thresholds: ₹ amounts as a list (`["200.00", "50.00", "0.00"]`) or text (`200,50,0`);
    normalized to distinct two-decimal strings, highest first."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[str]:
        if isinstance(value, str):
            items: list[Any] = value.split(",") if value else []
        elif isinstance(value, list):
            items = value
        else:
            raise ValidationError('Not valid thresholds: expected a list of amounts like ["200.00", "0.00"].')
        if len(items) > MAX_THRESHOLDS:
            raise ValidationError(f"At most {MAX_THRESHOLDS} thresholds.")
        amount = Amount()
        try:
            values = {amount.deserialize(item) for item in items}
        except ValidationError as err:
            raise ValidationError(f"Not a valid amount in the list: {' '.join(map(str, err.messages))}") from None
        return [str(v.quantize(Decimal("0.01"))) for v in sorted(values, reverse=True)]

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> list[str]:
        return list(value or [])


def describe_errors(errors: Mapping[str, Any]) -> str:
    """`{"site_id": ["Missing data for required field."]}` as "site_id: Missing data for required field."."""
    parts = []
    for name, problems in sorted(errors.items(), key=lambda item: str(item[0])):
        if isinstance(problems, Mapping):  # nested (list items): flatten to their messages
            problems = [m for sub in problems.values() for m in (sub if isinstance(sub, list) else [sub])]
        text = " ".join(str(p) for p in problems) if isinstance(problems, list) else str(problems)
        parts.append(f"{'body' if name == '_schema' else name}: {text}")
    return "; ".join(parts)
