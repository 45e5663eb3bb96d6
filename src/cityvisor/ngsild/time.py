"""UTC instants as NGSI-LD writes them (ETSI GS CIM 009, clause 4.6.3 and the DateTime format).

NGSI-LD temporal values (``observedAt``, ``createdAt``, ``DateTime`` Property values...) are
ISO 8601 date-times in UTC. This module converts between those texts and aware ``datetime``
objects (always in UTC) or POSIX epoch seconds. Every name says what it returns:

- ``utc_now() -> datetime``
- ``format_utc_seconds(datetime) -> str``: ``2025-11-27T17:30:00Z``
- ``format_utc_micros(datetime | epoch seconds) -> str``: ``2025-11-27T17:30:00.000000Z``
- ``parse_utc(str) -> datetime``, ``parse_utc_or_none(object) -> datetime | None``
- ``epoch_seconds(str) -> float``

A date-time without an offset is taken as UTC, as the broker does. The module is pure: no I/O,
no framework.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = [
    "as_utc",
    "epoch_seconds",
    "format_utc_micros",
    "format_utc_seconds",
    "parse_utc",
    "parse_utc_or_none",
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
