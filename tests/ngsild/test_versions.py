"""Tests of cityvisor.ngsild.versions: payloads amended for an earlier version (4.3.6.8)."""

from __future__ import annotations

import copy
from typing import Any

from cityvisor.ngsild.versions import amend_for_version

NORMALIZED: dict[str, Any] = {
    "id": "urn:ngsi-ld:B:1", "type": "Building",
    "category": {"type": "VocabProperty", "vocab": "office",
                 "note": {"type": "JsonProperty", "json": {"a": 1}}},
    "tags": {"type": "ListProperty", "valueList": [1, 2]},
    "name": {"type": "Property", "value": "x"},
    "owner": {"type": "Relationship", "object": "urn:ngsi-ld:P:1", "entity": {
        "id": "urn:ngsi-ld:P:1", "type": "Person",
        "role": {"type": "VocabProperty", "vocab": "chief"}}},
}


def test_normalized_before_1_8_falls_back_to_property() -> None:
    payload = copy.deepcopy(NORMALIZED)
    assert amend_for_version(payload, (1, 5), "normalized")
    assert payload["category"] == {"type": "Property", "value": "office",
                                   "note": {"type": "Property", "value": {"a": 1}}}
    assert payload["tags"] == {"type": "Property", "value": [1, 2]}
    assert payload["name"] == NORMALIZED["name"]
    assert payload["owner"]["entity"]["role"] == {"type": "Property", "value": "chief"}


def test_native_or_recent_version_changes_nothing() -> None:
    for version in ((1, 8), (1, 9)):
        payload = copy.deepcopy(NORMALIZED)
        assert not amend_for_version(payload, version, "normalized")
        assert payload == NORMALIZED


def test_concise_and_key_values() -> None:
    concise = {"id": "urn:x:1", "type": "T", "category": {"vocab": "office"}, "n": 3}
    assert amend_for_version(concise, (1, 7), "concise")
    assert concise["category"] == {"value": "office"}
    simplified = {"id": "urn:x:1", "type": "T", "category": {"vocab": "office"},
                  "doc": {"json": {"k": 1}}, "multi": {"dataset": {"@none": {"vocab": "a"}}}}
    assert amend_for_version(simplified, (1, 7), "keyValues")
    assert simplified == {"id": "urn:x:1", "type": "T", "category": "office", "doc": {"k": 1},
                          "multi": {"dataset": {"@none": "a"}}}


def test_lists_and_features() -> None:
    features = {"type": "FeatureCollection", "features": [
        {"id": "urn:x:1", "type": "Feature", "geometry": None,
         "properties": {"type": "T", "c": {"type": "VocabProperty", "vocab": "v"}}}]}
    assert amend_for_version(features, (1, 0), "normalized")
    assert features["features"][0]["properties"]["c"] == {"type": "Property", "value": "v"}
    many = [{"id": "urn:x:1", "type": "T", "c": [{"type": "VocabProperty", "vocab": "v"}]}]
    assert amend_for_version(many, (1, 0), "normalized")
    assert many[0]["c"] == [{"type": "Property", "value": "v"}]
