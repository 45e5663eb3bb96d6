"""UTC instants as NGSI-LD writes them (ETSI GS CIM 009, clause 4.6.3 and the DateTime format).

NGSI-LD temporal values (``observedAt``, ``createdAt``, ``DateTime`` Property values...) are
ISO 8601 date-times in UTC. This module converts between those texts and aware ``datetime``
objects (always in UTC) or POSIX epoch seconds. Every name says what it returns:

- ``utc_now() -> datetime``
- ``format_utc_seconds(datetime) -> str``: ``2025-11-27T17:30:00Z``
- ``format_utc_micros(datetime | epoch seconds) -> str``: ``2025-11-27T17:30:00.000000Z``
- ``parse_utc(str) -> datetime``, ``parse_utc_or_none(object) -> datetime | None``
- ``epoch_seconds(str) -> float``

and the parameters of temporal queries (clause 4.11, 6.3.10):

- ``normalize_time(text) -> str``: a request's date-time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``
  (or ``BadRequestData``); ``display_time`` writes such a text back without a zero fraction
- ``parse_duration(text) -> Period``: ``aggrPeriodDuration``; ``period_bounds`` and
  ``add_months`` place aggregation periods on the calendar

A date-time without an offset is taken as UTC, as the broker does. The module is pure: no I/O,
no framework.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cityvisor.ngsild.errors import BadRequestData

__all__ = [
    "MAX_PERIOD_MONTHS",
    "Period",
    "add_months",
    "as_utc",
    "display_time",
    "epoch_seconds",
    "format_utc_micros",
    "format_utc_seconds",
    "normalize_time",
    "parse_duration",
    "parse_utc",
    "parse_utc_or_none",
    "period_bounds",
    "utc_now",
]

_SECONDS = "%Y-%m-%dT%H:%M:%SZ"
_MICROS = "%Y-%m-%dT%H:%M:%S.%fZ"


def utc_now() -> datetime:
    """The current instant, an aware ``datetime`` in UTC.

    >>> utc_now().tzinfo is UTC
    True
    """
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive ``datetime`` is taken as UTC (not as local time).

    >>> as_utc(datetime(2025, 11, 27, 17, 30)).isoformat()
    '2025-11-27T17:30:00+00:00'
    >>> from datetime import timedelta, timezone
    >>> as_utc(datetime(2025, 11, 27, 18, 30, tzinfo=timezone(timedelta(hours=1)))).isoformat()
    '2025-11-27T17:30:00+00:00'
    """
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def format_utc_seconds(moment: datetime) -> str:
    """``moment`` as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC, whole seconds: the fraction is dropped).

    >>> format_utc_seconds(datetime(2025, 11, 27, 17, 30, 5, 999_999, tzinfo=UTC))
    '2025-11-27T17:30:05Z'
    """
    return as_utc(moment).strftime(_SECONDS)


def format_utc_micros(moment: datetime | float) -> str:
    """``moment`` (a ``datetime`` or POSIX epoch seconds) as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.

    Every text of this form has the same length, so text order is time order.

    >>> format_utc_micros(1_764_264_600.25)
    '2025-11-27T17:30:00.250000Z'
    >>> format_utc_micros(datetime(2025, 11, 27, 17, 30, tzinfo=UTC))
    '2025-11-27T17:30:00.000000Z'
    """
    if isinstance(moment, datetime):
        return as_utc(moment).strftime(_MICROS)
    return datetime.fromtimestamp(moment, UTC).strftime(_MICROS)


def parse_utc(text: str, *, require_offset: bool = False) -> datetime:
    """An ISO 8601 date-time (``Z`` or ``±HH:MM`` offset) as an aware ``datetime`` in UTC.

    The text must hold a date and a time. Without an offset it is taken as UTC, unless
    ``require_offset`` (for operator input, where a missing zone is more likely a mistake).
    Raises ``ValueError`` on anything else.

    >>> parse_utc("2025-11-27T18:30:00+01:00")
    datetime.datetime(2025, 11, 27, 17, 30, tzinfo=datetime.timezone.utc)
    >>> parse_utc("2025-11-27T17:30:00.5Z").isoformat()
    '2025-11-27T17:30:00.500000+00:00'
    >>> parse_utc("2025-11-27T17:30:00").isoformat()
    '2025-11-27T17:30:00+00:00'
    >>> parse_utc("2025-11-27")
    Traceback (most recent call last):
    ValueError: not an ISO 8601 date-time: '2025-11-27'
    >>> parse_utc("2025-11-27T17:30:00", require_offset=True)
    Traceback (most recent call last):
    ValueError: no time zone in '2025-11-27T17:30:00'
    """
    if "T" not in text[:11]:
        raise ValueError(f"not an ISO 8601 date-time: {text!r}")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO 8601 date-time: {text!r}") from None
    if moment.tzinfo is None and require_offset:
        raise ValueError(f"no time zone in {text!r}")
    return as_utc(moment)


def parse_utc_or_none(value: object) -> datetime | None:
    """``parse_utc(value)``, or None when ``value`` is not a date-time text (for values read
    from entities, where a missing or malformed time means "unknown").

    >>> parse_utc_or_none("2025-11-27T17:30:00Z").isoformat()
    '2025-11-27T17:30:00+00:00'
    >>> parse_utc_or_none(None) is None, parse_utc_or_none("demain") is None
    (True, True)
    """
    if not isinstance(value, str):
        return None
    try:
        return parse_utc(value)
    except ValueError:
        return None


def epoch_seconds(text: str) -> float:
    """An ISO 8601 date-time as POSIX epoch seconds (``ValueError`` if it is not one).

    >>> epoch_seconds("2025-11-27T17:30:00.25Z")
    1764264600.25
    """
    return parse_utc(text).timestamp()


# ---------------------------------------------------------------------------- temporal queries

_NORMAL = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
_DURATION = re.compile(
    r"^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
MAX_PERIOD_MONTHS = 1200
_END_OF_TIME = "9999-12-31T23:59:59.999999Z"
_TIMES: dict[str, str] = {}


def normalize_time(text: object, what: str = "date-time") -> str:
    """An ISO 8601 date-time as UTC ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (text order = time order);
    a date-time without offset is taken as UTC."""
    if isinstance(text, str) and len(text) == 27 and _NORMAL.match(text):
        return text
    cached = _TIMES.get(text) if isinstance(text, str) else None
    if cached is not None:
        return cached
    try:
        if not isinstance(text, str) or "T" not in text:
            raise ValueError
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequestData(f"{what} must be an ISO 8601 date-time, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    result = format_utc_micros(moment)
    if len(_TIMES) < 10_000:
        _TIMES[text] = result
    return result


def display_time(normal: str) -> str:
    """A normalised ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` as answers show it: a zero fraction of a
    second is dropped (``...T12:03:00Z``, the canonical form of clause 4.6.3's DateTime),
    any other is kept.

    >>> display_time("2020-08-01T12:03:00.000000Z"), display_time("2020-08-01T12:03:00.250000Z")
    ('2020-08-01T12:03:00Z', '2020-08-01T12:03:00.250000Z')
    """
    if normal.endswith(".000000Z"):
        return normal[:-8] + "Z"
    return normal


@dataclass(frozen=True)
class Period:
    """An aggregation period: fixed (``ms``), calendar months (``months``), or whole range."""

    ms: int | None = None
    months: int | None = None

    @property
    def whole(self) -> bool:
        return self.ms is None and self.months is None


def parse_duration(text: str | None) -> Period:
    """``aggrPeriodDuration``: an ISO 8601 duration. Years and months are calendar periods and
    cannot be mixed with days or times; ``PT0S`` (the default) means the whole time range."""
    if text is None:
        return Period()
    match = _DURATION.match(text)
    if match is None:
        raise BadRequestData(f"aggrPeriodDuration must be an ISO 8601 duration such as PT1H or "
                             f"P1D, got {text!r}")
    years, months, weeks, days, hours, minutes = (int(g) if g else 0 for g in match.groups()[:6])
    seconds = float(match.group(7) or 0)
    if years or months:
        if weeks or days or hours or minutes or seconds:
            raise BadRequestData(f"aggrPeriodDuration {text!r} mixes years/months with a fixed "
                                 "duration: use one or the other")
        total = years * 12 + months
        if total > MAX_PERIOD_MONTHS:
            raise BadRequestData(f"aggrPeriodDuration {text!r} is longer than 100 years")
        return Period(months=total)
    ms = round(((((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + seconds) * 1000)
    if ms > MAX_PERIOD_MONTHS * 31 * 86_400_000:
        raise BadRequestData(f"aggrPeriodDuration {text!r} is longer than 100 years")
    if ms == 0:
        return Period()
    return Period(ms=ms)


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus calendar months (the day clamped to the month's length)."""
    total = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(total, 12)
    if not 1 <= year <= 9999:
        raise OverflowError("date out of range")
    day = moment.day
    while day > 28:
        try:
            return moment.replace(year=year, month=month + 1, day=day)
        except ValueError:
            day -= 1
    return moment.replace(year=year, month=month + 1, day=day)


def period_bounds(origin: datetime, bucket: int, period: Period) -> tuple[str, str]:
    """(start, end) of aggregation period number ``bucket``; the end of time when it
    overflows the calendar."""
    try:
        if period.ms is not None:
            step_ms = period.ms
            start = origin + timedelta(milliseconds=bucket * step_ms)
            return format_utc_micros(start), _safe(lambda: start + timedelta(milliseconds=step_ms))
        months = period.months
        assert months is not None
        start = add_months(origin, bucket * months)
        return format_utc_micros(start), _safe(lambda: add_months(origin, (bucket + 1) * months))
    except (OverflowError, ValueError):
        return _END_OF_TIME, _END_OF_TIME


def _safe(compute: Callable[[], datetime]) -> str:
    try:
        return format_utc_micros(compute())
    except (OverflowError, ValueError):
        return _END_OF_TIME
