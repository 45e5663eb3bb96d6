"""UTC instants: formatting and parsing of NGSI-LD DateTime texts."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityvisor.ngsild import time as ngsild_time
from cityvisor.ngsild.time import (
    as_utc,
    epoch_seconds,
    format_utc_micros,
    format_utc_seconds,
    parse_utc,
    parse_utc_or_none,
    utc_now,
)

MOMENTS = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30),
                       timezones=st.just(UTC))


def test_doctest_examples_run() -> None:
    result = doctest.testmod(ngsild_time, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0


def test_utc_now_is_aware_and_current() -> None:
    before = datetime.now(UTC)
    now = utc_now()
    assert now.tzinfo is UTC and before <= now <= datetime.now(UTC)


def test_formats_have_fixed_widths_and_say_utc() -> None:
    paris = timezone(timedelta(hours=1))
    moment = datetime(2025, 11, 27, 18, 30, 5, 123_456, tzinfo=paris)
    assert format_utc_seconds(moment) == "2025-11-27T17:30:05Z"
    assert format_utc_micros(moment) == "2025-11-27T17:30:05.123456Z"
    assert format_utc_micros(moment.timestamp()) == "2025-11-27T17:30:05.123456Z"


def test_a_naive_datetime_is_utc_not_local_time() -> None:
    naive = datetime(2025, 6, 1, 12, 0)
    assert format_utc_seconds(naive) == "2025-06-01T12:00:00Z"
    assert as_utc(naive) == datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("2025-11-27T17:30:00Z", datetime(2025, 11, 27, 17, 30, tzinfo=UTC)),
    ("2025-11-27T17:30:00.25Z", datetime(2025, 11, 27, 17, 30, 0, 250_000, tzinfo=UTC)),
    ("2025-11-27T18:30:00+01:00", datetime(2025, 11, 27, 17, 30, tzinfo=UTC)),
    ("2025-11-27T12:30:00-05:00", datetime(2025, 11, 27, 17, 30, tzinfo=UTC)),
    ("2025-11-27T17:30:00", datetime(2025, 11, 27, 17, 30, tzinfo=UTC)),
    ("2025-11-27T17:30Z", datetime(2025, 11, 27, 17, 30, tzinfo=UTC)),
])
def test_parse_utc_reads_z_offsets_and_naive_texts_as_utc(text: str, expected: datetime) -> None:
    parsed = parse_utc(text)
    assert parsed == expected and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["", "demain", "2025-11-27", "17:30:00", "2025-13-01T00:00:00Z",
                                  "2025-11-27T25:00:00Z", "2025-11-27 T17:30:00Z"])
def test_parse_utc_refuses_what_is_not_a_date_time(text: str) -> None:
    with pytest.raises(ValueError):
        parse_utc(text)
    assert parse_utc_or_none(text) is None


def test_require_offset_refuses_a_naive_text_only() -> None:
    with pytest.raises(ValueError, match="time zone"):
        parse_utc("2099-01-01T00:00:00", require_offset=True)
    assert parse_utc("2099-01-01T00:00:00Z", require_offset=True).year == 2099


@pytest.mark.parametrize("value", [None, 1_900_000_000, 12.5, ["2025-11-27T17:30:00Z"], {}])
def test_parse_utc_or_none_is_none_for_non_texts(value: object) -> None:
    assert parse_utc_or_none(value) is None


@given(MOMENTS)
def test_micros_text_round_trips(moment: datetime) -> None:
    text = format_utc_micros(moment)
    assert len(text) == 27 and parse_utc(text) == moment


@given(MOMENTS, MOMENTS)
def test_micros_text_order_is_time_order(first: datetime, second: datetime) -> None:
    assert (format_utc_micros(first) < format_utc_micros(second)) == (first < second)


@given(MOMENTS)
def test_seconds_text_round_trips_to_the_second(moment: datetime) -> None:
    assert parse_utc(format_utc_seconds(moment)) == moment.replace(microsecond=0)


def test_epoch_seconds_is_the_posix_timestamp() -> None:
    assert epoch_seconds("1970-01-01T00:00:00Z") == 0.0
    assert epoch_seconds("2025-11-27T18:30:00.5+01:00") == 1_764_264_600.5
    with pytest.raises(ValueError):
        epoch_seconds("demain")
