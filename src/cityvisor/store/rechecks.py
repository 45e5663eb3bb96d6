"""Exact predicates that the SQL backends run in Python on the candidates of an inexact WHERE."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cityvisor.ngsild import geo as geo_predicates
from cityvisor.ngsild import query as q_language
from cityvisor.ngsild import scopequery, typequery
from cityvisor.store.base import Entity, EntityQuery, EntitySelector


def geo_matches(query: geo_predicates.GeoQuery, entity: Entity) -> bool:
    """Whether a GeoProperty instance of the queried attribute matches (clause 4.10)."""
    for instance in entity["attrs"].get(query.geoproperty, ()):
        if instance["type"] == "GeoProperty" and geo_predicates.matches(query, instance["value"]):
            return True
    return False


def rechecked(query: EntityQuery, entity: Entity) -> bool:
    """The exact ``q`` (clause 4.9) and geo-query (clause 4.10) tests of one candidate."""
    if query.q is not None and not q_language.evaluate(query.q, entity):
        return False
    return query.geo is None or geo_matches(query.geo, entity)


def selected(selectors: Sequence[EntitySelector], entity_id: str,
              types: Iterable[str]) -> bool:
    """Whether an entity matches any of the selectors (none: every entity)."""
    return not selectors or any(
        (s.ids is None or entity_id in s.ids)
        and (s.id_pattern is None or q_language.pattern_matches(s.id_pattern, entity_id))
        and (s.types is None or typequery.matches_types(s.types, types))
        for s in selectors)


def scoped(query: EntityQuery, entity: Entity) -> bool:
    """The scope query (clause 4.19) of one candidate."""
    return query.scope is None or scopequery.matches_scopes(query.scope, entity.get("scope"))
