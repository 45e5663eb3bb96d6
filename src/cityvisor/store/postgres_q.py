"""The NGSI-LD q language (clause 4.9) as PostgreSQL SQL over the JSONB stored form.

``q_sql`` translates a q tree (``ngsild.query``) into a WHERE fragment over the ``doc`` JSONB
column with the semantics of ``ngsild.query.evaluate``: every term is an ``EXISTS`` over the
attribute's instances (``jsonb_array_elements``), then over the instance's candidate values
(the same per-type choice as ``evaluate``: ``value`` unwrapped from ``@value``, ``object``,
``valueList``, ``vocab``, ``json``, the leaves of ``languageMap`` and of ``objectList``), each
compared under a ``CASE`` on ``jsonb_typeof`` so that comparisons stay type-strict and never
raise (a string is never cast to a number). ``!=`` is ``NOT EXISTS`` of an equal candidate on
an instance that has the target, as clause 4.9 defines it. It mirrors ``sqlite_q`` (which uses
``json_each`` where this uses ``jsonb_array_elements``) rather than JSON path expressions:
PostgreSQL's lax ``jsonpath`` unwraps nested arrays in filters, which ``evaluate`` does not.

Two kinds of terms are a prefilter only (``exact`` False: the store re-checks the candidates
with ``evaluate``): unquoted datetimes, which compare as instants of strings in any ISO 8601
form, and ``~=`` patterns that ``posix_pattern`` cannot translate exactly from Python's
regular expressions into PostgreSQL's (ARE).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cityvisor.ngsild.query import (
    ANY_LANGUAGE,
    COMPOUND_KEYS,
    ORDERING_OPS,
    And,
    Compare,
    Exists,
    Literal,
    Match,
    Or,
    Path,
    QNode,
    Range,
    ValueList,
)
from cityvisor.ngsild.typequery import TypeNode
from cityvisor.store.base import EntitySelector


@dataclass
class Params:
    """The positional parameters of one statement: ``params(value, "text")`` -> ``$3::text``."""

    values: list[Any] = field(default_factory=list)

    def __call__(self, value: Any, cast: str = "") -> str:
        self.values.append(value)
        return f"${len(self.values)}" + (f"::{cast}" if cast else "")


# ---------------------------------------------------------------------------- regex


_SPECIAL = set("\\^$.|?*+()[]{}")
_CLASS_ESCAPES = set("dwsDWS")


def posix_pattern(pattern: str, *, single_line: bool) -> str | None:
    """A PostgreSQL ARE pattern with the meaning of Python's ``re.search(pattern)``, or None
    when the pattern uses syntax whose meaning differs (or that is not translated).

    ``single_line``: the subject never holds a new line (entity ids), so ``.`` and ``$``
    keep their spelling; otherwise ``.`` becomes ``[^\\n]`` and ``$`` ``\\n?$`` (Python's
    ``$`` also matches before a final new line). ``\\d``, ``\\w``, ``\\s`` are kept only for
    single-line subjects (ASCII identifiers, where both engines agree)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    quantified = False  # the previous token is a quantifier
    while i < n:
        char = pattern[i]
        if char == "\\":
            if i + 1 >= n:
                return None
            escaped = pattern[i + 1]
            kept = (escaped in "AZnt" or not escaped.isalnum()
                    or (escaped in _CLASS_ESCAPES and single_line))
            if not kept:
                return None
            out.append("\\" + escaped)
            i += 2
            quantified = False
            continue
        if char in "*+?":
            if quantified:
                if char == "?" and pattern[i - 1] != "?":
                    out.append("?")  # lazy: the same matches exist
                    i += 1
                    continue
                return None
            if not out:
                return None
            out.append(char)
            quantified = True
            i += 1
            continue
        quantified = False
        if char == "[":
            end = _class_end(pattern, i)
            if end is None:
                return None
            body = pattern[i + 1:end]
            translated = _class_body(body, single_line)
            if translated is None:
                return None
            out.append("[" + translated + "]")
            i = end + 1
            continue
        if char == "(":
            if pattern.startswith("(?:", i):
                out.append("(?:")
                i += 3
                continue
            if pattern.startswith("(?", i):
                return None
            out.append("(")
        elif char in ")|^":
            out.append(char)
        elif char == ".":
            out.append("." if single_line else "[^\\n]")
        elif char == "$":
            out.append("$" if single_line else "\\n?$")
        elif char in "{}]":
            return None
        else:
            out.append(char)
        i += 1
    return "".join(out)


def selectors_sql(selectors: Sequence[EntitySelector], p: Params, alias: str,
                  types_sql: Callable[[TypeNode], str]) -> tuple[str | None, bool]:
    """The OR of the entity selectors over the table ``alias`` (each the AND of its ids,
    idPattern and type selection, ``types_sql`` rendering the latter), or None when there is
    none; False when an idPattern has no exact translation: the SQL is then a wider prefilter
    that the caller narrows in Python (``rechecks.selected``)."""
    exact = True
    alternatives: list[str] = []
    for selector in selectors:
        parts: list[str] = []
        if selector.ids is not None:
            parts.append(f"{alias}.id = ANY({p(list(selector.ids), 'text[]')})")
        if selector.id_pattern is not None:
            pattern = posix_pattern(selector.id_pattern, single_line=True)
            if pattern is None:
                exact = False
            else:
                parts.append(f"{alias}.id ~ {p(pattern, 'text')}")
        if selector.types is not None:
            parts.append(types_sql(selector.types))
        alternatives.append("(" + " AND ".join(parts) + ")" if parts else "TRUE")
    if not alternatives:
        return None, exact
    if len(alternatives) == 1:
        return alternatives[0], exact
    return "(" + " OR ".join(alternatives) + ")", exact


def _class_end(pattern: str, start: int) -> int | None:
    """The index of the ``]`` closing the class opened at ``start``."""
    i = start + 1
    if i < len(pattern) and pattern[i] == "^":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        return None  # a leading ']' is literal in both, but left out: rare
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern[i] == "]":
            return i
        i += 1
    return None


def _class_body(body: str, single_line: bool) -> str | None:
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "[":
            return None  # [: [. [= are POSIX classes in ARE, literals in Python
        if char == "\\":
            escaped = body[i + 1]
            if escaped in "nt" or not escaped.isalnum() or (escaped in "dws" and single_line):
                out.append("\\" + escaped)
            else:
                return None
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


# ---------------------------------------------------------------------------- q


def _get(x: str, key: str) -> str:
    """``x -> 'key'`` for a constant key (a member name of the stored form)."""
    return f"({x} -> '{key}')"


def _flat(value: str) -> str:
    """A JSONB array of the candidates of a value: an array's elements, a value itself (an
    object or a JSON null never satisfies a comparison, so they need no filtering)."""
    return f"(CASE WHEN jsonb_typeof({value}) = 'array' THEN {value} ELSE jsonb_build_array({value}) END)"


def _unwrapped(value: str) -> str:
    return f"(CASE WHEN jsonb_typeof({value}) = 'object' THEN {value} -> '@value' ELSE {value} END)"


_ALL_LEAVES = "'strict $.**'"
_ARRAY_ITEMS = "'strict $.** ? (@.type() == \"array\")[*]'"
_OBJECT_MEMBERS = "'lax $.** ? (@.type() == \"object\").object'"


def _literals(operand: Literal | Range | ValueList) -> tuple[Literal, ...]:
    if isinstance(operand, Range):
        return (operand.low, operand.high)
    if isinstance(operand, ValueList):
        return operand.values
    return (operand,)


class _Builder:
    """Generates the SQL of one tree; ``exact`` drops to False on any prefilter."""

    def __init__(self, doc: str, params: Params) -> None:
        self.doc = doc
        self.p = params
        self.exact = True
        self.aliases = 0

    def alias(self) -> str:
        self.aliases += 1
        return f"q{self.aliases}"

    def node(self, node: QNode) -> str:
        if isinstance(node, (And, Or)):
            joiner = " AND " if isinstance(node, And) else " OR "
            return "(" + joiner.join(self.node(c) for c in node.children) + ")"
        if isinstance(node, Exists):
            sql = self.any_instance(node.path, lambda x: self.has(node.path, x))
            return f"(NOT {sql})" if node.negated else sql
        pattern = None
        if isinstance(node, Match):
            pattern = posix_pattern(node.pattern, single_line=False)
        if (isinstance(node, Compare) and any(lit.family == "datetime"
                                              for lit in _literals(node.operand))) or (
                isinstance(node, Match) and pattern is None):
            # a prefilter: every matching entity has an instance at the path
            self.exact = False
            return self.any_instance(node.path, lambda x: "TRUE")
        if isinstance(node, Compare) and node.op == "!=":
            equal = Compare(node.path, "==", node.operand)
            return self.any_instance(node.path, lambda x: (
                f"({self.has(node.path, x)} AND NOT "
                f"{self.some_candidate(equal, x, lambda c: self.scalar(equal, c, None))})"))
        return self.any_instance(node.path, lambda x: self.some_candidate(
            node, x, lambda c: self.scalar(node, c, pattern)))

    def any_instance(self, path: Path, cond: Callable[[str], str]) -> str:
        """Some instance of the attribute (or the sub-attribute instance in it) satisfies."""
        alias = self.alias()
        x = f"{alias}.i"
        for sub in path.subs:
            x = f"({x} -> 'subs' -> {self.p(sub, 'text')})"
        return (f"EXISTS (SELECT 1 FROM jsonb_array_elements({self.doc} -> 'attrs' -> "
                f"{self.p(path.attr, 'text')}) AS {alias}(i) "
                f"WHERE jsonb_typeof({x}) = 'object' AND {cond(x)})")

    def has(self, path: Path, x: str) -> str:
        """The (sub-)attribute instance ``x`` has what the path names (``_has_target``)."""
        if path.meta is not None:
            return f"({x} ? {self.p(path.meta, 'text')})"
        if not path.members:
            return "TRUE"
        branches = []
        for kind, key in COMPOUND_KEYS.items():
            parent = self.members(_get(x, key), path.members[:-1])
            last = self.p(path.members[-1], "text")
            branches.append(f"WHEN '{kind}' THEN coalesce(jsonb_typeof({parent}) = 'object' "
                            f"AND {parent} ? {last}, FALSE)")
        if len(path.members) == 1:
            language_map = _get(x, "languageMap")
            tag = path.members[0]
            present = (f"{language_map} <> '{{}}'::jsonb" if tag == ANY_LANGUAGE
                       else f"{language_map} ? {self.p(tag, 'text')}")
            branches.append(f"WHEN 'LanguageProperty' THEN (jsonb_typeof({language_map}) = "
                            f"'object' AND {present})")
        return f"(CASE {x} ->> 'type' {' '.join(branches)} ELSE FALSE END)"

    def members(self, value: str, members: tuple[str, ...]) -> str:
        """``value[m1][m2]...``: each step only into an object (as ``evaluate`` walks)."""
        for member in members:
            value = (f"(CASE WHEN jsonb_typeof({value}) = 'object' THEN {value} -> "
                     f"{self.p(member, 'text')} END)")
        return value

    def candidates(self, node: Compare | Match, x: str) -> str:
        """A JSONB array of the values of instance ``x`` that the term compares."""
        path = node.path
        if path.meta is not None:
            return f"jsonb_build_array({x} -> {self.p(path.meta, 'text')})"
        if path.members:
            branches = [f"WHEN '{kind}' THEN {_flat(self.members(_get(x, key), path.members))}"
                        for kind, key in COMPOUND_KEYS.items()]
            if len(path.members) == 1:
                language_map = (f"(CASE WHEN jsonb_typeof({x} -> 'languageMap') = 'object' "
                                f"THEN {x} -> 'languageMap' END)")
                tag = path.members[0]
                texts = (f"jsonb_path_query_array({language_map}, {_ALL_LEAVES})"
                         if tag == ANY_LANGUAGE
                         else _flat(f"({language_map} -> {self.p(tag, 'text')})"))
                branches.append(f"WHEN 'LanguageProperty' THEN {texts}")
            return f"(CASE {x} ->> 'type' {' '.join(branches)} ELSE '[]'::jsonb END)"
        # a Relationship's object has no order (clause 4.9)
        ordering = isinstance(node, Compare) and node.op in ORDERING_OPS
        value = _flat(_unwrapped(_get(x, "value")))
        branches = [f"WHEN 'Property' THEN {value}", f"WHEN 'GeoProperty' THEN {value}",
                    f"WHEN 'ListProperty' THEN {_flat(_get(x, 'valueList'))}",
                    f"WHEN 'VocabProperty' THEN {_flat(_get(x, 'vocab'))}",
                    f"WHEN 'JsonProperty' THEN {_flat(_get(x, 'json'))}",
                    f"WHEN 'LanguageProperty' THEN jsonb_path_query_array({x} -> 'languageMap', "
                    f"{_ALL_LEAVES})"]
        if not ordering:
            objects = _get(x, "objectList")
            branches += [f"WHEN 'Relationship' THEN {_flat(_get(x, 'object'))}",
                         f"WHEN 'ListRelationship' THEN (jsonb_path_query_array({objects}, "
                         f"{_ARRAY_ITEMS}) || jsonb_path_query_array({objects}, "
                         f"{_OBJECT_MEMBERS}) || jsonb_build_array({objects}))"]
        return f"(CASE {x} ->> 'type' {' '.join(branches)} ELSE '[]'::jsonb END)"

    def some_candidate(self, node: Compare | Match, x: str, cond: Callable[[str], str]) -> str:
        alias = self.alias()
        return (f"EXISTS (SELECT 1 FROM jsonb_array_elements({self.candidates(node, x)}) "
                f"AS {alias}(c) WHERE {cond(f'{alias}.c')})")

    def scalar(self, node: Compare | Match, c: str, pattern: str | None) -> str:
        """The term on one candidate ``c`` (JSONB); NULL or FALSE when incomparable."""
        if isinstance(node, Match):
            assert pattern is not None
            op = "!~" if node.negated else "~"
            return (f"(CASE WHEN jsonb_typeof({c}) = 'string' THEN ({c} #>> '{{}}') {op} "
                    f"{self.p(pattern, 'text')} END)")
        operand = node.operand
        if isinstance(operand, ValueList):
            assert node.op == "=="
            return "(" + " OR ".join(self.compare(c, "=", v) for v in operand.values) + ")"
        if isinstance(operand, Range):
            typed, value = self.typed(c, operand.low)
            low, high = self.param(operand.low), self.param(operand.high)
            between = "BETWEEN" if node.op == "==" else "NOT BETWEEN"
            return f"(CASE WHEN {typed} THEN {value} {between} {low} AND {high} END)"
        return self.compare(c, "=" if node.op == "==" else node.op, operand)

    def compare(self, c: str, op: str, literal: Literal) -> str:
        if literal.family == "bool":
            wanted = "true" if literal.value else "false"
            return f"({c} = '{wanted}'::jsonb)" if op == "=" else f"({c} <> '{wanted}'::jsonb)"
        typed, value = self.typed(c, literal)
        return f"(CASE WHEN {typed} THEN {value} {op} {self.param(literal)} END)"

    @staticmethod
    def typed(c: str, literal: Literal) -> tuple[str, str]:
        """(the JSON type test, the SQL value) of a candidate in the literal's family."""
        if literal.family == "number":
            return f"jsonb_typeof({c}) = 'number'", f"({c})::numeric"
        return f"jsonb_typeof({c}) = 'string'", f"(({c} #>> '{{}}') COLLATE \"C\")"

    def param(self, literal: Literal) -> str:
        if literal.family == "number":
            return self.p(literal.value, "numeric")
        return self.p(str(literal.value), "text")


def q_sql(node: QNode, params: Params, doc_column: str = "e.doc") -> tuple[str, bool]:
    """(WHERE fragment, exact) of a q tree over the JSONB document column."""
    builder = _Builder(doc_column, params)
    sql = builder.node(node)
    return sql, builder.exact
