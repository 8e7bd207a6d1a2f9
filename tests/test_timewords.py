"""Durations and moments in words (wpclone.timewords): --ttl as people type it, times as they read them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from wpclone.errors import BadRequest
from wpclone.models import TTL_MAX_MINUTES, TTL_MIN_MINUTES
from wpclone.timewords import check_ttl, duration_text, moment_words, parse_since, parse_ttl, relative

NOW = datetime(2026, 12, 6, 6, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("90m", 90),
        ("90", 90),
        ("2h", 120),
        ("2H", 120),
        (" 3d ", 4320),
        ("3 days", 4320),
        ("1 hour", 60),
        ("45min", 45),
        ("10m", TTL_MIN_MINUTES),
        ("7d", TTL_MAX_MINUTES),
        ("168h", TTL_MAX_MINUTES),
    ],
)
def test_parse_ttl_reads_minutes_hours_and_days(text: str, minutes: int) -> None:
    assert parse_ttl(text) == minutes


@pytest.mark.parametrize("text", ["", "h", "2w", "1.5h", "-5m", "2h30m", "soon", "1e3"])
def test_parse_ttl_refuses_what_is_not_a_duration_with_the_bounds(text: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_ttl(text)
    assert "is not a time to live" in str(caught.value)
    assert "at least 10m and at most 7d (10-10080 minutes), e.g. 90m, 2h or 3d" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "shown"), [("8d", "8d"), ("9m", "9m"), ("10081", "10081m"), ("169h", "169h")]
)
def test_out_of_bounds_is_refused_never_clamped(text: str, shown: str) -> None:
    with pytest.raises(
        BadRequest, match=rf"^a time to live of {shown} is out of bounds: it must be at least"
    ):
        parse_ttl(text)
    with pytest.raises(BadRequest, match="at most 7d"):
        check_ttl(TTL_MAX_MINUTES + 1)
    assert check_ttl(TTL_MAX_MINUTES) == TTL_MAX_MINUTES


def test_duration_text_uses_the_largest_whole_unit() -> None:
    assert [duration_text(m) for m in (10, 60, 90, 120, 1440, 10080, 0)] == [
        "10m",
        "1h",
        "90m",
        "2h",
        "1d",
        "7d",
        "0m",
    ]


@pytest.mark.parametrize(
    ("delta", "words"),
    [
        (timedelta(seconds=30), "now"),
        (timedelta(seconds=-59), "now"),
        (timedelta(minutes=5, seconds=59), "in 5 min"),
        (timedelta(hours=1, minutes=20), "in 1 h 20 min"),
        (timedelta(hours=2), "in 2 h"),
        (timedelta(days=1, hours=4, minutes=10), "in 1 day 4 h"),
        (timedelta(days=7), "in 7 days"),
        (-timedelta(days=3, hours=5), "3 days ago"),
        (-timedelta(minutes=45), "45 min ago"),
        (-timedelta(hours=23, minutes=59), "23 h 59 min ago"),
    ],
)
def test_relative_says_how_far_from_now(delta: timedelta, words: str) -> None:
    assert relative(NOW + delta, NOW) == words


def test_moment_words_adds_the_absolute_utc_time() -> None:
    berlin = (NOW + timedelta(hours=1, minutes=20)).astimezone(timezone(timedelta(hours=1)))  # shown in UTC
    assert moment_words(berlin, NOW) == "in 1 h 20 min (2026-12-06 07:20 UTC)"
    assert moment_words(None, NOW) == "-"


def test_since_is_a_span_ago_or_an_iso_time() -> None:
    now = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
    assert parse_since("90m", now) == datetime(2026, 12, 6, 6, 30, tzinfo=UTC)
    assert parse_since("2h", now) == datetime(2026, 12, 6, 6, 0, tzinfo=UTC)
    assert parse_since("3 days", now) == datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    assert parse_since("2026-12-06T07:15", now) == datetime(2026, 12, 6, 7, 15, tzinfo=UTC)
    assert parse_since("2026-12-06T09:15+02:00", now) == datetime(2026, 12, 6, 7, 15, tzinfo=UTC)


@pytest.mark.parametrize("text", ["yesterday", "90", "2 weeks", ""])
def test_a_since_that_is_neither_says_both_forms(text: str) -> None:
    with pytest.raises(BadRequest, match=r"is not a time: give how long ago \(90m, 2h, 3d\) or an ISO 8601"):
        parse_since(text)
