"""Deadlines: one calendar month (clamped at month ends), day rules, the extension cap and notice.

Pure functions, so every case is a table row: dates in, dates or messages out.
"""

from __future__ import annotations

from datetime import date

import pytest

from reconciler.desired.deadlines import (
    add_months,
    base_due,
    days_left,
    due_date,
    extension_problems,
    max_extended_due,
)
from reconciler.desired.model import Extension

D = date.fromisoformat


def check_extension(received: date, deadline_days: int | None, ext: Extension) -> list[str]:
    """Every way `ext` breaks the extension rule, as messages; empty when it is lawful."""
    return [p.message for p in extension_problems(received, deadline_days, ext)]


@pytest.mark.parametrize(
    ("received", "due"),
    [
        ("2026-11-20", "2026-12-20"),
        ("2026-12-15", "2027-01-15"),  # across the year end
        ("2026-01-31", "2026-02-28"),  # clamped to the shorter month
        ("2028-01-31", "2028-02-29"),  # leap year
        ("2028-01-29", "2028-02-29"),
        ("2026-01-29", "2026-02-28"),
        ("2026-03-31", "2026-04-30"),
        ("2026-02-28", "2026-03-28"),  # not "end of month to end of month"
        ("2028-02-29", "2028-03-29"),
        ("2026-12-31", "2027-01-31"),
    ],
)
def test_monthly_rule_is_the_same_day_next_month_clamped(received: str, due: str) -> None:
    assert base_due(D(received), None) == D(due)


@pytest.mark.parametrize(
    ("received", "days", "due"),
    [
        ("2026-11-20", 45, "2027-01-04"),
        ("2026-01-31", 30, "2026-03-02"),
        ("2028-02-01", 30, "2028-03-02"),  # counts Feb 29
        ("2026-11-20", 1, "2026-11-21"),
    ],
)
def test_day_rule_adds_days(received: str, days: int, due: str) -> None:
    assert base_due(D(received), days) == D(due)


def test_add_months_over_several_years() -> None:
    assert add_months(D("2026-11-30"), 3) == D("2027-02-28")
    assert add_months(D("2026-05-31"), 12) == D("2027-05-31")
    assert add_months(D("2027-05-31"), -3) == D("2027-02-28")


@pytest.mark.parametrize(
    ("received", "cap"),
    [
        ("2026-11-20", "2027-02-20"),  # due 2026-12-20, two further months
        ("2026-01-31", "2026-04-28"),  # due 2026-02-28 (clamped), two months after that
        ("2027-12-31", "2028-03-31"),  # due 2028-01-31
        ("2026-10-31", "2027-01-30"),  # due 2026-11-30
    ],
)
def test_monthly_cap_is_two_further_months_after_the_base_due(received: str, cap: str) -> None:
    assert max_extended_due(D(received), None) == D(cap)


@pytest.mark.parametrize(
    ("days", "cap_days"),
    [(45, 90), (30, 60), (60, 90), (90, 90), (1, 2)],
)
def test_day_cap_is_the_same_again_at_most_90_days(days: int, cap_days: int) -> None:
    received = D("2026-11-20")
    assert (max_extended_due(received, days) - received).days == cap_days


def ext(due: str, told: str = "2026-12-01") -> Extension:
    return Extension(due=D(due), reason="complex request", subject_told=D(told))


@pytest.mark.parametrize(
    ("deadline_days", "extension"),
    [
        (None, ext("2027-02-20")),  # exactly at the cap
        (None, ext("2026-12-21")),  # one day more
        (None, ext("2027-01-10", told="2026-11-20")),  # told on the day of receipt
        (None, ext("2027-01-10", told="2026-12-20")),  # told on the original due date
        (45, ext("2027-02-18", told="2027-01-04")),  # CCPA: 90 days after receipt
    ],
)
def test_lawful_extensions_have_no_problems(
    deadline_days: int | None, extension: Extension
) -> None:
    assert check_extension(D("2026-11-20"), deadline_days, extension) == []


def test_extension_beyond_the_cap() -> None:
    problems = extension_problems(D("2026-11-20"), None, ext("2027-02-21"))
    assert [(p.field, p.message) for p in problems] == [
        (
            "due",
            "the extended due date 2027-02-21 is after the latest allowed, 2027-02-20 "
            "(2 further months after the original due date 2026-12-20)",
        )
    ]


def test_extension_beyond_the_day_cap() -> None:
    assert check_extension(D("2026-11-20"), 45, ext("2027-02-19", told="2026-12-01")) == [
        "the extended due date 2027-02-19 is after the latest allowed, 2027-02-18 "
        "(45 more days, at most 90 days after receipt)"
    ]


@pytest.mark.parametrize("due", ["2026-12-20", "2026-12-01"])
def test_extension_must_move_the_deadline_later(due: str) -> None:
    assert check_extension(D("2026-11-20"), None, ext(due, told="2026-11-25")) == [
        f"the extended due date {due} must be after the original one, 2026-12-20"
    ]


def test_a_90_day_rule_cannot_be_extended() -> None:
    problems = check_extension(D("2026-11-20"), 90, ext("2027-02-19", told="2026-12-01"))
    assert problems == [
        "the extended due date 2027-02-19 is after the latest allowed, 2027-02-18 "
        "(90 more days, at most 90 days after receipt)"
    ]


def test_subject_told_too_late() -> None:
    problems = extension_problems(D("2026-11-20"), None, ext("2027-01-20", told="2026-12-21"))
    assert [(p.field, p.message) for p in problems] == [
        (
            "subject_told",
            "the subject must be told of an extension within the first period, by 2026-12-20; "
            "2026-12-21 is too late",
        )
    ]


def test_subject_told_before_the_request_was_received() -> None:
    assert check_extension(D("2026-11-20"), None, ext("2027-01-20", told="2026-11-19")) == [
        "2026-11-19 is before the request was received, 2026-11-20"
    ]


def test_every_problem_at_once() -> None:
    problems = extension_problems(D("2026-11-20"), None, ext("2027-03-01", told="2027-01-01"))
    assert [p.field for p in problems] == ["due", "subject_told"]


def test_due_date_is_the_extension_when_there_is_one() -> None:
    received = D("2026-01-31")
    assert due_date(received, None, None) == D("2026-02-28")
    assert due_date(received, 45, None) == D("2026-03-17")
    assert due_date(received, None, ext("2026-04-28", told="2026-02-01")) == D("2026-04-28")


@pytest.mark.parametrize(
    ("today", "left"),
    [("2026-11-29", 21), ("2026-12-20", 0), ("2026-12-21", -1), ("2027-01-20", -31)],
)
def test_days_left_is_negative_when_overdue(today: str, left: int) -> None:
    assert days_left(D("2026-12-20"), D(today)) == left
