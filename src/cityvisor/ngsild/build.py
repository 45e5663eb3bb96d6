"""Builders of NGSI-LD attributes in normalized form (ETSI GS CIM 009, clause 4.5).

Each function returns one attribute as a plain ``dict`` ready to be put in an entity or a
merge fragment:

>>> prop(12.5, unit="CEL", at="2025-11-27T17:30:00Z")
{'type': 'Property', 'value': 12.5, 'unitCode': 'CEL', 'observedAt': '2025-11-27T17:30:00Z'}
>>> relationship("urn:ngsi-ld:StreetlightGroup:nimes:1")
{'type': 'Relationship', 'object': 'urn:ngsi-ld:StreetlightGroup:nimes:1'}

Instants (``at``, ``date_time``) are texts written as given, or ``datetime`` objects written
as UTC to the second (``2025-11-27T17:30:00Z``). Units are UN/CEFACT common codes (``CEL``,
``MTR``, ``C62``...). Sub-attributes (clause 4.5.2: properties of a property) are passed as
keyword arguments or, for names that are not Python identifiers, as a mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cityvisor.ngsild.time import format_utc_seconds

__all__ = [
    "Attribute",
    "Instant",
    "date_time",
    "geo_point",
    "geo_property",
    "instant_text",
    "observed",
    "point",
    "prop",
    "relationship",
]

#: one attribute in normalized form
Attribute = dict[str, Any]
#: an instant: an ISO 8601 UTC text written as is, or a ``datetime``
Instant = str | datetime


def instant_text(at: Instant) -> str:
    """``at`` as an NGSI-LD DateTime text: a text as is, a ``datetime`` in UTC to the second.

    >>> from datetime import UTC
    >>> instant_text(datetime(2025, 11, 27, 17, 30, tzinfo=UTC))
    '2025-11-27T17:30:00Z'
    >>> instant_text("2025-11-27T17:30:00.250Z")
    '2025-11-27T17:30:00.250Z'
    """
    return at if isinstance(at, str) else format_utc_seconds(at)


def _finish(attr: Attribute, at: Instant | None, dataset_id: str | None,
            sub: Mapping[str, Any] | None, more: Mapping[str, Any]) -> Attribute:
    if at is not None:
        attr["observedAt"] = instant_text(at)
    if dataset_id is not None:
        attr["datasetId"] = dataset_id
    if sub:
        attr.update(sub)
    if more:
        attr.update(more)
    return attr


def prop(value: Any, *, unit: str | None = None, at: Instant | None = None,
         dataset_id: str | None = None, sub: Mapping[str, Any] | None = None,
         **sub_attributes: Any) -> Attribute:
    """A Property (clause 4.5.2) with, when given, its ``unitCode``, ``observedAt``,
    ``datasetId`` and sub-attributes.

    >>> prop("on")
    {'type': 'Property', 'value': 'on'}
    >>> prop(3.2, unit="MQS", dataset_id="urn:ngsi-ld:Dataset:forecast",
    ...      leadMinutes=prop(30))  # doctest: +NORMALIZE_WHITESPACE
    {'type': 'Property', 'value': 3.2, 'unitCode': 'MQS',
     'datasetId': 'urn:ngsi-ld:Dataset:forecast',
     'leadMinutes': {'type': 'Property', 'value': 30}}
    """
    attr: Attribute = {"type": "Property", "value": value}
    if unit:
        attr["unitCode"] = unit
    return _finish(attr, at, dataset_id, sub, sub_attributes)


def observed(value: Any, at: Instant, *, unit: str | None = None) -> Attribute:
    """A Property observed at ``at``: ``prop(value, unit=unit, at=at)``.

    A fragment sent alone in a merge keeps the attribute's other members, but the unit is
    worth restating for brokers that replace the whole attribute.

    >>> observed(0.4, "2025-11-27T17:30:00Z", unit="C62")
    {'type': 'Property', 'value': 0.4, 'unitCode': 'C62', 'observedAt': '2025-11-27T17:30:00Z'}
    """
    return prop(value, unit=unit, at=at)


def date_time(at: Instant) -> Attribute:
    """A Property whose value is a DateTime (``{"@type": "DateTime", "@value": ...}``).

    >>> date_time("2025-11-27T17:30:00Z")
    {'type': 'Property', 'value': {'@type': 'DateTime', '@value': '2025-11-27T17:30:00Z'}}
    """
    return {"type": "Property", "value": {"@type": "DateTime", "@value": instant_text(at)}}


def relationship(target: str, *, at: Instant | None = None, dataset_id: str | None = None,
                 sub: Mapping[str, Any] | None = None, **sub_attributes: Any) -> Attribute:
    """A Relationship (clause 4.5.3) to the entity ``target`` (a URI).

    >>> relationship("urn:ngsi-ld:Device:1", at="2025-11-27T17:30:00Z")
    {'type': 'Relationship', 'object': 'urn:ngsi-ld:Device:1', 'observedAt': '2025-11-27T17:30:00Z'}
    """
    return _finish({"type": "Relationship", "object": target}, at, dataset_id, sub,
                   sub_attributes)


def point(lon: float, lat: float) -> dict[str, Any]:
    """A GeoJSON Point geometry (WGS 84 longitude first, as GeoJSON orders them).

    >>> point(4.36, 43.84)
    {'type': 'Point', 'coordinates': [4.36, 43.84]}
    """
    return {"type": "Point", "coordinates": [lon, lat]}


def geo_property(geometry: Mapping[str, Any], *, at: Instant | None = None) -> Attribute:
    """A GeoProperty (clause 4.5.2) whose value is a GeoJSON geometry.

    >>> geo_property({"type": "LineString", "coordinates": [[4.3, 43.8], [4.4, 43.9]]})
    {'type': 'GeoProperty', 'value': {'type': 'LineString', 'coordinates': [[4.3, 43.8], [4.4, 43.9]]}}
    """
    return _finish({"type": "GeoProperty", "value": dict(geometry)}, at, None, None, {})


def geo_point(lon: float, lat: float) -> Attribute:
    """A GeoProperty holding a Point (a ``location``).

    >>> geo_point(4.36, 43.84)
    {'type': 'GeoProperty', 'value': {'type': 'Point', 'coordinates': [4.36, 43.84]}}
    """
    return geo_property(point(lon, lat))
