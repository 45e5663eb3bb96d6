"""Entity type selection (ETSI GS CIM 009 v1.8, clause 4.17).

The ``type`` parameter is a small boolean language over entity type names::

    selection := all ( ( ',' | '|' ) all )*     # OR
    all       := primary ( ';' primary )*       # AND, binds tighter than OR
    primary   := '(' selection ')' | name

A name is expanded to an IRI with the caller's ``@context`` unless it is already an absolute
IRI (``scheme://...`` or ``urn:...``). An entity matches a name when the IRI is one of its types
(entities may have several types, clause 4.16).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Union

from cityvisor.ngsild.selection import SelectionParser

__all__ = ["WILDCARD", "TypeAll", "TypeAny", "TypeName", "TypeNode", "matches_types",
           "parse_type_selection", "simple_types"]

#: ``type=*`` in Query Entities: every entity type (Table 6.4.3.2-1)
WILDCARD = "*"
_ABSOLUTE = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*://|urn:)\S+\Z", re.IGNORECASE)


@dataclass(frozen=True)
class TypeName:
    """One entity type, as an expanded IRI."""

    iri: str
    label: str = field(default="", compare=False)

    def __str__(self) -> str:
        return self.label or self.iri


@dataclass(frozen=True)
class TypeAll:
    """``A;B``: the entity has all of these types."""

    children: tuple[TypeNode, ...]

    def __str__(self) -> str:
        return ";".join(f"({c})" if isinstance(c, TypeAny) else str(c) for c in self.children)


@dataclass(frozen=True)
class TypeAny:
    """``A,B`` or ``A|B``: the entity has one of these types."""

    children: tuple[TypeNode, ...]

    def __str__(self) -> str:
        return ",".join(str(c) for c in self.children)


TypeNode = Union[TypeName, TypeAll, TypeAny]  # noqa: UP007 - a runtime alias


class _Parser(SelectionParser[TypeNode]):
    """A type selection (clause 4.17): leaves are entity type names."""

    what, param = "type selection", "type"
    all_node, any_node = TypeAll, TypeAny

    def __init__(self, text: str, expand: Callable[[str], str]) -> None:
        super().__init__(text)
        self.expand = expand

    def leaf(self) -> TypeNode:
        name = self.token()
        if not name:
            raise self.fail("expected an entity type name")
        iri = name if _ABSOLUTE.match(name) else self.expand(name)
        return TypeName(iri, name)


def parse_type_selection(text: str, expand: Callable[[str], str]) -> TypeNode:
    """Parse a ``type`` parameter (clause 4.17); raise BadRequestData on a syntax error."""
    return _Parser(text, expand).parse()


def matches_types(node: TypeNode, entity_types: Iterable[str]) -> bool:
    """True if an entity with these (expanded) types satisfies the selection."""
    types = entity_types if isinstance(entity_types, (set, frozenset)) else set(entity_types)
    return _matches(node, types)


def _matches(node: TypeNode, types: set[str] | frozenset[str]) -> bool:
    if isinstance(node, TypeName):
        return node.iri in types
    if isinstance(node, TypeAll):
        return all(_matches(c, types) for c in node.children)
    return any(_matches(c, types) for c in node.children)


def simple_types(node: TypeNode) -> list[str] | None:
    """The IRIs of a plain OR-list of names (for an ``IN (...)`` lookup), else None."""
    if isinstance(node, TypeName):
        return [node.iri]
    if isinstance(node, TypeAny) and all(isinstance(c, TypeName) for c in node.children):
        return list(dict.fromkeys(c.iri for c in node.children))  # type: ignore[union-attr]
    return None
