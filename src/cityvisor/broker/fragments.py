"""How NGSI-LD request fragments change a stored entity (clauses 5.6.2-5.6.6, 5.6.17).

Pure functions over the stored form (``docs/internal-model.md``): appending, overwriting and
merging attribute instances (``datasetId`` by ``datasetId``), deleting instances, NGSI-LD null
handling. ``EntityBroker`` reads the current entity, calls these and stages the result.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from cityvisor.ngsild.context import TermMap
from cityvisor.ngsild.errors import BadRequestData, NgsiLdError
from cityvisor.ngsild.model import (
    NULL,
    VALUE_MEMBER,
    Entity,
    Instance,
    check_attribute_name,
    expand_instances,
    expand_scope,
    expand_types,
    is_null_value,
)

MISSING_ATTRIBUTE = "The attribute does not exist"


@dataclass
class UpdateResult:
    """Clause 5.2.18: which attributes were updated and which were not, and why."""

    updated: list[str] = field(default_factory=list)
    not_updated: list[dict[str, str]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {"updated": self.updated, "notUpdated": self.not_updated}


def digest(value: Any) -> str:
    return hashlib.sha1(repr(sorted(value)).encode()).hexdigest()[:16]


def copy_entity(entity: Entity) -> Entity:
    """A copy safe to modify: attribute lists are new, instances are copied on write."""
    new = dict(entity)
    new["type"] = list(entity["type"])
    new["attrs"] = {iri: list(instances) for iri, instances in entity["attrs"].items()}
    return new


def fragment_of(body: object, entity_id: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequestData("The body must be a JSON object of attributes")
    if "id" in body and body["id"] != entity_id:
        raise BadRequestData("The id in the body differs from the id in the URL")
    return {k: v for k, v in body.items() if k not in ("id", "@context")}


def deletion(raw: object) -> tuple[bool, str | None]:
    """Whether an attribute fragment is the merge-patch null (``"urn:ngsi-ld:null"``, alone or
    as the value member of an instance, ``{"@none": "urn:ngsi-ld:null"}`` for a languageMap,
    ``["urn:ngsi-ld:null"]`` for a list), and the datasetId it targets (clause 4.5.0)."""
    if raw == NULL:
        return True, None
    if isinstance(raw, dict):
        dataset = raw.get("datasetId") if isinstance(raw.get("datasetId"), str) else None
        for member in VALUE_MEMBER.values():
            if member in raw and is_null_value(raw[member], member):
                return True, dataset
    return False, None


def delete_instance(entity: Entity, iri: str, dataset_id: str | None) -> bool:
    """Remove one instance (or the attribute when none is left); False if absent."""
    instances = entity["attrs"].get(iri)
    index = instance_index(instances, dataset_id)
    if instances is None or index is None:
        return False
    remaining = [i for n, i in enumerate(instances) if n != index]
    if remaining:
        entity["attrs"][iri] = remaining
    else:
        del entity["attrs"][iri]
    return True


def strip_nulls(raw: object) -> object:
    """An instance fragment without its members (sub-attributes) set to the NGSI-LD Null."""
    if isinstance(raw, dict):
        return {k: v for k, v in raw.items()
                if v != NULL and not (k not in VALUE_MEMBER.values() and deletion(v)[0])}
    return raw


def instance_index(instances: list[Instance] | None, dataset_id: str | None) -> int | None:
    for index, instance in enumerate(instances or ()):
        if instance.get("datasetId") == dataset_id:
            return index
    return None


def dataset_text(dataset_id: str | None) -> str:
    return f" with datasetId {dataset_id}" if dataset_id else ""


def retype(fragment: Instance, kind: str) -> Instance:
    """A concise fragment ({"value": ...}) aimed at a Relationship etc. keeps the old type."""
    member = VALUE_MEMBER[fragment["type"]]
    target = VALUE_MEMBER[kind]
    if member == target:
        return {**fragment, "type": kind}
    raise BadRequestData(f"The attribute is a {kind}; the fragment carries a {fragment['type']}")


def merge_instance(current: Instance, fragment: Instance, now: str) -> Instance:
    merged = {k: v for k, v in current.items() if k != "subs"}
    if VALUE_MEMBER[fragment["type"]] != VALUE_MEMBER[current["type"]]:
        merged.pop(VALUE_MEMBER[current["type"]], None)
    for key, value in fragment.items():
        if key not in ("subs", "createdAt", "modifiedAt"):
            merged[key] = value
    subs = dict(current.get("subs", {}))
    for sub_iri, sub in fragment.get("subs", {}).items():
        old_sub = subs.get(sub_iri)
        subs[sub_iri] = {**sub, "createdAt": old_sub["createdAt"]} if old_sub else sub
    if subs:
        merged["subs"] = subs
    merged["modifiedAt"] = now
    return merged


def overwrite_attrs(old: Entity, entity: Entity, now: str) -> dict[str, list[Instance]]:
    """Upsert with options=update: the new attributes replace same-dataset instances."""
    result: dict[str, list[Instance]] = {}
    for iri, instances in entity["attrs"].items():
        merged = list(old["attrs"].get(iri, []))
        for instance in instances:
            index = instance_index(merged, instance.get("datasetId"))
            if index is None:
                merged.append(instance)
            else:
                merged[index] = {**instance, "createdAt": merged[index]["createdAt"]}
        merged.sort(key=lambda i: "datasetId" in i)
        result[iri] = merged
    return result


def _append_scope(entity: Entity, raw: object, no_overwrite: bool,
                  result: UpdateResult) -> None:
    """Clause 5.6.3.4: the fragment's scope replaces the entity's, or with noOverwrite is
    added to it; the NGSI-LD Null deletes it."""
    if raw == NULL:
        entity.pop("scope", None)
    else:
        try:
            scopes = expand_scope(raw)
        except NgsiLdError as error:
            result.not_updated.append({"attributeName": "scope", "reason": error.detail})
            return
        if no_overwrite:
            scopes = list(dict.fromkeys([*entity.get("scope", []), *scopes]))
        entity["scope"] = scopes
    result.updated.append("scope")


def appended(old: Entity, fragment: dict[str, Any], terms: TermMap, now: str,
              no_overwrite: bool, allow_new: bool) -> tuple[Entity, UpdateResult]:
    """Append (allow_new) or update attributes; returns the new entity and the result."""
    result = UpdateResult()
    new = copy_entity(old)
    for name, raw in fragment.items():
        if name in ("createdAt", "modifiedAt"):
            continue
        if name == "type":  # the fragment's types are added to the entity's (clause 5.6.2.4)
            try:
                new["type"] = list(dict.fromkeys([*new["type"], *expand_types(raw, terms)]))
            except NgsiLdError as error:
                result.not_updated.append({"attributeName": "type", "reason": error.detail})
            continue
        if name == "scope":
            _append_scope(new, raw, no_overwrite, result)
            continue
        try:
            check_attribute_name(name)
            iri = terms.expand(name)
            deletions = [deletion(item) for item in (raw if isinstance(raw, list) else [raw])]
            if any(deleted for deleted, _ in deletions):
                if no_overwrite and iri in new["attrs"]:
                    result.not_updated.append({
                        "attributeName": name,
                        "reason": "The attribute exists and noOverwrite is set"})
                elif all(delete_instance(new, iri, dataset) for _, dataset in deletions):
                    result.updated.append(name)
                else:
                    result.not_updated.append({"attributeName": name,
                                               "reason": MISSING_ATTRIBUTE})
                continue
            incoming = expand_instances(iri, raw, terms, now, name)
        except NgsiLdError as error:
            result.not_updated.append({"attributeName": name, "reason": error.detail})
            continue
        instances = new["attrs"].get(iri)
        if instances is None and not allow_new:
            result.not_updated.append({"attributeName": name,
                                       "reason": MISSING_ATTRIBUTE})
            continue
        merged = list(instances or [])
        changed = False
        for instance in incoming:
            index = instance_index(merged, instance.get("datasetId"))
            if index is None:
                # a new datasetId of the attribute: added, also by an update and with
                # noOverwrite (clause 5.5.8)
                merged.append(instance)
                changed = True
            elif no_overwrite:
                result.not_updated.append({
                    "attributeName": name,
                    "reason": "The attribute exists and noOverwrite is set"})
            else:
                merged[index] = {**instance, "createdAt": merged[index]["createdAt"]}
                changed = True
        if not changed:
            continue
        merged.sort(key=lambda i: "datasetId" in i)
        new["attrs"][iri] = merged
        if name not in result.updated:
            result.updated.append(name)
    if result.updated or new["type"] != old["type"]:
        new["modifiedAt"] = now
    return new, result
