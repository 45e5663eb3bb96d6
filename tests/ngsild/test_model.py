"""Entity validation, expansion and compaction (clauses 4.5, 4.6, 5.2)."""

from __future__ import annotations

import pytest

from cityvisor.broker.contexts import core_context_document
from cityvisor.ngsild.context import DEFAULT_VOCAB, compile_context
from cityvisor.ngsild.errors import BadRequestData
from cityvisor.ngsild.model import Representation, compact_entity, expand_entity

TERMS = compile_context([], core_context_document()["@context"])
NOW = "2026-11-27T18:00:00.000000Z"
V = DEFAULT_VOCAB


def entity(**attrs: object) -> dict[str, object]:
    return {"id": "urn:ngsi-ld:Thing:1", "type": "Thing", **attrs}


def test_normalized_attributes_are_expanded_with_timestamps() -> None:
    stored = expand_entity(entity(
        temperature={"type": "Property", "value": 21.5, "unitCode": "CEL",
                     "observedAt": "2026-11-27T17:00:00Z",
                     "accuracy": {"type": "Property", "value": 0.1}},
        owner={"type": "Relationship", "object": "urn:ngsi-ld:Person:1"},
        location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [4.36, 43.84]}},
    ), TERMS, NOW)
    assert stored["type"] == [V + "Thing"]
    temperature = stored["attrs"][V + "temperature"][0]
    assert temperature["value"] == 21.5 and temperature["unitCode"] == "CEL"
    assert temperature["createdAt"] == NOW
    assert temperature["subs"][V + "accuracy"]["value"] == 0.1
    assert stored["attrs"]["https://uri.etsi.org/ngsi-ld/location"][0]["type"] == "GeoProperty"


def test_concise_input_is_understood() -> None:
    stored = expand_entity(entity(
        speed=12, label={"value": "x"}, owner={"object": "urn:a:b"},
        name={"languageMap": {"fr": "Arènes"}},
        location={"type": "Point", "coordinates": [4.36, 43.84]},
        compound={"type": "Tyre", "pressure": 2.1},
    ), TERMS, NOW)
    kinds = {k.removeprefix(V): v[0]["type"] for k, v in stored["attrs"].items()}
    assert kinds == {"speed": "Property", "label": "Property", "owner": "Relationship",
                     "name": "LanguageProperty",
                     "https://uri.etsi.org/ngsi-ld/location": "GeoProperty",
                     "compound": "Property"}
    assert stored["attrs"][V + "compound"][0]["value"] == {"type": "Tyre", "pressure": 2.1}


@pytest.mark.parametrize("body, message", [
    ([], "JSON object"),
    ({"type": "T"}, "no id"),
    ({"id": "urn:a:b"}, "no type"),
    ({"id": "not a uri", "type": "T"}, "URI"),
    ({"id": "urn:a:b", "type": ""}, "type"),
    (entity(a=None), "null"),
    (entity(a={"type": "Property"}), "'value'"),
    (entity(a={"type": "Relationship", "object": "nope"}), "URI"),
    (entity(a={"type": "Relationship", "value": "urn:a:b"}), "'object'"),
    (entity(location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [400, 1]}}),
     "ongitude"),
    (entity(location={"type": "Property", "value": 3}), "GeoProperty"),
    (entity(a={"type": "Property", "value": 1, "observedAt": "yesterday"}), "observedAt"),
    (entity(**{"bad name": 1}), "forbidden"),
    (entity(a=[{"type": "Property", "value": 1}, {"type": "Property", "value": 2}]), "twice"),
])
def test_bad_entities_are_rejected(body: object, message: str) -> None:
    with pytest.raises(BadRequestData, match=message):
        expand_entity(body, TERMS, NOW)


def test_multi_attribute_default_instance_first() -> None:
    stored = expand_entity(entity(a=[
        {"type": "Property", "value": 2, "datasetId": "urn:ds:2"},
        {"type": "Property", "value": 1},
    ]), TERMS, NOW)
    assert [i.get("datasetId") for i in stored["attrs"][V + "a"]] == [None, "urn:ds:2"]


def test_compaction_forms() -> None:
    stored = expand_entity(entity(
        a={"type": "Property", "value": 1, "unitCode": "CEL"}, b={"type": "Property", "value": 2},
        r={"type": "Relationship", "object": "urn:x:y"},
        location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2]}},
    ), TERMS, NOW)
    normalized = compact_entity(stored, TERMS, Representation())
    assert normalized["a"] == {"type": "Property", "value": 1, "unitCode": "CEL"}
    assert "createdAt" not in normalized
    key_values = compact_entity(stored, TERMS, Representation(form="keyValues"))
    assert key_values == {"id": "urn:ngsi-ld:Thing:1", "type": "Thing", "a": 1, "b": 2,
                          "r": "urn:x:y", "location": {"type": "Point", "coordinates": [1, 2]}}
    concise = compact_entity(stored, TERMS, Representation(form="concise"))
    assert concise["a"] == {"value": 1, "unitCode": "CEL"} and concise["b"] == 2
    assert concise["r"] == {"object": "urn:x:y"}
    assert concise["location"] == {"type": "Point", "coordinates": [1, 2]}
    with_sys = compact_entity(stored, TERMS, Representation(sys_attrs=True))
    assert with_sys["createdAt"] == NOW and with_sys["a"]["modifiedAt"] == NOW
    picked = compact_entity(stored, TERMS, Representation(pick=frozenset({"id", "a"})))
    assert picked == {"id": "urn:ngsi-ld:Thing:1", "a": normalized["a"]}
    projected = compact_entity(stored, TERMS, Representation(attrs=frozenset({V + "b"})))
    assert set(projected) == {"id", "type", "b"}


def test_an_attribute_type_that_is_not_a_text_is_bad_request_data() -> None:
    with pytest.raises(BadRequestData, match="not a text"):
        expand_entity(entity(speed={"type": ["Property"], "value": 1}), TERMS, NOW)
    # without a value member it is a concise compound value that has a "type" member
    stored = expand_entity(entity(shape={"type": ["a", "b"], "sides": 3}), TERMS, NOW)
    assert stored["attrs"][V + "shape"][0]["value"] == {"type": ["a", "b"], "sides": 3}


def test_a_vocab_property_holds_names_only() -> None:
    with pytest.raises(BadRequestData, match="vocab"):
        expand_entity(entity(kind={"type": "VocabProperty", "vocab": ["ok", 3]}), TERMS, NOW)


def test_a_multi_attribute_item_with_a_list_type_is_refused_cleanly() -> None:
    with pytest.raises(BadRequestData):
        expand_entity(entity(speed=[{"type": ["Property"], "value": 1, "datasetId": "urn:a"},
                                    {"type": "Property", "value": 2}]), TERMS, NOW)
