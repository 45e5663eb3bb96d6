"""Engine-neutral pieces of the SQL backends' filters: the boolean structure of selections.

Type selections (clause 4.17) and scope queries (clause 4.19) are trees of AND/OR over leaves
(a type name, a scope expression). ``selection_sql`` renders such a tree as SQL given the SQL
of one leaf; each backend supplies its leaf (and its placeholder style), so that the SQLite and
PostgreSQL translations share the structure instead of copying it. ``order_columns`` does the
same for an ``orderBy`` (clause 4.23) on the entity columns.
"""

from __future__ import annotations

from collections.abc import Callable

from cityvisor.ngsild.ordering import Ordering
from cityvisor.ngsild.scopequery import ScopeAll, ScopeAny, ScopeExpr, ScopeNode
from cityvisor.ngsild.typequery import TypeAll, TypeAny, TypeName, TypeNode


def type_selection_sql(node: TypeNode, leaf: Callable[[TypeName], str]) -> str:
    """SQL for a type selection: ``leaf(name)`` tests one type, combined with AND/OR.

    ``leaf`` is called once per leaf, left to right, so a backend with positional
    placeholders can append the leaf's parameters as it is called."""
    if isinstance(node, TypeName):
        return f"({leaf(node)})"
    joiner = " AND " if isinstance(node, TypeAll) else " OR "
    assert isinstance(node, (TypeAll, TypeAny))
    return "(" + joiner.join(type_selection_sql(c, leaf) for c in node.children) + ")"


def scope_selection_sql(node: ScopeNode, leaf: Callable[[ScopeExpr], str]) -> str:
    """SQL for a scope query: ``leaf(expression)`` tests one scope expression (same calling
    order as ``type_selection_sql``)."""
    if isinstance(node, ScopeExpr):
        return leaf(node)
    joiner = " AND " if isinstance(node, ScopeAll) else " OR "
    assert isinstance(node, (ScopeAll, ScopeAny))
    return "(" + joiner.join(scope_selection_sql(c, leaf) for c in node.children) + ")"


def order_columns(order: Ordering, columns: dict[str, str], tie: str) -> str | None:
    """An ORDER BY over entity columns when every key is one of them (``columns``: entity
    member -> column, never absent, compared in code point order as ``ordering.page``
    does), ties by ``tie`` (insertion order); None if a key needs ``ordering.page``."""
    if order.collation is not None:
        return None
    terms = []
    for key in order.keys:
        column = columns.get(key.member or "")
        if column is None:
            return None
        terms.append(column + (" DESC" if key.descending else ""))
    return ", ".join([*terms, tie])
