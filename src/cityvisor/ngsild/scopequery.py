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
from cityvisor.ngsild.selection import SelectionParser

__all__ = ["ScopeAll", "ScopeAny", "ScopeExpr", "ScopeNode", "matches_scopes", "parse_scope_q"]



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


class _Parser(SelectionParser[ScopeNode]):
    """A scope query (clause 4.19): leaves are scope expressions."""

    what, param, empty = "scopeQ", "scopeQ", "the expression is empty"
    all_node, any_node = ScopeAll, ScopeAny

    def leaf(self) -> ScopeNode:
        start = self.pos
        text = self.token()
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
