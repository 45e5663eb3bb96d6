"""Entity validation, expansion and compaction (clauses 4.5, 4.6, 5.2)."""

from __future__ import annotations

import pytest

from cityvisor.broker.contexts import core_context_document
from cityvisor.ngsild.context import DEFAULT_VOCAB, compile_context
from cityvisor.ngsild.errors import BadRequestData
from cityvisor.ngsild.model import (
    Representation,
    compact_entity,
    entity_expiry,
    expand_entity,
    unexpired,
)

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


# ---------------------------------------------------------------- member rules (4.5, 4.6, 5.2)

PROOF_VALUE = {"type": "DataIntegrityProof", "proofValue": "z1"}


@pytest.mark.parametrize("body, message", [
    # clause 4.5.1: Core Context non-reified terms are not attribute names
    (entity(datasetId={"type": "Property", "value": 1}), "core member"),
    (entity(instanceId={"type": "Property", "value": 1}), "core member"),
    (entity(observedAt={"type": "Property", "value": "2026-01-01T00:00:00Z"}), "core member"),
    # clause 4.5.2.2: a Property carries no member of another attribute type
    (entity(a={"type": "Property", "value": 1, "object": "urn:a:b"}), "cannot carry 'object'"),
    (entity(a={"type": "Property", "value": 1, "languageMap": {"en": "x"}}), "languageMap"),
    (entity(a={"type": "Property", "value": 1, "valueList": [1]}), "valueList"),
    (entity(a={"type": "Property", "value": 1, "previousValue": 0}), "previousValue"),
    (entity(a={"type": "Property", "value": 1, "entityIdSealed": "urn:a:b"}), "ngsildproof"),
    # clause 4.5.3.2: nor a Relationship
    (entity(a={"type": "Relationship", "object": "urn:a:b", "unitCode": "MTR"}), "unitCode"),
    (entity(a={"type": "Relationship", "object": "urn:a:b", "value": 4}), "'value'"),
    (entity(a={"type": "Relationship", "object": "urn:a:b", "previousObject": "urn:a:c"}),
     "previousObject"),
    # clause 4.5.21.2: a ListProperty has no value
    (entity(a={"type": "ListProperty", "valueList": [1], "value": 3}), "'value'"),
    # clause 4.5.2.2: the proof value is an object, the sealed members texts
    (entity(ngsildproof={"type": "Property", "value": "proof"}), "W3C Data Integrity"),
    (entity(ngsildproof={"type": "Property", "value": PROOF_VALUE, "entityTypeSealed": 42}),
     "must be a string"),
    # clause 4.6.2: a type name starts with a letter; "type" is the alias of @type
    ({"id": "urn:a:b", "type": "9Vehicle"}, "not a valid name"),
    ({"id": "urn:a:b", "type": "type"}, "not a valid name"),
    # clause 4.6.3: DateTime in UTC, no offset; clause 4.7.1: no GeometryCollection
    (entity(a={"type": "Property", "value": 1, "observedAt": "2026-08-10T12:00:00+02:00"}),
     "UTC"),
    (entity(location={"type": "GeoProperty", "value": {
        "type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [1, 2]}]}}),
     "GeometryCollection"),
    (entity(location={"type": "GeoProperty", "value": "not a geometry"}), "not a GeoJSON"),
    # clause 4.6.5 / table 5.2.32-1: language maps
    (entity(a={"type": "LanguageProperty", "languageMap": {"en": ["a", 5]}}), "array of strings"),
    (entity(a={"type": "LanguageProperty", "languageMap": {"": "x"}}), "empty language tag"),
    (entity(a={"type": "LanguageProperty", "languageMap": {"@none": "urn:ngsi-ld:null"}}), "Null"),
    (entity(a={"type": "LanguageProperty", "languageMap": {"en": "x"}, "valueType": "xsd:string"}),
     "langString"),
    # clause 5.2.1: the NGSI-LD Null is never created
    (entity(a={"type": "Property", "value": "urn:ngsi-ld:null"}), "null"),
    (entity(a={"type": "Relationship", "object": "urn:ngsi-ld:null"}), "null"),
    (entity(a={"type": "Property", "value": 1,
               "sub": {"type": "Property", "value": "urn:ngsi-ld:null"}}), "null"),
    # clause 4.18: scope grammar
    (entity(scope="/a//b"), "clause 4.18"),
    (entity(scope="a-b"), "clause 4.18"),
    (entity(scope=["/ok", "/9bad"]), "clause 4.18"),
    (entity(scope="urn:ngsi-ld:null"), "clause 4.18"),
    # clause 4.22: expiresAt is a DateTime
    (entity(expiresAt="not-a-date"), "expiresAt"),
    (entity(expiresAt="2026-13-45T00:00:00Z"), "expiresAt"),
    (entity(a={"type": "Property", "value": 1, "expiresAt": "tomorrow"}), "expiresAt"),
])
def test_member_rules_are_enforced(body: object, message: str) -> None:
    with pytest.raises(BadRequestData, match=message):
        expand_entity(body, TERMS, NOW)


def test_legal_optional_members_are_kept_and_rendered() -> None:
    stored = expand_entity(entity(
        expiresAt="2100-01-01T00:00:00Z",
        a={"type": "Property", "value": 1, "valueType": "xsd:double",
           "expiresAt": "2100-01-01T00:00:00Z"},
        r={"type": "Relationship", "object": "urn:a:b", "objectType": "Parking"},
        route={"type": "ListRelationship", "objectList": ["urn:r:1", {"object": "urn:r:2"}]},
        where={"type": "GeoProperty", "value": '{"type": "Point", "coordinates": [17.1, 48.7]}'},
        name={"type": "LanguageProperty", "languageMap": {"en": ["a", "b"]},
              "valueType": "langString"},
        ngsildproof={"type": "Property", "value": PROOF_VALUE,
                     "entityIdSealed": "urn:ngsi-ld:Thing:1", "entityTypeSealed": "Thing"},
        scope=["/Madrid/Gardens/ParqueNorte", "/Çà_1"],
    ), TERMS, NOW)
    assert stored["expiresAt"] == "2100-01-01T00:00:00.000000Z"
    out = compact_entity(stored, TERMS, Representation())
    assert "expiresAt" not in out and "expiresAt" not in out["a"]
    assert out["a"]["valueType"] == "xsd:double"
    assert out["route"]["objectList"] == [{"object": "urn:r:1"}, {"object": "urn:r:2"}]
    assert out["where"]["value"] == {"type": "Point", "coordinates": [17.1, 48.7]}
    assert out["ngsildproof"]["entityIdSealed"] == "urn:ngsi-ld:Thing:1"
    assert out["ngsildproof"]["entityTypeSealed"] == "Thing"
    assert out["ngsildproof"]["value"] == PROOF_VALUE
    timed = compact_entity(stored, TERMS, Representation(sys_attrs=True))
    assert timed["expiresAt"] == "2100-01-01T00:00:00Z"
    assert timed["a"]["expiresAt"] == "2100-01-01T00:00:00Z"


def test_scoped_contexts_are_refused_in_a_user_context() -> None:
    """Clause 5.5.7: no JSON-LD Scoped Context in a user @context."""
    with pytest.raises(BadRequestData, match="scoped context"):
        compile_context([{"Vehicle": {"@id": "https://example.org/V", "@context": {}}}],
                        core_context_document()["@context"])


def test_expiry_removes_what_has_expired() -> None:
    """Clause 4.22: an entity, an attribute instance or a sub-attribute stops existing at its
    expiresAt; durable siblings stay."""
    stored = expand_entity(entity(
        a=[{"type": "Property", "value": 1},
           {"type": "Property", "value": 2, "datasetId": "urn:ds:1", "expiresAt": "2026-01-01T00:00:01Z"}],
        b={"type": "Relationship", "object": "urn:a:b", "expiresAt": "2026-01-01T00:00:02Z"},
        c={"type": "Property", "value": 3,
           "s": {"type": "Property", "value": 4, "expiresAt": "2026-01-01T00:00:03Z"}},
    ), TERMS, NOW)
    assert entity_expiry(stored) == "2026-01-01T00:00:01.000000Z"
    assert unexpired(stored, "2026-01-01T00:00:00.000000Z") == stored
    later = unexpired(stored, "2026-01-01T00:00:05.000000Z")
    assert later is not None
    assert [i["value"] for i in later["attrs"][V + "a"]] == [1]
    assert V + "b" not in later["attrs"]
    assert "subs" not in later["attrs"][V + "c"][0]
    assert entity_expiry(later) is None
    gone = expand_entity(entity(expiresAt="2026-01-01T00:00:00Z"), TERMS, NOW)
    assert unexpired(gone, "2026-01-01T00:00:00.000000Z") is None


def test_value_member_names_remain_attribute_names() -> None:
    """Clause 4.5.1 forbids the non-reified core Properties (datasetId...), not ``vocab``."""
    stored = expand_entity(entity(vocab={"type": "VocabProperty", "vocab": "stopped"}),
                           TERMS, NOW)
    assert list(stored["attrs"]) == [TERMS.expand("vocab")]
