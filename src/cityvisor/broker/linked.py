"""Linked Entity retrieval (ETSI GS CIM 009 v1.8, clause 4.5.23) and the projections of
``pick``/``omit`` that reach into linked Entities (clause 4.21).

Starting from the entities a request returns, the Relationships they keep (after the
projection) are followed for up to ``joinLevel`` hops. With ``join=inline`` each linked Entity
is placed inside the Relationship that links to it (``entity`` / ``entityList``); with
``join=flat`` the linked Entities follow the requested ones in one array, each once. A member
named ``rel{...}`` in ``pick``/``omit`` carries the projection of the Entity ``rel`` links to.
An Entity already on the path from the requested one, or listed in ``containedBy``, is not
entered again, and a link to an Entity that does not exist is left as it is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from cityvisor.broker.options import Join, member_names
from cityvisor.ngsild.context import TermMap
from cityvisor.ngsild.model import Entity, Representation, link_targets
from cityvisor.ngsild.projection import Projection

#: ``await fetch(ids)`` -> the stored entities among ``ids``, by id
Fetch = Callable[[list[str]], Awaitable[dict[str, Entity]]]
#: ``render(entity, representation, links)`` -> the entity as the response shows it
Render = Callable[[Entity, Representation, dict[tuple[str, str], dict[str, Any]]],
                  dict[str, Any]]


@dataclass
class _Node:
    """One entity of the result tree, with the projections that apply at its level."""

    entity: Entity
    rep: Representation
    pick: Projection | None
    omit: Projection | None
    path: frozenset[str]
    children: dict[tuple[str, str], _Node] = field(default_factory=dict)


def level_representation(rep: Representation, pick: Projection | None,
                         omit: Projection | None, terms: TermMap) -> Representation:
    """The representation of a linked Entity: the request's form, system attributes and
    language, with the projection that the linking member carries (no attrs/datasetId)."""
    return replace(rep, attrs=None, dataset_ids=None,
                   pick=member_names(pick.names(), terms) if pick is not None else None,
                   omit=member_names(omit.plain(), terms) if omit is not None else None)


def _kept(node: _Node, iri: str, name: str) -> bool:
    rep = node.rep
    if rep.attrs is not None and iri not in rep.attrs:
        return False
    if rep.pick is not None and name not in rep.pick:
        return False
    return rep.omit is None or name not in rep.omit


def _links(node: _Node, terms: TermMap,
           join: Join) -> Iterable[tuple[str, str, Projection | None, Projection | None]]:
    """(attribute IRI, target id, pick, omit of the target) of each link the node keeps."""
    for iri, instances in node.entity["attrs"].items():
        name = terms.compact(iri)
        if not _kept(node, iri, name):
            continue
        pick = node.pick.nested(name) if node.pick is not None else None
        omit = node.omit.nested(name) if node.omit is not None else None
        for instance in instances:
            if (node.rep.dataset_ids is not None
                    and instance.get("datasetId", "@none") not in node.rep.dataset_ids):
                continue
            for target in link_targets(instance):
                if target not in node.path and target not in join.contained_by:
                    yield iri, target, pick, omit


async def linked_entities(roots: list[Entity], rep: Representation, pick: Projection | None,
                          omit: Projection | None, join: Join, terms: TermMap, fetch: Fetch,
                          render: Render) -> list[dict[str, Any]]:
    """The rendered result of a request with ``join``: one item per root (inline), or the
    roots followed by every linked Entity (flat)."""
    nodes = [_Node(e, rep, pick, omit, frozenset([e["id"]])) for e in roots]
    level = nodes
    cache: dict[str, Entity] = {}
    for _ in range(join.level):
        wanted = [(node, link) for node in level for link in _links(node, terms, join)]
        missing = sorted({link[1] for _, link in wanted} - cache.keys())
        if missing:
            cache.update(await fetch(missing))
        level = []
        for node, (iri, target, sub_pick, sub_omit) in wanted:
            entity = cache.get(target)
            if entity is None or (iri, target) in node.children:
                continue
            child = _Node(entity, level_representation(rep, sub_pick, sub_omit, terms),
                          sub_pick, sub_omit, node.path | {target})
            node.children[(iri, target)] = child
            level.append(child)
        if not level:
            break
    if join.mode == "inline":
        return [_inline(node, render) for node in nodes]
    return _flat(nodes, render)


def _inline(node: _Node, render: Render) -> dict[str, Any]:
    links = {key: _inline(child, render) for key, child in node.children.items()}
    return render(node.entity, node.rep, links)


def _flat(nodes: list[_Node], render: Render) -> list[dict[str, Any]]:
    """Breadth first: the requested entities, then each hop's linked Entities, each once."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    level = nodes
    while level:
        following: list[_Node] = []
        for node in level:
            following.extend(node.children.values())
            if node.entity["id"] in seen:
                continue
            seen.add(node.entity["id"])
            out.append(render(node.entity, node.rep, {}))
        level = following
    return out


__all__ = ["Fetch", "Render", "level_representation", "linked_entities"]
