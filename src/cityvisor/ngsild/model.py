"""NGSI-LD entities: input validation and expansion, output compaction (clauses 4.5, 4.6, 5.2).

Entities are stored in the expanded form described in ``docs/internal-model.md``. ``expand_*``
functions turn a request fragment (normalized or concise, compact terms) into that form and
raise ``BadRequestData`` on anything malformed; ``compact_entity`` renders the stored form for a
caller's ``@context`` in the normalized, concise or keyValues representation.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from cityvisor.ngsild import geo
from cityvisor.ngsild.context import CORE_IRI, TermMap, is_absolute_iri
from cityvisor.ngsild.errors import BadRequestData
from cityvisor.ngsild.time import display_time, normalize_time

Entity = dict[str, Any]
Instance = dict[str, Any]

NULL = "urn:ngsi-ld:null"  # the merge-patch "delete" marker (clause 4.5.0)

#: attribute type -> the member holding its value
VALUE_MEMBER = {
    "Property": "value",
    "GeoProperty": "value",
    "Relationship": "object",
    "LanguageProperty": "languageMap",
    "ListProperty": "valueList",
    "ListRelationship": "objectList",
    "JsonProperty": "json",
    "VocabProperty": "vocab",
}
_MEMBER_TYPE = {
    "object": "Relationship",
    "languageMap": "LanguageProperty",
    "valueList": "ListProperty",
    "objectList": "ListRelationship",
    "json": "JsonProperty",
    "vocab": "VocabProperty",
}
#: members of an attribute that are not sub-attributes
META = frozenset(
    ["type", "value", "object", "languageMap", "valueList", "objectList", "json", "vocab",
     "observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt", "instanceId", "lang",
     "previousValue", "previousObject", "deletedAt", "objectType", "expiresAt", "valueType",
     "entityIdSealed", "entityTypeSealed"]
)
#: output-only members (clause 4.5.2.2 and its siblings: showChanges and inline retrieval)
OUTPUT_ONLY = frozenset(
    ["previousValue", "previousObject", "previousLanguageMap", "previousValueList",
     "previousObjectList", "previousJson", "previousVocab", "entity", "entityList"]
)
#: Core Context terms that are non-reified Properties: never attribute names (clause 4.5.1)
NON_REIFIED = (META | OUTPUT_ONLY) - {"type", *VALUE_MEMBER.values()}
#: the Property holding a W3C Data Integrity proof (clause 4.5.2.2, annex C.11)
PROOF = "ngsildproof"
PROOF_IRI = CORE_IRI + PROOF
LANG_STRING = "http://www.w3.org/1999/02/22-rdf-syntax-ns#langString"
SEALED = ("entityIdSealed", "entityTypeSealed")
ENTITY_MEMBERS = frozenset(["id", "type", "scope", "@context", "createdAt", "modifiedAt",
                            "deletedAt", "location", "observationSpace", "operationSpace",
                            "expiresAt"])
#: entity members that are not attributes
ENTITY_SKIPPED = frozenset(["id", "type", "scope", "@context", "createdAt", "modifiedAt",
                            "expiresAt"])
GEO_ATTRIBUTES = frozenset(
    [CORE_IRI + "location", CORE_IRI + "observationSpace", CORE_IRI + "operationSpace"]
)
GEOJSON_TYPES = frozenset(["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon",
                           "MultiPolygon", "GeometryCollection"])
# clause 4.6.2: characters that may not appear in a name
_BAD_NAME = re.compile(r"[\s<>\"'=;()\[\]\\\x00-\x1f\x7f]")
# clause 4.6.2: a short name starts with a letter (a compact or absolute IRI holds a ':')
_NAME_START = re.compile(r"[^\W\d_]")
# clause 4.18: Scope = "/" ScopeLevel *("/" ScopeLevel), ScopeLevel = letter *(letter/digit/_)
_SCOPE = re.compile(r"(?:/[^\W\d_]\w*)+")
# clause 4.6.3: a DateTime has no offset from UTC other than "Z"
_OFFSET = re.compile(r"[+-]\d\d(?::?\d\d)?$")


@dataclass(frozen=True)
class Representation:
    """How to render entities: form, system attributes, attribute projection."""

    form: str = "normalized"  # normalized | concise | keyValues
    sys_attrs: bool = False
    attrs: frozenset[str] | None = None  # expanded attribute IRIs to keep
    dataset_ids: frozenset[str] | None = None  # instances to keep ("@none": the default one)
    pick: frozenset[str] | None = None  # compact member names to keep (id, type, attrs)
    omit: frozenset[str] | None = None
    lang: str | None = None


#: the longest IRI taken as an id: one that still fits, percent-encoded, in a request line
MAX_IRI_LENGTH = 2048


def is_null_value(value: object, member: str = "value") -> bool:
    """Whether the value member ``member`` holds the NGSI-LD Null (clause 4.5.0):
    ``urn:ngsi-ld:null``; for a ``languageMap`` ``{"@none": "urn:ngsi-ld:null"}`` (clause
    4.5.18); for ``valueList`` / ``objectList`` a one-entry list of it (also
    ``[{"object": ...}]``)."""
    if value == NULL:
        return True
    if member == "languageMap":
        return value == {"@none": NULL}
    if member in ("valueList", "objectList") and isinstance(value, list) and len(value) == 1:
        return bool(value[0] == NULL or value[0] == {"object": NULL})
    return False


def check_uri(value: object, what: str) -> str:
    """An absolute IRI (clause 4.6.2) of at most MAX_IRI_LENGTH characters, else
    BadRequestData. Beside the characters that end a term, an IRI may hold no control, format
    (bidirectional overrides, zero-width space, byte order mark), surrogate or noncharacter code
    point (RFC 3987, sections 2.2 and 4.1)."""
    if isinstance(value, str) and len(value) > MAX_IRI_LENGTH:
        raise BadRequestData(f"{what} is longer than {MAX_IRI_LENGTH} characters")
    if (not isinstance(value, str) or not is_absolute_iri(value) or _BAD_NAME.search(value)
            or (not (value.isascii() and value.isprintable())  # the usual id: one C-level test
                and any(map(_unfit_in_iri, value)))):
        raise BadRequestData(f"{what} must be a URI, got {value!r}")
    return value


def _unfit_in_iri(char: str) -> bool:
    code = ord(char)
    if 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE:  # noncharacters
        return True
    return unicodedata.category(char) in ("Cc", "Cf", "Cs")


def attribute_iri(terms: TermMap, attribute: str, dataset_id: str | None = None) -> str:
    """The IRI of an attribute named in a URL, after checking the name (and the datasetId)."""
    check_name(attribute)
    if dataset_id is not None:
        check_uri(dataset_id, "datasetId")
    return terms.expand(attribute)


def check_attribute_name(name: str) -> str:
    """An attribute name: a valid name that is not a Core Context term defined as a
    non-reified Property (clause 4.5.1: datasetId, instanceId, observedAt...)."""
    check_name(name)
    if name in NON_REIFIED:
        raise BadRequestData(f"{name!r} is an NGSI-LD core member, not an attribute name "
                             "(clause 4.5.1)")
    return name


def check_expiry(value: object, what: str) -> str:
    """``expiresAt`` (clause 4.22): a DateTime, kept in the normalised UTC form whose text
    order is time order (the store indexes it)."""
    return normalize_time(check_datetime(value, what), what)


def check_name(name: str, what: str = "Attribute name") -> str:
    """A name (clause 4.6.2): not empty, no forbidden character, no JSON-LD keyword."""
    if not name or _BAD_NAME.search(name):
        raise BadRequestData(f"{what} {name!r} contains a forbidden character or is empty")
    if name.startswith("@"):
        raise BadRequestData(f"{what} {name!r} is a JSON-LD keyword, not a name")
    return name


def check_datetime(value: object, what: str) -> str:
    """A DateTime (clause 4.6.3): an ISO 8601 date and time in UTC, written without an offset
    other than ``Z`` ("shall not contain expressions of the difference between local time
    and UTC")."""
    if isinstance(value, str) and _is_datetime(value):
        return value
    raise BadRequestData(f"{what} must be an ISO 8601 UTC date-time, got {value!r}")


def expand_types(value: object, terms: TermMap) -> list[str]:
    """Validate and expand the ``type`` member of an entity (a string or a list of strings)."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise BadRequestData("Entity type must not be empty")
    result: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item:
            raise BadRequestData(f"Entity type must be a string or a list of strings, got {item!r}")
        check_name(item, "Entity type")
        if ":" not in item and (not _NAME_START.match(item) or item in ("id", "type")):
            # clause 4.6.2: name = unicodeLetter *nameChar; "id" and "type" are the core
            # context's aliases of the JSON-LD keywords @id and @type
            raise BadRequestData(f"Entity type {item!r} is not a valid name (clause 4.6.2)")
        iri = terms.expand(item)
        if iri not in result:
            result.append(iri)
    return result


def expand_entity(body: object, terms: TermMap, now: str, *, require_id_type: bool = True) -> Entity:
    """Validate a request entity and return it in stored form (with timestamps ``now``)."""
    if not isinstance(body, dict):
        raise BadRequestData("The entity must be a JSON object")
    entity: Entity = {}
    if "id" in body or require_id_type:
        if "id" not in body:
            raise BadRequestData("The entity has no id")
        entity["id"] = check_uri(body["id"], "Entity id")
    if "type" in body or require_id_type:
        if "type" not in body:
            raise BadRequestData("The entity has no type")
        entity["type"] = expand_types(body["type"], terms)
    if "scope" in body:
        entity["scope"] = _expand_scope(body["scope"])
    if "expiresAt" in body:
        entity["expiresAt"] = check_expiry(body["expiresAt"], "expiresAt of the entity")
    entity["createdAt"] = now
    entity["modifiedAt"] = now
    entity["attrs"] = expand_attributes(body, terms, now)
    return entity


def expand_attributes(body: dict[str, Any], terms: TermMap, now: str) -> dict[str, list[Instance]]:
    """Expand every attribute of a fragment: name IRI -> list of instances."""
    attrs: dict[str, list[Instance]] = {}
    for name, raw in body.items():
        if name in ENTITY_SKIPPED:
            continue
        check_attribute_name(name)
        iri = terms.expand(name)
        attrs[iri] = expand_instances(iri, raw, terms, now, name)
    return attrs


def expand_instances(
    iri: str, raw: object, terms: TermMap, now: str, name: str | None = None
) -> list[Instance]:
    """One attribute's instances (a list means a multi-attribute, clause 4.5.5)."""
    label = name or iri
    raws = raw if isinstance(raw, list) and raw and all(_is_instance(r) for r in raw) else [raw]
    instances: list[Instance] = []
    seen: set[str | None] = set()
    for item in raws:
        instance = expand_instance(iri, item, terms, now, label)
        dataset = instance.get("datasetId")
        if dataset in seen:
            what = f"datasetId {dataset}" if dataset else "default instance"
            raise BadRequestData(f"Attribute {label!r} has the {what} twice")
        seen.add(dataset)
        instances.append(instance)
    instances.sort(key=lambda i: "datasetId" in i)  # the default instance first
    return instances


def _is_instance(raw: object) -> bool:
    if not isinstance(raw, dict):
        return False
    kind = raw.get("type")
    return (isinstance(kind, str) and kind in VALUE_MEMBER) or any(
        m in raw for m in VALUE_MEMBER.values())


def expand_instance(
    iri: str, raw: object, terms: TermMap, now: str, label: str, *, sub: bool = False,
    deletion: bool = False
) -> Instance:
    """Validate one attribute instance, normalized or concise, and expand its sub-attributes.
    ``deletion``: the value may be the NGSI-LD Null (an instance of a temporal evolution
    recording a deletion); the current state never holds it (clause 5.2.1)."""
    if raw is None:
        raise BadRequestData(f"Attribute {label!r} has a null value")
    simple = _simple_property(iri, raw, now)
    if simple is not None:
        return simple
    if not isinstance(raw, dict):
        raw = {"value": raw}  # concise form of a Property (clause 4.5.x, concise representation)
    kind = raw.get("type")
    if kind is not None and not isinstance(kind, str):
        if any(m in raw for m in VALUE_MEMBER.values()):
            raise BadRequestData(f"Attribute {label!r} has a type that is not a text: {kind!r}")
        raw, kind = {"value": raw}, None  # a compound value with a "type" member
    if kind not in VALUE_MEMBER:
        if kind in GEOJSON_TYPES and "coordinates" in raw or kind == "GeometryCollection":
            raw = {"type": "GeoProperty", "value": raw}
        elif kind is not None and not any(m in raw for m in VALUE_MEMBER.values()):
            raw = {"value": raw}  # a compound value that happens to have a "type" member
        elif kind is not None:
            raise BadRequestData(f"Attribute {label!r} has an unknown type {kind!r}")
        kind = raw.get("type")
        if kind is None:
            kind = next((t for m, t in _MEMBER_TYPE.items() if m in raw), "Property")
            if kind == "Property" and _looks_geojson(raw.get("value")):
                kind = "GeoProperty"
    assert isinstance(kind, str)  # one of VALUE_MEMBER by now
    member = VALUE_MEMBER[kind]
    if member not in raw:
        raise BadRequestData(f"Attribute {label!r} of type {kind} has no {member!r} member")
    value = raw[member]
    if value == NULL and deletion:
        instance: Instance = {"type": kind, member: value}
    else:
        instance = {"type": kind, member: _check_value(kind, value, label, terms)}
    if iri in GEO_ATTRIBUTES and kind != "GeoProperty":
        raise BadRequestData(f"Attribute {label!r} must be a GeoProperty")
    subs: dict[str, Instance] = {}
    for key, item in raw.items():
        if key in ("type", member, "createdAt", "modifiedAt", "instanceId", "deletedAt"):
            continue
        if key in META or key in OUTPUT_ONLY:
            _member(instance, key, item, iri, label, terms, sub=sub)
        else:
            check_name(key, "Sub-attribute name")
            sub_iri = terms.expand(key)
            subs[sub_iri] = expand_instance(sub_iri, item, terms, now, key, sub=True,
                                            deletion=deletion)
    if iri == PROOF_IRI and not isinstance(instance.get("value"), dict):
        raise BadRequestData(f"The value of {label!r} must be an object holding a W3C Data "
                             "Integrity proof (clause 4.5.2.2)")
    instance["createdAt"] = now
    instance["modifiedAt"] = now
    if subs:
        instance["subs"] = subs
    return instance


#: members that belong to some attribute types only (clauses 4.5.2.2, 4.5.3.2...)
_OWN_MEMBERS = {
    "unitCode": ("Property", "GeoProperty", "ListProperty", "JsonProperty", "LanguageProperty",
                 "VocabProperty"),  # clause 4.5.3.2: never on a Relationship
    "lang": ("Property",),
    "objectType": ("Relationship", "ListRelationship"),
}


def _member(instance: Instance, key: str, item: object, iri: str, label: str, terms: TermMap,
            *, sub: bool) -> None:
    """Validate one non-attribute member of an instance and keep it in ``instance``."""
    kind = instance["type"]
    if key in OUTPUT_ONLY or (key in _MEMBER_TYPE or key == "value"):
        # the value member of another attribute type, or an output-only member
        raise BadRequestData(f"Attribute {label!r} of type {kind} cannot carry {key!r}")
    allowed = _OWN_MEMBERS.get(key)
    if allowed is not None and kind not in allowed:
        raise BadRequestData(f"Attribute {label!r} of type {kind} cannot carry {key!r}")
    if key == "observedAt":
        instance["observedAt"] = check_datetime(item, f"observedAt of {label!r}")
    elif key == "expiresAt":
        instance["expiresAt"] = check_expiry(item, f"expiresAt of {label!r}")
    elif key == "unitCode":
        if not isinstance(item, str) or not item:
            raise BadRequestData(f"unitCode of {label!r} must be a string")
        instance["unitCode"] = item
    elif key == "datasetId":
        if sub:
            raise BadRequestData(f"Sub-attribute {label!r} cannot have a datasetId")
        if item == NULL:
            raise BadRequestData(f"The datasetId of {label!r} cannot be deleted by the NGSI-LD "
                                 "Null (clause 5.5.8)")
        instance["datasetId"] = check_uri(item, f"datasetId of {label!r}")
    elif key == "lang":
        instance["lang"] = str(item)
    elif key == "valueType":
        if not isinstance(item, str) or not item:
            raise BadRequestData(f"valueType of {label!r} must be a string")
        instance["valueType"] = terms.expand(item)
        if kind == "LanguageProperty" and instance["valueType"] != LANG_STRING:
            raise BadRequestData(f"valueType of LanguageProperty {label!r} must be langString "
                                 "(clause 5.2.32)")
    elif key in SEALED:
        if iri != PROOF_IRI:
            raise BadRequestData(f"{key!r} may only appear in {PROOF!r} (clause 4.5.2.2)")
        if not isinstance(item, str) or not item:
            raise BadRequestData(f"{key!r} of {label!r} must be a string")
        instance[key] = (check_uri(item, key) if key == "entityIdSealed"
                         else expand_types(item, terms)[0])
    # objectType: accepted and not kept


_SIMPLE_KEYS = frozenset(["type", "value", "observedAt", "unitCode"])
_SCALARS = (str, int, float, bool)


def _simple_property(iri: str, raw: object, now: str) -> Instance | None:
    """Fast path for the most common attribute: a normalized Property with a scalar value and
    at most observedAt/unitCode. Anything else (or anything invalid) takes the full path."""
    if (not isinstance(raw, dict) or raw.get("type") != "Property" or iri in GEO_ATTRIBUTES
            or iri == PROOF_IRI or not _SIMPLE_KEYS.issuperset(raw)):
        return None
    value = raw.get("value")
    if not isinstance(value, _SCALARS) or value == NULL:
        return None
    instance: Instance = {"type": "Property", "value": value}
    if "observedAt" in raw:
        observed = raw["observedAt"]
        if not isinstance(observed, str) or not _is_datetime(observed):
            return None
        instance["observedAt"] = observed
    if "unitCode" in raw:
        unit = raw["unitCode"]
        if not isinstance(unit, str) or not unit:
            return None
        instance["unitCode"] = unit
    instance["createdAt"] = now
    instance["modifiedAt"] = now
    return instance


def _is_datetime(text: str) -> bool:
    date, sep, clock = text.partition("T")
    if not sep or not date or _OFFSET.search(clock):
        return False
    try:
        datetime.fromisoformat(text)
        return True
    except ValueError:
        return False


def _looks_geojson(value: object) -> bool:
    if not isinstance(value, dict):
        return False
    kind = value.get("type")
    return isinstance(kind, str) and kind in GEOJSON_TYPES and (
        "coordinates" in value or "geometries" in value
    )


def _valid_point(value: object) -> bool:
    """Fast path for the most common GeoProperty: a well-formed WGS84 Point."""
    if not isinstance(value, dict) or value.get("type") != "Point" or len(value) != 2:
        return False
    position = value.get("coordinates")
    if not isinstance(position, list) or not 2 <= len(position) <= 3:
        return False
    for number in position:
        if type(number) not in (int, float):  # no bool (JSON has no NaN)
            return False
    return bool(-180.0 <= position[0] <= 180.0 and -90.0 <= position[1] <= 90.0)


def _check_value(kind: str, value: object, label: str, terms: TermMap) -> object:
    if value is None or value == NULL:
        # clause 5.2.1: the NGSI-LD Null only deletes (merge and update); it is never stored
        raise BadRequestData(f"Attribute {label!r} has a null value")
    if kind == "GeoProperty":
        if isinstance(value, str):
            value = _geometry_text(value, label)
        if not _valid_point(value):
            if isinstance(value, dict) and value.get("type") == "GeometryCollection":
                raise BadRequestData(f"GeoProperty {label!r}: GeometryCollection is not "
                                     "supported (clause 4.7.1)")
            geo.parse_geojson(value)  # raises BadRequestData with the reason
    elif kind == "Relationship":
        if isinstance(value, list):
            for item in value:
                check_uri(item, f"Object of relationship {label!r}")
        else:
            check_uri(value, f"Object of relationship {label!r}")
    elif kind == "ListRelationship":
        if not isinstance(value, list):
            raise BadRequestData(f"objectList of {label!r} must be a list")
        # clause 4.5.22: an entry is a URI or {"object": URI}; kept in the second form
        return [{"object": check_uri(item.get("object") if isinstance(item, dict) else item,
                                     f"Object in objectList of {label!r}")}
                for item in value]
    elif kind == "LanguageProperty":
        _check_language_map(value, label)
    elif kind == "ListProperty":
        if not isinstance(value, list):
            raise BadRequestData(f"valueList of {label!r} must be a list")
    elif kind == "VocabProperty":
        items = value if isinstance(value, list) else [value]
        names = [v for v in items if isinstance(v, str)]
        if len(names) != len(items):
            raise BadRequestData(f"vocab of {label!r} must be a string or a list of strings")
        expanded = [terms.expand(v) for v in names]
        return expanded if isinstance(value, list) else expanded[0]
    return value


def expand_scope(value: object) -> list[str]:
    """A ``scope`` member (clause 4.18): one scope path or a list of them."""
    return _expand_scope(value)


def _check_language_map(value: object, label: str) -> None:
    """Clause 4.6.5 / table 5.2.32-1: non-empty language tags (or ``@none``) mapping to a
    string or an array of strings."""
    if not isinstance(value, dict) or not value:
        raise BadRequestData(f"languageMap of {label!r} must be a non-empty object")
    for tag, text in value.items():
        if not tag:
            raise BadRequestData(f"languageMap of {label!r} has an empty language tag")
        texts = text if isinstance(text, list) else [text]
        if not all(isinstance(t, str) for t in texts):
            raise BadRequestData(f"languageMap of {label!r}: {tag!r} must map to a string "
                                 "or an array of strings")
        if NULL in texts:
            raise BadRequestData(f"languageMap of {label!r} holds the NGSI-LD Null")


def _geometry_text(text: str, label: str) -> object:
    """Clause 4.7.2: a GeoProperty value given as the JSON text of a geometry."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise BadRequestData(f"GeoProperty {label!r}: {text[:80]!r} is not a GeoJSON geometry")
    return value


def _expand_scope(value: object) -> list[str]:
    """Clause 4.18: each scope is ``/level/level...`` (a level: a letter, then letters,
    digits or '_'); ``urn:ngsi-ld:null`` only marks a deleted scope."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise BadRequestData("Scope must not be an empty list")
    for item in items:
        if not isinstance(item, str) or not _SCOPE.fullmatch(item):
            raise BadRequestData(f"Scope must be a path of names such as /Madrid/Gardens, "
                                 f"got {item!r} (clause 4.18)")
    return list(items)


# --------------------------------------------------------------------------- output


#: (attribute IRI, linked entity id) -> the linked Entity as rendered (Linked Entity
#: retrieval with join=inline, clause 4.5.23)
Links = Mapping[tuple[str, str], dict[str, Any]]
_NO_LINKS: Links = {}


def compact_entity(entity: Entity, terms: TermMap, rep: Representation,
                   links: Links = _NO_LINKS) -> dict[str, Any]:
    """Render a stored entity for the caller's context, in the requested representation;
    ``links`` holds the linked Entities to inline (clause 4.5.23)."""
    types = [terms.compact(t) for t in entity["type"]]
    out: dict[str, Any] = {"id": entity["id"], "type": types[0] if len(types) == 1 else types}
    if "scope" in entity:
        out["scope"] = entity["scope"] if len(entity["scope"]) > 1 else entity["scope"][0]
    if rep.sys_attrs and rep.form != "keyValues":
        out["createdAt"] = entity["createdAt"]
        out["modifiedAt"] = entity["modifiedAt"]
        if "expiresAt" in entity:
            out["expiresAt"] = display_time(entity["expiresAt"])
    wanted = rep.attrs
    for iri, instances in entity["attrs"].items():
        if wanted is not None and iri not in wanted:
            continue
        if rep.dataset_ids is not None:
            instances = [i for i in instances if i.get("datasetId", "@none") in rep.dataset_ids]
            if not instances:
                continue
        name = terms.compact(iri)
        if rep.form == "keyValues":
            out[name] = _simplified_attribute(iri, instances, terms, rep, links)
        else:
            rendered = [_linked(iri, i, _compact_instance(i, terms, rep), links)
                        for i in instances]
            out[name] = rendered[0] if len(rendered) == 1 else rendered
    if rep.pick is not None:
        out = {k: v for k, v in out.items() if k in rep.pick}
    if rep.omit is not None:
        out = {k: v for k, v in out.items() if k not in rep.omit}
    return out


def link_targets(instance: Instance) -> list[str]:
    """The ids of the Entities an attribute instance links to (Relationship ``object``,
    ListRelationship ``objectList``); none for any other attribute."""
    kind = instance["type"]
    if kind == "Relationship":
        target = instance["object"]
        return [t for t in (target if isinstance(target, list) else [target])
                if isinstance(t, str)]
    if kind == "ListRelationship":
        items = [i.get("object") if isinstance(i, dict) else i for i in instance["objectList"]]
        return [t for t in items if isinstance(t, str)]
    return []


def _inlined(iri: str, instance: Instance, links: Links) -> list[dict[str, Any]]:
    return [links[(iri, t)] for t in link_targets(instance) if (iri, t) in links]


def _linked(iri: str, instance: Instance, rendered: Any, links: Links) -> Any:
    """Clause 4.5.23, join=inline: a Relationship carries the Entity it links to as its
    ``entity`` member, a ListRelationship (or a Relationship to several) the linked Entities
    as ``entityList``."""
    if not links or not isinstance(rendered, dict):
        return rendered
    entities = _inlined(iri, instance, links)
    if not entities:
        return rendered
    if instance["type"] == "Relationship" and isinstance(instance["object"], str):
        rendered["entity"] = entities[0]
    else:
        rendered["entityList"] = entities
    return rendered


def _simplified_attribute(iri: str, instances: list[Instance], terms: TermMap,
                          rep: Representation, links: Links) -> object:
    """keyValues of an attribute: the simplified value of its one instance, or for a
    multi-attribute the ``{"dataset": {datasetId | "@none": value}}`` map (clauses 4.5.4,
    4.5.17.1). With join=inline, a Relationship is simplified to the Entity it links to
    (clause 4.5.23)."""
    values = {}
    for instance in instances:
        entities = _inlined(iri, instance, links) if links else []
        if entities and instance["type"] == "Relationship" and isinstance(instance["object"], str):
            value: object = entities[0]
        elif entities:
            value = {"entityList": entities}
        else:
            value = _simplified(instance, terms, rep)
        values[instance.get("datasetId", "@none")] = value
    if len(values) == 1:
        return next(iter(values.values()))
    return {"dataset": values}


def _key_value(instance: Instance, terms: TermMap, rep: Representation) -> object:
    kind = instance["type"]
    value = instance[VALUE_MEMBER[kind]]
    if kind == "LanguageProperty" and rep.lang is not None:
        return _pick_language(value, rep.lang)[1]
    if kind == "VocabProperty":
        return [terms.compact(v) for v in value] if isinstance(value, list) else terms.compact(value)
    return value


_WRAPPED = {"LanguageProperty": "languageMap", "JsonProperty": "json",
            "VocabProperty": "vocab", "ListRelationship": "objectList"}


def _simplified(instance: Instance, terms: TermMap, rep: Representation) -> object:
    """keyValues (clause 4.5.4): the value, except where a bare value would be ambiguous
    (language maps, JSON, vocab and relationship lists keep their member name)."""
    value = _key_value(instance, terms, rep)
    member = _WRAPPED.get(instance["type"])
    if member is None or (instance["type"] == "LanguageProperty" and rep.lang is not None):
        return value
    return {member: value}


def _pick_language(language_map: dict[str, Any], lang: str) -> tuple[str, object]:
    """The (tag, text) chosen by a ``lang`` parameter (clause 4.15): first listed tag
    present, else ``@none``, else the first entry."""
    for tag in [t.split(";")[0].strip() for t in lang.split(",")]:
        if tag in language_map:
            return tag, language_map[tag]
        if tag == "*":
            break
    if "@none" in language_map:
        return "@none", language_map["@none"]
    return next(iter(language_map.items()))


def _compact_instance(instance: Instance, terms: TermMap, rep: Representation) -> Any:
    kind = instance["type"]
    member = VALUE_MEMBER[kind]
    out: dict[str, Any] = {}
    if kind == "LanguageProperty" and rep.lang is not None:
        # Clause 4.5.18: with lang, a LanguageProperty is shown as a Property in one language.
        tag, text = _pick_language(instance[member], rep.lang)
        if rep.form == "normalized":
            out["type"] = "Property"
        out["value"] = text
        if tag != "@none":
            out["lang"] = tag
        member = "value"
        value: object = text
    else:
        value = _key_value(instance, terms, rep)
        if rep.form == "normalized":
            out["type"] = kind
        out[member] = value
    for key in ("observedAt", "unitCode", "datasetId", "lang", "entityIdSealed"):
        if key in instance:
            out[key] = instance[key]
    for key in ("valueType", "entityTypeSealed"):  # @vocab-typed members
        if key in instance:
            out[key] = terms.compact(instance[key])
    if rep.sys_attrs:
        out["createdAt"] = instance["createdAt"]
        out["modifiedAt"] = instance["modifiedAt"]
        if "expiresAt" in instance:
            out["expiresAt"] = display_time(instance["expiresAt"])
    for sub_iri, sub in instance.get("subs", {}).items():
        out[terms.compact(sub_iri)] = _compact_instance(sub, terms, rep)
    if (rep.form == "concise" and len(out) == 1 and member == "value"
            and (kind == "GeoProperty" or not isinstance(value, dict))):
        return value  # concise: a bare value when there is nothing else to say
    return out


# --------------------------------------------------------------------------- transience (4.22)


def entity_expiry(entity: Entity) -> str | None:
    """The first ``expiresAt`` (normalised text) of an entity, its attribute instances and
    their sub-attributes: when part of it stops existing (clause 4.22); None if durable."""
    first: str | None = entity.get("expiresAt")
    for instances in entity["attrs"].values():  # on every write: no allocation per instance
        for instance in instances:
            at = instance.get("expiresAt")
            if at is not None and (first is None or at < first):
                first = at
            subs = instance.get("subs")
            if subs:
                for sub in subs.values():
                    at = sub.get("expiresAt")
                    if at is not None and (first is None or at < first):
                        first = at
    return first


def unexpired(entity: Entity, now: str) -> Entity | None:
    """The entity as it is at ``now`` (clause 4.22): None once its own ``expiresAt`` has
    passed, else without the attribute instances and sub-attributes whose time has passed."""
    if entity.get("expiresAt", "~") <= now:
        return None
    attrs: dict[str, list[Instance]] = {}
    for iri, instances in entity["attrs"].items():
        alive = [_unexpired_instance(i, now) for i in instances
                 if i.get("expiresAt", "~") > now]
        if alive:
            attrs[iri] = alive
    return {**entity, "attrs": attrs}


def expired_instances(entity: Entity, now: str) -> list[tuple[str, str | None]]:
    """(attribute IRI, datasetId) of the attribute instances whose expiresAt has passed."""
    return [(iri, i.get("datasetId")) for iri, instances in entity["attrs"].items()
            for i in instances if i.get("expiresAt", "~") <= now]


def _unexpired_instance(instance: Instance, now: str) -> Instance:
    subs = instance.get("subs")
    if not subs or all(s.get("expiresAt", "~") > now for s in subs.values()):
        return instance
    alive = {iri: s for iri, s in subs.items() if s.get("expiresAt", "~") > now}
    kept = {k: v for k, v in instance.items() if k != "subs"}
    if alive:
        kept["subs"] = alive
    return kept


def attribute_kinds(entity: Entity) -> Iterable[tuple[str, str]]:
    """(attribute IRI, attribute type) pairs of an entity, for the discovery statistics."""
    for iri, instances in entity["attrs"].items():
        for kind in {i["type"] for i in instances}:
            yield iri, kind
