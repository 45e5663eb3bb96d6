"""The Prefer header (RFC 7240) and the NGSI-LD version preference (clause 6.3.6)."""

from __future__ import annotations

import pytest

from cityvisor.api.prefer import parse_prefer, version_applied, version_preference


@pytest.mark.parametrize("header", [
    "ngsi-ld=1.0", "NGSI-LD=1.0", "Ngsi-Ld=1.0", 'ngsi-ld="1.0"', "ngsi-ld=1.0;q=0.1",
    "respond-async, ngsi-ld=1.0", "respond-async,ngsi-ld = 1.0 ; x", ",, ngsi-ld=1.0 ,",
    'wait=5, x="a, ngsi-ld=1.7; b", ngsi-ld=1.0', "ngsi-ld=01.00",
])
def test_the_version_preference_in_every_rfc_7240_spelling(header: str) -> None:
    assert version_preference([header]) == "1.0"


@pytest.mark.parametrize("header", [
    "respond-async", "ngsi-ld", "ngsi-ld=", "ngsi-ld=abc", "ngsi-ld=1", "ngsi-ld=1.0 junk",
    'a="unterminated, ngsi-ld=1.0', "ngsi-ld=0.9", "ngsi-ld=2.0", "ngsi-ld=1.99",
    "x-ngsi-ld=1.0", '"ngsi-ld"=1.0', "", "ngsi-ld=1.0=2",
])
def test_no_version_is_preferred(header: str) -> None:
    assert version_preference([header]) is None


def test_first_instance_wins_across_repeated_headers() -> None:
    assert version_preference(["respond-async", "ngsi-ld=1.5", "ngsi-ld=1.2"]) == "1.5"
    assert version_preference(["ngsi-ld=1.3, NGSI-LD=1.4"]) == "1.3"


def test_values_and_parameters_are_parsed() -> None:
    found = parse_prefer(['return=minimal; Foo="a\\"b;c", wait=10, handling=lenient'])
    assert found["return"].value == "minimal"
    assert found["return"].parameters == {"foo": 'a"b;c'}
    assert found["wait"].value == "10" and found["handling"].value == "lenient"


def test_preference_applied_header() -> None:
    assert version_applied("1.5") == {"Preference-Applied": "ngsi-ld=1.5"}
    assert version_applied(None) == {}
