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

from cityvisor.ngsild.errors import BadRequestData

__all__ = ["WILDCARD", "TypeAll", "TypeAny", "TypeName", "TypeNode", "matches_types",
           "parse_type_selection", "simple_types"]

_STOP = set(",|;()") | {" ", "\t", "\r", "\n"}
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


class _Parser:
    """Recursive descent over one type selection (clause 4.17)."""

    def __init__(self, text: str, expand: Callable[[str], str]) -> None:
        self.text, self.pos, self.expand = text, 0, expand

    def fail(self, message: str, pos: int | None = None) -> BadRequestData:
        at = self.pos if pos is None else pos
        found = self.text[at:at + 20]
        where = f"found {found!r}" if found else "found the end of the expression"
        return BadRequestData(f"Invalid type selection at position {at + 1}: {message}, "
                              f"{where} (type={self.text!r})")

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def eat(self, chars: str) -> bool:
        self.skip_ws()
        if self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1
            return True
        return False

    def parse(self) -> TypeNode:
        self.skip_ws()
        if self.pos >= len(self.text):
            raise self.fail("the selection is empty")
        node = self.selection()
        self.skip_ws()
        if self.pos < len(self.text):
            raise self.fail("unbalanced ')'" if self.text[self.pos] == ")"
                            else "expected ',', '|', ';' or the end")
        return node

    def selection(self) -> TypeNode:
        children = [self.conjunction()]
        while self.eat(",|"):
            children.append(self.conjunction())
        return _combine(TypeAny, children)

    def conjunction(self) -> TypeNode:
        children = [self.primary()]
        while self.eat(";"):
            children.append(self.primary())
        return _combine(TypeAll, children)

    def primary(self) -> TypeNode:
        self.skip_ws()
        start = self.pos
        if self.eat("("):
            node = self.selection()
            if not self.eat(")"):
                raise self.fail(f"missing ')' for the '(' at position {start + 1}")
            return node
        while self.pos < len(self.text) and self.text[self.pos] not in _STOP:
            self.pos += 1
        name = self.text[start:self.pos]
        if not name:
            raise self.fail("expected an entity type name")
        iri = name if _ABSOLUTE.match(name) else self.expand(name)
        return TypeName(iri, name)


def _combine(cls: type[TypeAll | TypeAny], children: list[TypeNode]) -> TypeNode:
    if len(children) == 1:
        return children[0]
    flat: list[TypeNode] = []
    for child in children:
        flat.extend(child.children if isinstance(child, cls) else (child,))
    return cls(tuple(flat))


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
