"""The ``attribute_stats`` counts of the SQL backends (``/types``, ``/attributes``, clause 5.7.5-5.7.8).

Counts per (entity type, attribute, attribute type) are kept in step with every write as
deltas computed from the old and the new entity, so that listing them never scans the
entities. Rows with type ``""`` count each entity once, whatever its number of types; the
row ``("", "", "")`` counts the entities.
"""

from __future__ import annotations

from collections import Counter

from cityvisor.store.base import Entity


def stats_delta(stats: Counter[tuple[str, str, str]], old: Entity | None,
                 new: Entity | None) -> None:
    """Add the change of ``attribute_stats`` rows from ``old`` to ``new``."""
    if old is None or new is None or old["type"] != new["type"]:
        if old is not None:
            count_entity(stats, old, -1)
        if new is not None:
            count_entity(stats, new, +1)
        return
    # Same types: only attributes whose set of kinds changed move the counts (the common
    # partial update changes a value, not a kind, and costs nothing here).
    old_attrs, new_attrs = old["attrs"], new["attrs"]
    for iri in [*new_attrs, *(iri for iri in old_attrs if iri not in new_attrs)]:
        before, after = old_attrs.get(iri), new_attrs.get(iri)
        if before is after or (before is not None and after is not None and len(before) == 1
                               and len(after) == 1 and before[0]["type"] == after[0]["type"]):
            continue  # the common case: one instance whose kind stays
        before_kinds = {i["type"] for i in before or ()}
        after_kinds = {i["type"] for i in after or ()}
        if before_kinds == after_kinds:
            continue
        for entity_type in ("", *new["type"]):
            for kind in before_kinds - after_kinds:
                stats[(entity_type, iri, kind)] -= 1
            for kind in after_kinds - before_kinds:
                stats[(entity_type, iri, kind)] += 1


def count_entity(stats: Counter[tuple[str, str, str]], entity: Entity, sign: int) -> None:
    """Per-type rows, and rows with type "" where a multi-typed entity counts once."""
    kinds = {(iri, inst["type"]) for iri, insts in entity["attrs"].items() for inst in insts}
    for entity_type in ("", *entity["type"]):
        stats[(entity_type, "", "")] += sign
        for iri, kind in kinds:
            stats[(entity_type, iri, kind)] += sign
