"""Amending payloads for a consumer of an earlier NGSI-LD version (clause 4.3.6.8).

A consumer may state that it only understands the payloads of a given version (in HTTP,
``Prefer: ngsi-ld=<major>.<minor>``); the broker then "endeavours to amend its payload
accordingly" (Table 4.3.6.8-1). The attribute types that version 1.8 introduced fall back to
a Property whose ``value`` carries their content:

=================  ===========  ===============================
attribute type     introduced   in an earlier version
=================  ===========  ===============================
VocabProperty      1.8          Property (value: the vocab)
JsonProperty       1.8          Property (value: the json)
ListProperty       1.8          Property (value: the valueList)
=================  ===========  ===============================

The amendment works on entities already rendered for the caller (normalized, concise or
keyValues, inlined linked Entities and GeoJSON Features included).
"""

from __future__ import annotations

from typing import Any

#: attribute type -> (the version that introduced it, the member holding its content)
FALLBACK_TO_PROPERTY = {
    "VocabProperty": ((1, 8), "vocab"),
    "JsonProperty": ((1, 8), "json"),
    "ListProperty": ((1, 8), "valueList"),
}
#: entity members that are no attributes
_ENTITY_MEMBERS = frozenset(["id", "type", "scope", "@context", "createdAt", "modifiedAt",
                             "deletedAt"])
#: attribute members that are no sub-attributes
_ATTRIBUTE_MEMBERS = frozenset(["type", "value", "object", "languageMap", "valueList",
                                "objectList", "json", "vocab", "observedAt", "unitCode",
                                "datasetId", "createdAt", "modifiedAt", "deletedAt",
                                "instanceId", "lang", "objectType", "entity", "entityList",
                                "dataset", "previousValue", "previousObject"])


def parse_version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


def amend_for_version(payload: Any, version: tuple[int, int], form: str) -> bool:
    """Amend rendered entities (one, a list, a Feature or FeatureCollection) in place for a
    consumer of ``version``; ``form`` is normalized, concise or keyValues. Whether anything
    changed."""
    members = {name: member for name, (since, member) in FALLBACK_TO_PROPERTY.items()
               if version < since}
    if not members:
        return False
    return _Amender(members, form).payload(payload)


class _Amender:
    def __init__(self, members: dict[str, str], form: str) -> None:
        self.members = members  # attribute type -> content member, of the types to amend
        self.form = form

    def payload(self, payload: Any) -> bool:
        if isinstance(payload, list):
            return any([self.payload(item) for item in payload])
        if not isinstance(payload, dict):
            return False
        if payload.get("type") == "FeatureCollection":
            return self.payload(payload.get("features"))
        if payload.get("type") == "Feature" and isinstance(payload.get("properties"), dict):
            return self.entity(payload["properties"])
        return self.entity(payload)

    def entity(self, entity: dict[str, Any]) -> bool:
        changed = False
        for name in list(entity):
            if name in _ENTITY_MEMBERS:
                continue
            entity[name], amended = self.attribute(entity[name])
            changed |= amended
        return changed

    def attribute(self, value: Any) -> tuple[Any, bool]:
        if isinstance(value, list):
            if self.form == "keyValues":
                return value, False
            results = [self.attribute(item) for item in value]
            return [v for v, _ in results], any(c for _, c in results)
        if not isinstance(value, dict):
            return value, False
        if self.form == "keyValues":
            return self.simplified(value)
        changed = False
        kind = value.get("type")
        member = self.members.get(kind) if isinstance(kind, str) else None
        if member is None and self.form == "concise" and "type" not in value:
            member = next((m for m in self.members.values() if m in value), None)
        if member is not None and member in value:
            amended = {("value" if k == member else k): v for k, v in value.items()}
            if "type" in amended:
                amended["type"] = "Property"
            value, changed = amended, True
        for name in list(value):
            if name in _ATTRIBUTE_MEMBERS:
                if name == "entity" and isinstance(value[name], dict):
                    changed |= self.entity(value[name])
                elif name == "entityList" and isinstance(value[name], list):
                    changed |= any([self.entity(e) for e in value[name] if isinstance(e, dict)])
                continue
            value[name], sub_changed = self.attribute(value[name])
            changed |= sub_changed
        return value, changed

    def simplified(self, value: dict[str, Any]) -> tuple[Any, bool]:
        """keyValues: ``{"vocab": x}`` / ``{"json": x}`` become the bare ``x``."""
        if len(value) == 1:
            (member, content), = value.items()
            if member in self.members.values():
                return content, True
            if member == "dataset" and isinstance(content, dict):
                results = {k: self.simplified(v) if isinstance(v, dict) else (v, False)
                           for k, v in content.items()}
                return ({"dataset": {k: v for k, (v, _) in results.items()}},
                        any(c for _, c in results.values()))
        if "id" in value and "type" in value:  # an inlined linked Entity
            return value, self.entity(value)
        return value, False


__all__ = ["FALLBACK_TO_PROPERTY", "amend_for_version", "parse_version"]
