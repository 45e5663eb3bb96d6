"""The Scope query language (ETSI GS CIM 009 v1.8, clause 4.19): the ``scopeQ`` parameter.

Grammar (clause 4.19)::

    scopeQ  := all ( ( '|' | ',' ) all )*      # OR ("," is an alternative spelling of "|")
    all     := primary ( ';' primary )*        # AND, binds tighter than OR
    primary := '(' scopeQ ')' | scope
    scope   := '/#' | '/' level ( '/' level )* [ '/#' ]
    level   := a name (no '/', ';', '|', ',', '(', ')', '#' or '+') | '+'

An entity matches a scope expression when ONE of its scopes does (an entity without scope
matches none): ``/a/b`` is exactly that scope, ``+`` stands for any one level, a trailing
``/#`` for the scope before it and every scope below it, and ``/#`` alone for any scope.
Each expression is also given as an anchored regular expression (:attr:`ScopeExpr.regex`) so
that a store can evaluate it in its engine with exactly these semantics.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Union

from cityvisor.ngsild.errors import BadRequestData

__all__ = ["ScopeAll", "ScopeAny", "ScopeExpr", "ScopeNode", "matches_scopes", "parse_scope_q"]

_STOP = set(",|;()") | {" ", "\t", "\r", "\n"}


@dataclass(frozen=True)
class ScopeExpr:
    """One scope expression, e.g. ``/Madrid/+/Parks/#``."""

    text: str

    @property
    def regex(self) -> str:
        """An anchored Python regular expression matching the scopes it selects."""
        return _regex(self.text)

    def matches(self, scope: str) -> bool:
        return _compiled(self.text).match(scope) is not None

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class ScopeAll:
    """``a;b``: every expression matches one of the entity's scopes."""

    children: tuple[ScopeNode, ...]

    def __str__(self) -> str:
        return "(" + ";".join(str(c) for c in self.children) + ")"


@dataclass(frozen=True)
class ScopeAny:
    """``a|b`` (or ``a,b``): one of the expressions matches."""

    children: tuple[ScopeNode, ...]

    def __str__(self) -> str:
        return "|".join(str(c) for c in self.children)


ScopeNode = Union[ScopeExpr, ScopeAll, ScopeAny]  # noqa: UP007 - a runtime alias


def _regex(text: str) -> str:
    if text == "/#":
        return r"\A/.*\Z"
    levels = text[1:].split("/")
    tail = ""
    if levels[-1] == "#":
        levels.pop()
        tail = "(?:/.*)?"
    body = "".join("/" + ("[^/]+" if level == "+" else re.escape(level)) for level in levels)
    return r"\A" + body + tail + r"\Z"


_CACHE: dict[str, re.Pattern[str]] = {}


def _compiled(text: str) -> re.Pattern[str]:
    pattern = _CACHE.get(text)
    if pattern is None:
        if len(_CACHE) > 1024:
            _CACHE.clear()
        pattern = _CACHE[text] = re.compile(_regex(text))
    return pattern


class _Parser:
    """Recursive descent over one scope query (clause 4.19)."""

    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def fail(self, message: str) -> BadRequestData:
        found = self.text[self.pos:self.pos + 20]
        where = f"found {found!r}" if found else "found the end of the expression"
        return BadRequestData(f"Invalid scopeQ at position {self.pos + 1}: {message}, {where} "
                              f"(scopeQ={self.text!r})")

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def eat(self, chars: str) -> bool:
        self.skip_ws()
        if self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1
            return True
        return False

    def parse(self) -> ScopeNode:
        self.skip_ws()
        if self.pos >= len(self.text):
            raise self.fail("the expression is empty")
        node = self.selection()
        self.skip_ws()
        if self.pos < len(self.text):
            raise self.fail("unbalanced ')'" if self.text[self.pos] == ")"
                            else "expected ',', '|', ';' or the end")
        return node

    def selection(self) -> ScopeNode:
        children = [self.conjunction()]
        while self.eat(",|"):
            children.append(self.conjunction())
        return _combine(ScopeAny, children)

    def conjunction(self) -> ScopeNode:
        children = [self.primary()]
        while self.eat(";"):
            children.append(self.primary())
        return _combine(ScopeAll, children)

    def primary(self) -> ScopeNode:
        self.skip_ws()
        if self.eat("("):
            start = self.pos
            node = self.selection()
            if not self.eat(")"):
                raise self.fail(f"missing ')' for the '(' at position {start}")
            return node
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _STOP:
            self.pos += 1
        text = self.text[start:self.pos]
        self.pos = start
        self._check(text)
        self.pos += len(text)
        return ScopeExpr(text)

    def _check(self, text: str) -> None:
        if not text.startswith("/"):
            raise self.fail("a scope starts with '/'")
        if text == "/#":
            return
        levels = text[1:].split("/")
        for index, level in enumerate(levels):
            last = index == len(levels) - 1
            if not level:
                raise self.fail("a scope has an empty level")
            if level == "#" and not last:
                raise self.fail("'#' may only be the last level")
            if level not in ("+", "#") and ("+" in level or "#" in level):
                raise self.fail("'+' and '#' stand for whole levels")


def _combine(cls: type[ScopeAll | ScopeAny], children: list[ScopeNode]) -> ScopeNode:
    if len(children) == 1:
        return children[0]
    flat: list[ScopeNode] = []
    for child in children:
        flat.extend(child.children if isinstance(child, cls) else (child,))
    return cls(tuple(flat))


def parse_scope_q(text: str) -> ScopeNode:
    """Parse a ``scopeQ`` (clause 4.19); raise BadRequestData on a syntax error."""
    if not isinstance(text, str):
        raise BadRequestData(f"scopeQ must be a string, got {text!r}")
    return _Parser(text).parse()


def matches_scopes(node: ScopeNode, scopes: Iterable[str] | None) -> bool:
    """True if an entity with these scopes satisfies the scope query."""
    values = [s for s in scopes or () if isinstance(s, str)]
    return _matches(node, values)


def _matches(node: ScopeNode, scopes: list[str]) -> bool:
    if isinstance(node, ScopeExpr):
        return any(node.matches(s) for s in scopes)
    if isinstance(node, ScopeAll):
        return all(_matches(c, scopes) for c in node.children)
    return any(_matches(c, scopes) for c in node.children)
