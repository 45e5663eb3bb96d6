"""Exact predicates that the SQL backends run in Python on the candidates of an inexact WHERE."""

from __future__ import annotations

from cityvisor.ngsild import geo as geo_predicates
from cityvisor.ngsild import query as q_language
from cityvisor.store.base import Entity, EntityQuery


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
