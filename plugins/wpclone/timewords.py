"""Durations and moments in words: a clone's time to live as people type it and its times as they read them.

:func:`parse_ttl` reads ``90m``, ``2h``, ``3d`` or plain minutes (the CLI's ``--ttl``), :func:`check_ttl`
holds minutes to the bounds every clone has (10 minutes to 7 days; never clamped), :func:`relative` says
when a moment is from now ("in 1 h 20 min", "3 days ago") and :func:`moment_words` adds the absolute UTC time;
:func:`parse_since` reads a moment back (``2h`` ago, or ISO 8601: the CLI's ``wpclone jobs --since``).
Pure stdlib: the CLI, the jobs API and the services use it alike.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from wpclone.errors import BadRequest
from wpclone.models import TTL_MAX_MINUTES, TTL_MIN_MINUTES

_TTL_RE = re.compile(r"(\d{1,7})\s*(m|min|mins|minutes?|h|hours?|d|days?)?")
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 24 * 60}
_DAY = 24 * 60


def duration_text(minutes: int) -> str:
    """``minutes`` in the largest unit that divides it: ``10080`` -> ``7d``, ``120`` -> ``2h``, ``90m``."""
    for unit in ("d", "h"):
        if minutes and minutes % _UNIT_MINUTES[unit] == 0:
            return f"{minutes // _UNIT_MINUTES[unit]}{unit}"
    return f"{minutes}m"


BOUNDS = (
    f"at least {duration_text(TTL_MIN_MINUTES)} and at most {duration_text(TTL_MAX_MINUTES)} "
    f"({TTL_MIN_MINUTES}-{TTL_MAX_MINUTES} minutes), e.g. 90m, 2h or 3d"
)


def check_ttl(minutes: int) -> int:
    """``minutes`` if it is within a clone's bounds, else BadRequest saying them (never clamped)."""
    if not TTL_MIN_MINUTES <= minutes <= TTL_MAX_MINUTES:
        raise BadRequest(f"a time to live of {duration_text(minutes)} is out of bounds: it must be {BOUNDS}.")
    return minutes


def parse_ttl(text: str) -> int:
    """Minutes from ``90m``, ``2h``, ``3d`` or plain minutes (``90``); BadRequest with the bounds when
    ``text`` is none of these or is out of them."""
    match = _TTL_RE.fullmatch(text.strip().lower())
    if match is None:
        raise BadRequest(f"{text.strip()!r} is not a time to live: give minutes, hours or days, {BOUNDS}.")
    number, unit = int(match.group(1)), (match.group(2) or "m")[0]
    return check_ttl(number * _UNIT_MINUTES[unit])


def _span(minutes: int) -> str:
    """A span for people: ``45 min``, ``1 h 20 min``, ``3 days``, ``1 day 4 h``."""
    days, rest = divmod(minutes, _DAY)
    hours, mins = divmod(rest, 60)
    if days:
        text = f"{days} day" + ("s" if days != 1 else "")
        return text + (f" {hours} h" if hours and days < 3 else "")
    if hours:
        return f"{hours} h" + (f" {mins} min" if mins else "")
    return f"{mins} min"


def relative(moment: datetime, now: datetime | None = None) -> str:
    """When ``moment`` is from ``now`` (default: the current time): ``in 1 h 20 min``, ``3 days ago``,
    ``now`` within the minute. Both must be timezone-aware."""
    now = now or datetime.now(UTC)
    seconds = (moment - now).total_seconds()
    minutes = int(abs(seconds) // 60)
    if minutes == 0:
        return "now"
    return f"in {_span(minutes)}" if seconds > 0 else f"{_span(minutes)} ago"


def utc_text(moment: datetime) -> str:
    """``2026-12-06 07:10 UTC``: the absolute time, to the minute."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def moment_words(moment: datetime | None, now: datetime | None = None) -> str:
    """``in 1 h 20 min (2026-12-06 07:10 UTC)``; ``-`` for no moment."""
    if moment is None:
        return "-"
    return f"{relative(moment, now)} ({utc_text(moment)})"


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """The moment ``text`` names: ``90m``, ``2h``, ``3d`` (that long before ``now``) or an ISO 8601 time
    (without an offset: UTC); BadRequest saying both forms otherwise."""
    match = _TTL_RE.fullmatch(text.strip().lower())
    if match is not None and match.group(2):
        ago = int(match.group(1)) * _UNIT_MINUTES[match.group(2)[0]]
        return (now or datetime.now(UTC)) - timedelta(minutes=ago)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadRequest(
            f"{text.strip()!r} is not a time: give how long ago (90m, 2h, 3d) or an ISO 8601 time, "
            "e.g. 2026-12-06T07:00 (UTC without an offset)."
        ) from None
    return moment.replace(tzinfo=moment.tzinfo or UTC).astimezone(UTC)
