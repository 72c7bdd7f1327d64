"""Report periods: calendar month, quarter, year, or custom; the scheduled job's previous month."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chalicelib.compliance.model import parse_period, previous_month
from chalicelib.errors import InvalidRequest

NOW = datetime(2026, 5, 14, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(("kind", "start", "label"), [
    ("monthly", None, "2026-05-01 to 2026-05-31"),
    ("quarterly", None, "2026-04-01 to 2026-06-30"),
    ("yearly", None, "2026-01-01 to 2026-12-31"),
    ("monthly", "2026-02-10", "2026-02-01 to 2026-02-28"),
    ("quarterly", "2025-11-02", "2025-10-01 to 2025-12-31"),
    ("MONTHLY", "2024-02-29", "2024-02-01 to 2024-02-29"),
])
def test_calendar_periods(kind: str, start: str | None, label: str) -> None:
    period = parse_period(kind, start, now=NOW)
    assert period.label == label
    assert period.as_of == min(period.end, NOW)


def test_the_current_month_is_evaluated_up_to_now() -> None:
    period = parse_period("monthly", now=NOW)
    assert period.as_of == NOW
    assert [d.isoformat() for d in period.days()][-1] == "2026-05-14" and len(period.days()) == 14


def test_custom_period_takes_dates_or_times() -> None:
    period = parse_period("custom", "2026-01-01", "2026-03-31", now=NOW)
    assert period.label == "2026-01-01 to 2026-03-31"
    assert period.end == datetime(2026, 3, 31, 23, 59, 59, 999999, tzinfo=UTC)
    precise = parse_period("custom", "2026-05-14T08:00:00Z", "2026-05-14T09:00:00Z", now=NOW)
    assert (precise.start.hour, precise.end.hour, len(precise.days())) == (8, 9, 1)


@pytest.mark.parametrize(("kind", "start", "end", "message"), [
    ("weekly", None, None, "period must be one of monthly, quarterly, yearly, custom"),
    ("custom", "2026-01-01", None, "a custom period needs start and end"),
    ("custom", "2026-03-01", "2026-01-01", "start is after end"),
    ("custom", "2024-01-01", "2026-01-01", "a period spans at most 400 days"),
    ("monthly", "2027-01-01", None, "the period has not started yet"),
    ("monthly", None, "2026-01-31", "end is only for custom periods"),
    ("custom", "yesterday", "2026-01-01", "start must be a date"),
])
def test_bad_periods_are_refused(kind: str, start: str | None, end: str | None, message: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_period(kind, start, end, now=NOW)
    assert message in raised.value.message


def test_previous_month_crosses_the_year() -> None:
    start, end = previous_month(datetime(2026, 1, 1, 3, 0, tzinfo=UTC))
    assert (start.isoformat(), end.date().isoformat()) == ("2025-12-01T00:00:00+00:00", "2025-12-31")
