"""The NGSI-LD q language (clause 4.9) as SQLite SQL over the stored JSON document.

``to_sql`` translates a q tree (``ngsild.query``) into a WHERE fragment over the document
column, exact where it can be (same semantics as ``ngsild.query.evaluate``, checked by a
property test), a safe prefilter where it cannot (the store then re-checks the candidates
with ``evaluate``). ``q_sql`` answers simple comparisons from the ``attr_values`` index
instead. ``type_sql`` does the same for entity type expressions (clause 4.17), ``scope_sql``
for scope queries (clause 4.19).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cityvisor.ngsild.query import (
    ANY_LANGUAGE,
    COMPOUND_KEYS,
    FLAT_TYPES,
    KEY_BY_TYPE,
    ORDERING_OPS,
    RELATIONSHIP_TYPES,
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
    index_family,
    pattern_matches,
)
from cityvisor.ngsild.scopequery import ScopeExpr, ScopeNode
from cityvisor.ngsild.typequery import TypeName, TypeNode
from cityvisor.store.sql_selection import scope_selection_sql, type_selection_sql

#: ``attr_values.kind`` of each value family
VALUE_KINDS = {"number": "n", "string": "s", "bool": "b"}


_INT64 = 2**63


def _beyond_int64(node: QNode) -> bool:
    """Whether a comparison has an integer literal that SQLite cannot bind."""
    if not isinstance(node, Compare):
        return False
    operand = node.operand
    literals = ((operand.low, operand.high) if isinstance(operand, Range) else
                operand.values if isinstance(operand, ValueList) else (operand,))
    return any(type(literal.value) is int and not -_INT64 <= literal.value < _INT64
               for literal in literals)


def sqlite_regexp(pattern: str, value: object) -> int:
    """The ``ngsi_regexp(pattern, text)`` SQL function (idPattern): 1 if it matches."""
    return int(pattern_matches(pattern, value))


def type_sql(node: TypeNode, types_column_sql: Callable[[str], str]) -> tuple[str, list[str]]:
    """A WHERE fragment for a type selection.

    ``types_column_sql(iri)`` returns the SQL test for ONE type with exactly one ``?``
    placeholder, e.g. ``EXISTS(SELECT 1 FROM entity_types t WHERE t.entity = e.rowid AND
    t.type = ?)``; the IRI is appended to the params once per term, in order.
    """
    params: list[str] = []

    def leaf(name: TypeName) -> str:
        params.append(name.iri)
        return types_column_sql(name.iri)

    return type_selection_sql(node, leaf), params


def scope_sql(node: ScopeNode, doc_column: str) -> tuple[str, list[str]]:
    """A WHERE fragment for a scope query (clause 4.19), exact: each scope expression is its
    anchored regular expression (``ScopeExpr.regex``) tried on every scope of the entity."""
    params: list[str] = []

    def leaf(expression: ScopeExpr) -> str:
        params.append(expression.regex)
        return (f"EXISTS(SELECT 1 FROM json_each({doc_column}, '$.scope') AS s "
                "WHERE s.type = 'text' AND ngsi_regexp(?, s.value))")

    return scope_selection_sql(node, leaf), params


@dataclass(frozen=True)
class SqlFilter:
    """A WHERE fragment with ``?`` params; ``exact`` when it has the semantics of evaluate."""

    sql: str
    params: list[Any]
    exact: bool


_SCALAR_TYPES = {"number": "('integer','real')", "string": "('text')", "datetime": "('text')"}
_NONE_PATH = "'$.\"#none\"'"
_JD_TOLERANCE = 3 / 86_400_000  # 3 ms in days: SQLite rounds to milliseconds


def _lit(path: str) -> str:
    """A JSON path as an SQL string literal."""
    return "'" + path.replace("'", "''") + "'"


def _key(name: str) -> str:
    """A quoted JSON path label (names with a double quote are rejected by the parser)."""
    return '."' + name + '"'


class _SqlBuilder:
    """Generates the SQL of one tree; ``exact`` drops to False on any approximation."""

    def __init__(self, doc: str) -> None:
        self.doc = doc
        self.exact = True
        self.aliases = 0

    def alias(self) -> str:
        self.aliases += 1
        return f"q{self.aliases}"

    def node(self, node: QNode) -> tuple[str, list[Any]]:
        if isinstance(node, (And, Or)):
            parts = [self.node(c) for c in node.children]
            joiner = " AND " if isinstance(node, And) else " OR "
            return ("(" + joiner.join(p[0] for p in parts) + ")",
                    [x for p in parts for x in p[1]])
        if isinstance(node, Exists):
            sql, params = self.any_instance(node.path, lambda x, p: (self.exists_in(node.path,
                                                                                    x, p), []))
            return (f"NOT COALESCE({sql}, 0)" if node.negated else f"COALESCE({sql}, 0)"), params
        if isinstance(node, Compare) and node.op == "!=":
            return self.any_instance(node.path, lambda x, p: self.unequal_in(node, x, p))
        return self.any_instance(node.path, lambda x, p: self.compare_in(node, x, p))

    def unequal_in(self, node: Compare, x: str, p: str) -> tuple[str, list[Any]]:
        """The instance at x/p has the target and no candidate equal to the operand (``!=``
        negates ``==`` instance by instance); an approximate equality cannot be negated, so
        then every instance with the target stays a candidate."""
        outer, self.exact = self.exact, True
        equal_sql, params = self.compare_in(Compare(node.path, "==", node.operand), x, p)
        negatable, self.exact = self.exact, outer and self.exact
        has = self.exists_in(node.path, x, p)
        if not negatable:
            return f"({has})", []
        return f"({has} AND NOT COALESCE({equal_sql}, 0))", params

    def any_instance(self, path: Path, cond: Callable[[str, str], tuple[str, list[Any]]]
                     ) -> tuple[str, list[Any]]:
        """ANY instance: the first one by path, the others through json_each if there are."""
        attr = "$.attrs" + _key(path.attr)
        subs = "".join(".subs" + _key(s) for s in path.subs)
        first_sql, first_params = cond(self.doc, attr + "[0]" + subs)
        alias = self.alias()
        rest_sql, rest_params = cond(f"{alias}.value", "$" + subs)
        sql = (f"({first_sql} OR (json_array_length({self.doc}, {_lit(attr)}) > 1 AND "
               f"EXISTS(SELECT 1 FROM json_each({self.doc}, {_lit(attr)}) AS {alias} "
               f"WHERE {alias}.key > 0 AND {alias}.type = 'object' AND {rest_sql})))")
        return sql, first_params + rest_params

    @staticmethod
    def exists_in(path: Path, x: str, p: str) -> str:
        """The (sub-)attribute instance at x/p has the path's metadata or member."""
        if path.meta is not None:
            return f"json_type({x}, {_lit(p + '.' + path.meta)}) IS NOT NULL"
        if not path.members:
            return f"json_type({x}, {_lit(p)}) = 'object'"
        members = "".join(_key(m) for m in path.members)
        branches = " ".join(
            f"WHEN '{kind}' THEN json_type({x}, {_lit(p + '.' + key + members)}) IS NOT NULL"
            for kind, key in COMPOUND_KEYS.items())
        if len(path.members) == 1:  # a language filter (clause 4.9)
            language_map = _lit(p + ".languageMap")
            tag = path.members[0]
            present = (f"EXISTS(SELECT 1 FROM json_each({x}, {language_map}))"
                       if tag == ANY_LANGUAGE else
                       f"json_type({x}, {_lit(p + '.languageMap' + _key(tag))}) IS NOT NULL")
            branches += (f" WHEN 'LanguageProperty' THEN (json_type({x}, {language_map}) = "
                         f"'object' AND {present})")
        return f"(CASE json_extract({x}, {_lit(p + '.type')}) {branches} ELSE 0 END)"

    def compare_in(self, node: Compare | Match, x: str, p: str) -> tuple[str, list[Any]]:
        """Some candidate value of the instance at x/p satisfies the comparison."""
        path = node.path
        if path.meta is not None:
            meta = _lit(p + "." + path.meta)
            return self.scalar(node, f"json_type({x}, {meta})", f"json_extract({x}, {meta})")
        kind = f"json_extract({x}, {_lit(p + '.type')})"
        if path.members:
            members = "".join(_key(m) for m in path.members)
            branches = " ".join(f"WHEN '{k}' THEN {_guarded(x, p + '.' + key + members)}"
                                for k, key in COMPOUND_KEYS.items())
            if len(path.members) == 1 and path.members[0] != ANY_LANGUAGE:
                # a language filter: the texts of one language (clause 4.9)
                branches += (" WHEN 'LanguageProperty' THEN "
                             f"{_guarded(x, p + '.languageMap' + members)}")
            sql, params = self.each(node, "json_each", f"{x}, CASE {kind} {branches} ELSE "
                                    f"{_NONE_PATH} END", "")
            if path.members == (ANY_LANGUAGE,):
                every_sql, every_params = self.each(node, "json_tree",
                                                    f"{x}, {_lit(p + '.languageMap')}", "")
                sql = f"({sql} OR ({kind} = 'LanguageProperty' AND {every_sql}))"
                params = params + every_params
            return sql, params
        value = _lit(p + ".value")
        fast_sql, fast_params = self.scalar(node, f"json_type({x}, {value})",
                                            f"json_extract({x}, {value})")
        unwrapped = _guarded(x, p + '.value."@value"')
        property_path = (f"CASE json_type({x}, {value}) WHEN 'array' THEN {value} "
                         f"WHEN 'object' THEN {unwrapped} ELSE {_NONE_PATH} END")
        # a Relationship's object has no order (clause 4.9)
        ordering = isinstance(node, Compare) and node.op in ORDERING_OPS
        paths = {k: property_path if k in ("Property", "GeoProperty")
                 else _guarded(x, p + "." + KEY_BY_TYPE[k]) for k in FLAT_TYPES
                 if not (ordering and k in RELATIONSHIP_TYPES)}
        branches = " ".join(f"WHEN '{k}' THEN {path_sql}" for k, path_sql in paths.items())
        flat_sql, flat_params = self.each(node, "json_each",
                                          f"{x}, CASE {kind} {branches} ELSE {_NONE_PATH} END",
                                          "")
        lang_sql, lang_params = self.each(node, "json_tree",
                                          f"{x}, {_lit(p + '.languageMap')}", "")
        rel_sql, rel_params = self.each(
            node, "json_tree", f"{x}, {_lit(p + '.objectList')}",
            "(c.parent IS NULL OR typeof(c.key) = 'integer' OR c.key = 'object') AND ")
        if ordering:
            rel_sql, rel_params = "0", []
        sql = (f"(({kind} IN ('Property', 'GeoProperty') AND {fast_sql}) OR {flat_sql} OR "
               f"({kind} = 'LanguageProperty' AND {lang_sql}) OR "
               f"({kind} = 'ListRelationship' AND {rel_sql}))")
        return sql, fast_params + flat_params + lang_params + rel_params

    def each(self, node: Compare | Match, function: str, args: str, where: str
             ) -> tuple[str, list[Any]]:
        """EXISTS over the rows of json_each/json_tree, a scalar row satisfying the node."""
        alias = self.alias()
        cond, params = self.scalar(node, f"{alias}.type", f"{alias}.value")
        where = where.replace("c.", f"{alias}.")
        return (f"EXISTS(SELECT 1 FROM {function}({args}) AS {alias} WHERE {where}{cond})",
                params)

    def scalar(self, node: Compare | Match, jtype: str, value: str) -> tuple[str, list[Any]]:
        """The comparison on one JSON scalar given by its json_type and SQL value."""
        if isinstance(node, Match):
            negation = "NOT " if node.negated else ""
            return f"({jtype} = 'text' AND {negation}ngsi_regexp(?, {value}))", [node.pattern]
        operand = node.operand
        if isinstance(operand, ValueList):
            return self.value_list(node.op, operand, jtype, value)
        literal = operand.low if isinstance(operand, Range) else operand
        if literal.family == "bool":
            wanted = literal.value == (node.op == "==")
            return f"({jtype} = '{'true' if wanted else 'false'}')", []
        if literal.family == "datetime":
            return self.instant(node.op, operand, jtype, value)
        check = f"{jtype} IN {_SCALAR_TYPES[literal.family]}"
        if isinstance(operand, Range):
            between = "BETWEEN" if node.op == "==" else "NOT BETWEEN"
            return f"({check} AND {value} {between} ? AND ?)", [operand.low.value,
                                                                   operand.high.value]
        op = "=" if node.op == "==" else "<>" if node.op == "!=" else node.op
        return f"({check} AND {value} {op} ?)", [literal.value]

    def value_list(self, op: str, operand: ValueList, jtype: str, value: str
                   ) -> tuple[str, list[Any]]:
        families = sorted({v.family for v in operand.values})
        compat = " OR ".join(_family_check(f, jtype) for f in families)
        if op == "!=" and "datetime" in families:
            self.exact = False
            return f"({compat})", []
        parts = [self.scalar(Compare(Path(""), "==", v), jtype, value) for v in operand.values]
        equal = " OR ".join(p[0] for p in parts)
        params = [x for p in parts for x in p[1]]
        if op == "==":
            return f"({equal})", params
        return f"(({compat}) AND NOT COALESCE({equal}, 0))", params

    def instant(self, op: str, operand: Literal | Range, jtype: str, value: str
                 ) -> tuple[str, list[Any]]:
        """A prefilter on instants: SQLite keeps milliseconds only, so widen by a tolerance."""
        self.exact = False
        check = _family_check("datetime", jtype) + f" AND {value} GLOB '{_DATE_GLOB}*'"
        jd, tol = f"julianday({value})", _JD_TOLERANCE
        if op == "!=":
            return f"({check})", []
        if isinstance(operand, Range):
            cond = f"{jd} BETWEEN julianday(?) - {tol!r} AND julianday(?) + {tol!r}"
            params = [operand.low.value, operand.high.value]
        elif op == "==":
            cond, params = f"abs({jd} - julianday(?)) <= {tol!r}", [operand.value]
        elif op in (">", ">="):
            cond, params = f"{jd} >= julianday(?) - {tol!r}", [operand.value]
        else:
            cond, params = f"{jd} <= julianday(?) + {tol!r}", [operand.value]
        return f"({check} AND ({jd} IS NULL OR {cond}))", params


_DATE_GLOB = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"


def _family_check(family: str, jtype: str) -> str:
    if family == "bool":
        return f"{jtype} IN ('true','false')"
    return f"{jtype} IN {_SCALAR_TYPES[family]}"


def _guarded(x: str, path: str) -> str:
    """The path, unless it holds an object (whose members are no candidates)."""
    literal = _lit(path)
    return f"CASE WHEN json_type({x}, {literal}) = 'object' THEN {_NONE_PATH} ELSE {literal} END"


def to_sql(node: QNode, doc_column: str = "doc") -> SqlFilter | None:
    """Translate a q tree into a SQLite WHERE fragment over the JSON document column."""
    builder = _SqlBuilder(doc_column)
    sql, params = builder.node(node)
    return SqlFilter(sql, params, builder.exact)


def q_sql(node: QNode, probe: bool = True) -> tuple[str, list[Any], bool]:
    """A q tree as SQL: simple comparisons from ``attr_values``, the rest via JSON SQL.

    ``probe``: test each candidate entity with an index seek (best when LIMIT stops the scan
    early); otherwise collect the matching entities once (best to count them all).
    """
    if isinstance(node, (And, Or)):
        parts = [q_sql(child, probe) for child in node.children]
        joiner = " AND " if isinstance(node, And) else " OR "
        return ("(" + joiner.join(p[0] for p in parts) + ")",
                [param for p in parts for param in p[1]], all(p[2] for p in parts))
    if _beyond_int64(node):
        # SQLite integers are 64-bit: no SQL compares such a literal exactly, so the term
        # selects every candidate and ``evaluate`` decides (a term is never negated in SQL)
        return "1", [], False
    family = index_family(node)
    if family is None:
        sql_filter = to_sql(node, "e.doc")
        if sql_filter is None:
            return "1", [], False
        return f"({sql_filter.sql})", list(sql_filter.params), sql_filter.exact
    assert isinstance(node, Compare)
    operand = node.operand
    kind = VALUE_KINDS[family]

    def literal(value: Any) -> Any:
        return int(value) if kind == "b" else value

    if isinstance(operand, Range):
        test = "value BETWEEN ? AND ?" if node.op == "==" else "value NOT BETWEEN ? AND ?"
        values = [literal(operand.low.value), literal(operand.high.value)]
    elif isinstance(operand, ValueList):
        marks = ",".join("?" * len(operand.values))
        test = f"value IN ({marks})" if node.op == "==" else f"value NOT IN ({marks})"
        values = [literal(v.value) for v in operand.values]
    else:
        op = "=" if node.op == "==" else node.op
        test = f"value {op} ?"
        values = [literal(operand.value)]
    if probe:
        sql = (f"EXISTS (SELECT 1 FROM attr_values v WHERE v.entity = e.rowid AND v.attr = ? "
               f"AND v.kind = ? AND v.{test})")
    else:
        sql = f"e.rowid IN (SELECT entity FROM attr_values WHERE attr = ? AND kind = ? AND {test})"
    return sql, [node.path.attr, kind, *values], True
