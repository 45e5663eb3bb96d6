"""The Scope query language (clause 4.19): grammar and matching."""

from __future__ import annotations

import re

import pytest

from cityvisor.ngsild.errors import BadRequestData
from cityvisor.ngsild.scopequery import (
    ScopeAll,
    ScopeAny,
    ScopeExpr,
    matches_scopes,
    parse_scope_q,
)

BOTH = ["/Madrid/Gardens/ParqueNorte", "/CompanyA/OrganizationB/UnitC"]
ONE = ["/Madrid/Gardens/ParqueNorte"]


@pytest.mark.parametrize(("text", "scopes", "expected"), [
    ("/Madrid/Gardens/ParqueNorte", ONE, True),
    ("/Madrid/Gardens", ONE, False),  # a plain scope is exact
    ("/Madrid/Gardens/#", ONE, True),  # '#': the scope and every scope below it
    ("/Madrid/Gardens/ParqueNorte/#", ONE, True),
    ("/Madrid/+/ParqueNorte", ONE, True),  # '+': any one level
    ("/Madrid/+", ONE, False),
    ("/#", ONE, True),
    ("/#", [], False),  # an entity without scope matches no expression
    ("(/Madrid/Gardens/ParqueNorte;/CompanyA/OrganizationB/UnitC)", BOTH, True),
    ("(/Madrid/Gardens/ParqueNorte;/CompanyA/OrganizationB/UnitC)", ONE, False),
    ("(/Madrid/Gardens/ParqueNorte;/CompanyA/OrganizationB/UnitC)|/Madrid/Gardens/ParqueNorte",
     ONE, True),
    ("/CompanyA/OrganizationB/UnitC|/Nowhere/AtAll", BOTH, True),
    ("/CompanyA/OrganizationB/UnitC,/Nowhere/AtAll", ONE, False),
    ("(/Madrid/Gardens/ParqueNorte;/Nowhere/AtAll)", BOTH, False),
    ("/A.B/C*", ["/A.B/C*"], True),  # names are literal, never patterns
    ("/A.B/C*", ["/AxB/Cdd"], False),
])
def test_matching(text: str, scopes: list[str], expected: bool) -> None:
    assert matches_scopes(parse_scope_q(text), scopes) is expected


def test_and_binds_tighter_than_or() -> None:
    node = parse_scope_q("/a;/b|/c")
    assert node == ScopeAny((ScopeAll((ScopeExpr("/a"), ScopeExpr("/b"))), ScopeExpr("/c")))


@pytest.mark.parametrize("text", ["", "a/b", "/a//b", "/a/#/b", "/a+/b", "(/a", "/a)", "/a;",
                                  "/a|", "()"])
def test_syntax_errors_are_400(text: str) -> None:
    with pytest.raises(BadRequestData):
        parse_scope_q(text)


@pytest.mark.parametrize("text", ["/a/b", "/a/+/c", "/a/#", "/#", "/a.b/+/#"])
def test_the_regex_agrees_with_matching(text: str) -> None:
    expr = parse_scope_q(text)
    assert isinstance(expr, ScopeExpr)
    for scope in ["/a", "/a/b", "/a/b/c", "/a/x/c", "/a.b/y/z", "/axb/y", "/b", "/a/b\n"]:
        assert (re.search(expr.regex, scope) is not None) is expr.matches(scope), scope
