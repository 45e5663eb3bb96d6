"""The Attribute Projection Language of ``pick`` and ``omit`` (ETSI GS CIM 009 v1.8, clause 4.21).

Grammar (clause 4.21)::

    Projection       = ProjectionTerm *( ( "," / "|" ) ProjectionTerm )
    ProjectionTerm   = AttrName / LinkedEntityTerm
    LinkedEntityTerm = AttrName "{" Projection "}"

A comma and a pipe are two spellings of the same "or" operator. ``AttrName{...}`` names an
entity member (usually a Relationship) and, between the braces, the members of the Entity it
links to (Linked Entity retrieval, clause 4.5.23): every level of braces is one more hop.
Any violation of the grammar is a ``BadRequestData`` (clause 5.7.1.4, 5.7.2.4).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from cityvisor.ngsild.errors import BadRequestData

#: clause 4.6.2: characters that cannot appear in a member name (no control character, no
#: space, nothing that ends a term or an IRI, no "%"), plus the structure of 4.21
_NAME = re.compile(r"[^\x00-\x20\x7f-\x9f<>\"'=;()\[\]\\{},|%]+")


@dataclass(frozen=True)
class Projection:
    """A parsed projection: member name -> the projection of the Entity it links to (None
    when the member is named without braces)."""

    members: Mapping[str, Projection | None]

    def names(self) -> frozenset[str]:
        return frozenset(self.members)

    def plain(self) -> frozenset[str]:
        """The members named without a nested projection."""
        return frozenset(name for name, nested in self.members.items() if nested is None)

    def nested(self, name: str) -> Projection | None:
        return self.members.get(name)

    def depth(self) -> int:
        """The number of Linked Entity hops the projection addresses (0: none)."""
        return max((1 + p.depth() for p in self.members.values() if p is not None), default=0)


def parse_projection(text: str, what: str = "pick") -> Projection:
    """Parse the value of ``pick`` or ``omit`` (``what``, for the messages)."""
    parser = _Parser(text, what)
    projection = parser.projection()
    if parser.pos < len(text):
        raise parser.fail("unbalanced '}'" if text[parser.pos] == "}" else "unexpected character")
    return projection


class _Parser:
    """Recursive descent over one projection expression."""

    def __init__(self, text: str, what: str) -> None:
        self.text = text
        self.what = what
        self.pos = 0

    def fail(self, message: str) -> BadRequestData:
        found = self.text[self.pos:self.pos + 20]
        where = f"found {found!r}" if found else "found the end of the expression"
        return BadRequestData(f"Invalid {self.what} at position {self.pos + 1}: {message}, "
                              f"{where} ({self.what}={self.text!r})")

    def projection(self) -> Projection:
        members: dict[str, Projection | None] = {}
        while True:
            name, nested = self.term()
            members[name] = _merge(members.get(name), nested) if name in members else nested
            if self.pos < len(self.text) and self.text[self.pos] in ",|":
                self.pos += 1
                continue
            return Projection(members)

    def term(self) -> tuple[str, Projection | None]:
        match = _NAME.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected an attribute name")
        self.pos = match.end()
        if not self.text.startswith("{", self.pos):
            return match.group(0), None
        self.pos += 1
        nested = self.projection()
        if not self.text.startswith("}", self.pos):
            raise self.fail("expected ',', '|' or '}' closing the linked entity projection")
        self.pos += 1
        return match.group(0), nested


def _merge(one: Projection | None, other: Projection | None) -> Projection | None:
    """A member named twice: the union of its nested projections (plain wins over nested,
    as it selects the whole linked Entity)."""
    if one is None or other is None:
        return None
    members = dict(one.members)
    for name, nested in other.members.items():
        members[name] = _merge(members[name], nested) if name in members else nested
    return Projection(members)


__all__ = ["Projection", "parse_projection"]
