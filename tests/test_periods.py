"""Period boundaries in the site's timezone: Monday weeks, calendar months, the last two half hours."""

from __future__ import annotations

import datetime as dt

import pytest

from storage.calendar import PERIODS, check_period, window
from storage.errors import InvalidInput
from tests.daydata import at

KOLKATA = "Asia/Kolkata"
LONDON = "Europe/London"


def test_prev_hr_is_the_last_two_completed_half_hours() -> None:
    span = window("prev-hr", KOLKATA, at(KOLKATA, "2025-02-12 10:47"))
    assert span.start == at(KOLKATA, "2025-02-12 09:30")
    assert span.end == at(KOLKATA, "2025-02-12 10:30")
    assert span.intervals() == [at(KOLKATA, "2025-02-12 09:30"), at(KOLKATA, "2025-02-12 10:00")]
    assert not span.by_day


def test_prev_hr_on_a_boundary_and_across_midnight() -> None:
    # At exactly 10:30 the 10:00-10:30 interval has just ended: it is the newest one.
    assert window("prev-hr", KOLKATA, at(KOLKATA, "2025-02-12 10:30")).start == at(KOLKATA, "2025-02-12 09:30")
    span = window("prev-hr", KOLKATA, at(KOLKATA, "2025-02-12 00:10"))
    assert span.intervals() == [at(KOLKATA, "2025-02-11 23:00"), at(KOLKATA, "2025-02-11 23:30")]


def test_current_day_is_the_local_day_not_the_utc_one() -> None:
    # 00:20 on the 12th in Kolkata is still the 11th in UTC.
    span = window("current-day", KOLKATA, at(KOLKATA, "2025-02-12 00:20"))
    assert span.first_day == span.last_day == span.today == dt.date(2025, 2, 12)
    assert span.start == dt.datetime(2025, 2, 11, 18, 30, tzinfo=dt.UTC)
    assert len(span.intervals()) == 48


@pytest.mark.parametrize(
    "local_now",
    ["2025-02-10 00:00", "2025-02-12 10:47", "2025-02-16 23:59"],  # Monday, Wednesday, Sunday
)
def test_week_starts_on_monday(local_now: str) -> None:
    span = window("current-week", KOLKATA, at(KOLKATA, local_now))
    assert span.first_day == dt.date(2025, 2, 10) and span.first_day.weekday() == 0
    assert span.last_day == dt.date(2025, 2, 16)
    assert span.start == at(KOLKATA, "2025-02-10 00:00") and span.end == at(KOLKATA, "2025-02-17 00:00")
    assert len(span.days()) == 7 and span.by_day


def test_monday_early_morning_is_a_new_week_locally_while_utc_is_still_sunday() -> None:
    now = at(KOLKATA, "2025-02-17 01:00")  # Sunday 19:30 UTC
    assert now.weekday() == 6
    assert window("current-week", KOLKATA, now).first_day == dt.date(2025, 2, 17)


def test_prev_month_on_the_first_is_the_whole_previous_month() -> None:
    now = at(KOLKATA, "2025-03-01 00:05")  # still 28 February in UTC
    span = window("prev-month", KOLKATA, now)
    assert (span.first_day, span.last_day) == (dt.date(2025, 2, 1), dt.date(2025, 2, 28))
    assert span.start == at(KOLKATA, "2025-02-01 00:00") and span.end == at(KOLKATA, "2025-03-01 00:00")
    current = window("current-month", KOLKATA, now)
    assert (current.first_day, current.last_day) == (dt.date(2025, 3, 1), dt.date(2025, 3, 31))


def test_prev_month_in_january_is_last_december_and_leap_february_has_29_days() -> None:
    span = window("prev-month", KOLKATA, at(KOLKATA, "2025-01-15 12:00"))
    assert (span.first_day, span.last_day) == (dt.date(2024, 12, 1), dt.date(2024, 12, 31))
    assert window("current-month", KOLKATA, at(KOLKATA, "2024-02-10 12:00")).last_day == dt.date(2024, 2, 29)


def test_a_week_with_a_clock_change_has_its_real_length() -> None:
    span = window("current-week", LONDON, at(LONDON, "2025-03-30 12:00"))  # Sunday: clocks went forward
    assert span.end - span.start == dt.timedelta(days=7) - dt.timedelta(hours=1)


def test_unknown_period_names_the_valid_ones() -> None:
    with pytest.raises(InvalidInput) as caught:
        check_period("yesterday")
    for name in PERIODS:
        assert name in caught.value.message
