"""The boolean grammar that type selections (clause 4.17) and scope queries (clause 4.19)
share::

    selection := all ( ( ',' | '|' ) all )*     # OR
    all       := primary ( ';' primary )*       # AND, binds tighter than OR
    primary   := '(' selection ')' | leaf

A subclass says what a leaf is (:meth:`SelectionParser.leaf`) and which node classes hold an
AND and an OR; nested nodes of the same kind are flattened.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from cityvisor.ngsild.errors import BadRequestData

__all__ = ["STOP", "SelectionParser", "combine"]

#: the characters that end a leaf
STOP = set(",|;()") | {" ", "\t", "\r", "\n"}
N = TypeVar("N")


def combine(cls: type[Any], children: list[N]) -> N:
    """One child as it is; several as one ``cls`` node, nested ``cls`` nodes flattened."""
    if len(children) == 1:
        return children[0]
    flat: list[N] = []
    for child in children:
        flat.extend(child.children if isinstance(child, cls) else (child,))
    node: N = cls(tuple(flat))
    return node


class SelectionParser(Generic[N]):
    """Recursive descent over one selection; BadRequestData names the bad position."""

    what = "selection"  # in error messages: "Invalid <what> at position ..."
    param = "?"  # the parameter echoed in error messages
    empty = "the selection is empty"
    all_node: type[Any]
    any_node: type[Any]

    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def fail(self, message: str, pos: int | None = None) -> BadRequestData:
        at = self.pos if pos is None else pos
        found = self.text[at:at + 20]
        where = f"found {found!r}" if found else "found the end of the expression"
        return BadRequestData(f"Invalid {self.what} at position {at + 1}: {message}, {where} "
                              f"({self.param}={self.text!r})")

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def eat(self, chars: str) -> bool:
        self.skip_ws()
        if self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1
            return True
        return False

    def token(self) -> str:
        """The leaf text from here to the next STOP character (consumed)."""
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in STOP:
            self.pos += 1
        return self.text[start:self.pos]

    def parse(self) -> N:
        self.skip_ws()
        if self.pos >= len(self.text):
            raise self.fail(self.empty)
        node = self.selection()
        self.skip_ws()
        if self.pos < len(self.text):
            raise self.fail("unbalanced ')'" if self.text[self.pos] == ")"
                            else "expected ',', '|', ';' or the end")
        return node

    def selection(self) -> N:
        children = [self.conjunction()]
        while self.eat(",|"):
            children.append(self.conjunction())
        return combine(self.any_node, children)

    def conjunction(self) -> N:
        children = [self.primary()]
        while self.eat(";"):
            children.append(self.primary())
        return combine(self.all_node, children)

    def primary(self) -> N:
        self.skip_ws()
        start = self.pos
        if self.eat("("):
            node = self.selection()
            if not self.eat(")"):
                raise self.fail(f"missing ')' for the '(' at position {start + 1}")
            return node
        return self.leaf()

    def leaf(self) -> N:
        raise NotImplementedError
