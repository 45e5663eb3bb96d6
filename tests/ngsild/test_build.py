"""Attribute builders: normalized NGSI-LD Properties, Relationships and GeoProperties."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, timedelta, timezone

from cityvisor.ngsild import build
from cityvisor.ngsild.build import (
    date_time,
    geo_point,
    geo_property,
    observed,
    point,
    prop,
    relationship,
)

AT = "2025-11-27T17:30:00Z"


def test_doctest_examples_run() -> None:
    result = doctest.testmod(build, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0


def test_prop_writes_only_the_members_given() -> None:
    assert prop(None) == {"type": "Property", "value": None}
    assert prop(0, unit="", at=None) == {"type": "Property", "value": 0}
    assert prop([1, 2], unit="MTR", at=AT, dataset_id="urn:ngsi-ld:Dataset:a") == {
        "type": "Property", "value": [1, 2], "unitCode": "MTR", "observedAt": AT,
        "datasetId": "urn:ngsi-ld:Dataset:a"}


def test_instants_may_be_datetimes_written_in_utc_to_the_second() -> None:
    paris = timezone(timedelta(hours=1))
    when = datetime(2025, 11, 27, 18, 30, 0, 999_000, tzinfo=paris)
    assert prop(1, at=when)["observedAt"] == AT
    assert date_time(when) == {"type": "Property", "value": {"@type": "DateTime", "@value": AT}}
    assert relationship("urn:x:1", at=when)["observedAt"] == AT
    assert date_time(AT) == date_time(datetime(2025, 11, 27, 17, 30, tzinfo=UTC))


def test_sub_attributes_by_keyword_or_mapping() -> None:
    peak = prop(3.2, unit="MQS", at=AT, peakTime=date_time(AT), leadMinutes=prop(30))
    assert peak["peakTime"] == date_time(AT) and peak["leadMinutes"] == prop(30)
    odd = prop(1, sub={"ex:source": relationship("urn:x:2")})
    assert odd["ex:source"] == {"type": "Relationship", "object": "urn:x:2"}


def test_observed_is_a_prop_with_its_time() -> None:
    assert observed("on", AT) == prop("on", at=AT)
    assert observed(4.0, AT, unit="WTT") == prop(4.0, unit="WTT", at=AT)


def test_relationship() -> None:
    assert relationship("urn:ngsi-ld:Device:1", dataset_id="urn:d") == {
        "type": "Relationship", "object": "urn:ngsi-ld:Device:1", "datasetId": "urn:d"}


def test_geo_builders() -> None:
    assert point(4.36, 43.84) == {"type": "Point", "coordinates": [4.36, 43.84]}
    assert geo_point(4.36, 43.84) == {"type": "GeoProperty", "value": point(4.36, 43.84)}
    area = {"type": "Polygon", "coordinates": [[[4, 43], [5, 43], [5, 44], [4, 43]]]}
    assert geo_property(area, at=AT) == {"type": "GeoProperty", "value": area, "observedAt": AT}


def test_each_call_builds_a_new_dict() -> None:
    first, second = prop(1), prop(1)
    first["value"] = 2
    assert second["value"] == 1
