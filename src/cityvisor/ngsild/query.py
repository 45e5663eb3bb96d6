"""The NGSI-LD Query Language (ETSI GS CIM 009 v1.8, clause 4.9): parsing and evaluation.

``parse_q`` turns a ``q`` expression into an immutable tree of :class:`QNode` objects, with the
attribute names expanded to IRIs by the caller's ``@context``. ``evaluate`` decides whether an
entity in the stored form (docs/internal-model.md) matches. Stores translate the tree into
their engine's filters (``store/sqlite_q.py``) with exactly these semantics.

Grammar (clause 4.9, with the usual broker extensions)::

    query     := and ( '|' and )*
    and       := primary ( ';' primary )*
    primary   := '(' query ')' | '!' path | path [ op operand ]
    path      := name ( '.' name )* [ '[' member ( '.' member )* ']' ]*
    op        := '==' | '!=' | '>' | '>=' | '<' | '<=' | '~=' | '!~='
    operand   := value | value '..' value | value ( ',' value )+ | regex

A path ``attr.sub.observedAt`` names the attribute, then sub-attributes, then optionally one of
the metadata members ``observedAt``, ``createdAt``, ``modifiedAt``, ``unitCode``, ``datasetId``
(never expanded). ``attr[a.b]`` (or ``attr[a][b]``) navigates inside a compound value; member
names are not expanded.

Semantics (a store's exact translation shares them):

* An attribute is a list of instances (multi-attributes, datasetId); a term is true when ANY
  instance satisfies it.
* The candidate values of an instance: Property/GeoProperty ``value`` (a ``{"@value": ..}``
  object is unwrapped; any other object is not comparable); Relationship ``object``;
  VocabProperty ``vocab``; ListProperty ``valueList``; JsonProperty ``json``: an array
  contributes its scalar elements, a scalar itself. LanguageProperty: every scalar inside
  ``languageMap``. ListRelationship: every URI of ``objectList`` (plain or ``{"object": ..}``).
* Comparisons are type strict: a number never equals nor orders against a string or a
  boolean. ``!=`` is the negation of ``==`` on one instance (clause 4.9): it holds for an
  instance (the attribute must exist) none of whose candidate values equals the operand, so a
  value of another data type is unequal (``a!="x"`` is true when ``a`` is 5), an array is
  unequal only when no element is equal, a ValueList only when no listed value is, a Range
  only when no value lies inside. A Relationship (or ListRelationship) target never matches
  an ordering operator (``>``, ``>=``, ``<``, ``<=``).
  Unquoted datetimes compare as instants (strings that do not parse as datetimes never match);
  quoted strings, dates and times compare as strings; ``~=`` applies to strings only.
* ``attr[tag]`` on a LanguageProperty targets the languageMap entry of that language tag,
  ``attr[*]`` every entry (clause 4.9 language filter).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Union
from urllib.parse import unquote

from cityvisor.ngsild.errors import BadRequestData

__all__ = [
    "And", "Compare", "Exists", "Literal", "Match", "Or", "Path", "QNode", "Range",
    "ValueList", "comparable_values", "evaluate", "index_family", "instance_values",
    "link_depth", "parse_path", "parse_q", "pattern_matches", "q_attributes",
    "unescape_q_member",
]

METADATA = frozenset({"observedAt", "createdAt", "modifiedAt", "unitCode", "datasetId"})
COMPARISON_OPS = ("==", "!=", ">", ">=", "<", "<=")
_OPS = ("!~=", "==", "!=", ">=", "<=", "~=", ">", "<")  # longest first
# "%" is not an attrNameChar (clause 4.9: %x25 is left out of the AttrName grammar)
# and no control character is one (they start at %x21)
_NAME_STOP = set('=!<>~;|()[].,"\'\\%{}') | {chr(c) for c in (*range(0x21), 0x7F)}
_VALUE_STOP = set(";|),") | {" ", "\t", "\r", "\n"}
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?\Z")
_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?\Z")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_TIME = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?\Z")
_DATE_PREFIX = re.compile(r"\d{4}-\d{2}-\d{2}")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+\Z")
KEY_BY_TYPE = {
    "Property": "value", "GeoProperty": "value", "Relationship": "object",
    "LanguageProperty": "languageMap", "ListProperty": "valueList",
    "ListRelationship": "objectList", "VocabProperty": "vocab", "JsonProperty": "json",
}
FLAT_TYPES = ("Property", "GeoProperty", "Relationship", "ListProperty", "VocabProperty",
               "JsonProperty")
#: targets that no ordering operator matches (clause 4.9)
RELATIONSHIP_TYPES = ("Relationship", "ListRelationship")
ORDERING_OPS = (">", ">=", "<", "<=")
#: a language filter naming every language (``attr[*]``)
ANY_LANGUAGE = "*"
COMPOUND_KEYS = {"Property": "value", "GeoProperty": "value", "JsonProperty": "json"}


# --------------------------------------------------------------------------- the tree


@dataclass(frozen=True)
class Literal:
    """A value of the grammar: kind is number, string, bool, datetime, date, time or uri."""

    kind: str
    value: Any  # int | float | str | bool; a datetime is kept in canonical UTC form

    @property
    def family(self) -> str:
        """Which stored values it can be compared with: number, string, bool or datetime."""
        return "string" if self.kind in ("string", "date", "time", "uri") else self.kind

    def __str__(self) -> str:
        if self.kind == "bool":
            return "true" if self.value else "false"
        if self.kind == "number":
            return repr(self.value)
        if self.kind == "string":
            text = str(self.value)
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return str(self.value)


@dataclass(frozen=True)
class Range:
    """``low..high``, both bounds included (clause 4.9)."""

    low: Literal
    high: Literal

    def __str__(self) -> str:
        return f"{self.low}..{self.high}"


@dataclass(frozen=True)
class ValueList:
    """``v1,v2,...``: equal to any of (``==``) or to none of (``!=``)."""

    values: tuple[Literal, ...]

    def __str__(self) -> str:
        return ",".join(str(v) for v in self.values)


@dataclass(frozen=True)
class Path:
    """An attribute path: attribute IRI, sub-attribute IRIs, metadata name, compound members."""

    attr: str
    subs: tuple[str, ...] = ()
    meta: str | None = None
    members: tuple[str, ...] = ()
    labels: tuple[str, ...] = field(default=(), compare=False)  # compact names, for rendering
    #: ``rel{path}``: the path in the Entity that the Relationship ``attr`` links to
    linked: Path | None = None

    def __str__(self) -> str:
        if self.linked is not None:
            return f"{self.labels[0] if self.labels else self.attr}{{{self.linked}}}"
        names = self.labels or (self.attr, *self.subs)
        text = ".".join(names)
        if self.meta:
            text += "." + self.meta
        if self.members:
            text += "[" + ".".join(self.members) + "]"
        return text


@dataclass(frozen=True)
class Exists:
    """``attr`` (the path exists) or ``!attr`` (negated)."""

    path: Path
    negated: bool = False

    def __str__(self) -> str:
        return ("!" if self.negated else "") + str(self.path)


@dataclass(frozen=True)
class Compare:
    """``path op operand``; a Range or ValueList operand only with ``==`` and ``!=``."""

    path: Path
    op: str
    operand: Literal | Range | ValueList

    def __str__(self) -> str:
        return f"{self.path}{self.op}{self.operand}"


@dataclass(frozen=True)
class Match:
    """``path~=regex`` or ``path!~=regex`` (Python ``re.search`` semantics)."""

    path: Path
    pattern: str
    negated: bool = False

    def __str__(self) -> str:
        quoted = '"' + self.pattern.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{self.path}{'!~=' if self.negated else '~='}{quoted}"


@dataclass(frozen=True)
class And:
    """``a;b;...``."""

    children: tuple[QNode, ...]

    def __str__(self) -> str:
        return ";".join(f"({c})" if isinstance(c, Or) else str(c) for c in self.children)


@dataclass(frozen=True)
class Or:
    """``a|b|...``."""

    children: tuple[QNode, ...]

    def __str__(self) -> str:
        return "|".join(str(c) for c in self.children)


QNode = Union[And, Or, Exists, Compare, Match]  # noqa: UP007 - used at runtime by isinstance

# --------------------------------------------------------------------------- parsing


class _Parser:
    """Recursive descent over the characters of one q expression (clause 4.9)."""

    def __init__(self, text: str, expand: Callable[[str], str], linked: bool = False) -> None:
        self.text = text
        self.pos = 0
        self.expand = expand
        self.linked = linked

    # -- helpers
    def fail(self, message: str, pos: int | None = None) -> BadRequestData:
        at = self.pos if pos is None else pos
        found = self.text[at:at + 20]
        where = f"found {found!r}" if found else "found the end of the expression"
        return BadRequestData(
            f"Invalid q expression at position {at + 1}: {message}, {where} (q={self.text!r})")

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self, token: str) -> bool:
        self.skip_ws()
        return self.text.startswith(token, self.pos)

    def eat(self, token: str) -> bool:
        if self.peek(token):
            self.pos += len(token)
            return True
        return False

    # -- structure
    def parse(self) -> QNode:
        self.skip_ws()
        if self.pos >= len(self.text):
            raise self.fail("the expression is empty")
        node = self.query()
        self.skip_ws()
        if self.pos < len(self.text):
            if self.text[self.pos] == ")":
                raise self.fail("unbalanced ')'")
            raise self.fail("expected ';', '|' or the end of the expression")
        return node

    def query(self) -> QNode:
        children = [self.conjunction()]
        while self.eat("|"):
            children.append(self.conjunction())
        return _combine(Or, children)

    def conjunction(self) -> QNode:
        children = [self.primary()]
        while self.eat(";"):
            children.append(self.primary())
        return _combine(And, children)

    def primary(self) -> QNode:
        self.skip_ws()
        if self.eat("("):
            start = self.pos
            node = self.query()
            if not self.eat(")"):
                raise self.fail(f"missing ')' for the '(' at position {start}")
            return node
        if self.peek("!") and not self.text.startswith("!=", self.pos):
            self.pos += 1
            return Exists(self.path(), negated=True)
        path = self.path()
        op = self.operator()
        if op is None:
            return Exists(path)
        if op in ("~=", "!~="):
            return Match(path, self.regex(), negated=op == "!~=")
        return Compare(path, op, self.operand(op))

    def operator(self) -> str | None:
        self.skip_ws()
        for op in _OPS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return op
        if self.pos < len(self.text) and self.text[self.pos] in "=!~<>":
            raise self.fail("unknown operator (use ==, !=, >, >=, <, <=, ~= or !~=)")
        return None

    # -- attribute paths
    def name(self, what: str) -> str:
        self.skip_ws()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _NAME_STOP:
            self.pos += 1
        if self.pos == start:
            raise self.fail(f"expected {what}")
        return self.text[start:self.pos]

    def path(self) -> Path:
        names = [self.name("an attribute name")]
        if self.text.startswith("{", self.pos):  # a Linked Entity path (clause 4.9)
            if not self.linked:
                raise self.fail("a linked entity path ('{') needs Linked Entity retrieval "
                                "(join)")
            self.pos += 1
            linked = self.path()
            if not self.text.startswith("}", self.pos):
                raise self.fail("expected '}' closing the linked entity path")
            self.pos += 1
            return Path(self._expand(names[0]), labels=(names[0],), linked=linked)
        while self.text.startswith(".", self.pos):
            self.pos += 1
            names.append(self.name("a sub-attribute name after '.'"))
        meta = None
        if len(names) > 1 and names[-1] in METADATA:
            meta = names.pop()
        if any(n in METADATA for n in names):
            raise self.fail(f"metadata names ({', '.join(sorted(METADATA))}) must come last")
        members: list[str] = []
        while self.text.startswith("[", self.pos):
            self.pos += 1
            members.append(self.name("a member name after '['"))
            while self.text.startswith(".", self.pos):
                self.pos += 1
                members.append(self.name("a member name after '.'"))
            if not self.text.startswith("]", self.pos):
                raise self.fail("expected ']'")
            self.pos += 1
        if meta and members:
            raise self.fail("a metadata value has no compound members")
        iris = [self._expand(n) for n in names]
        return Path(iris[0], tuple(iris[1:]), meta, tuple(members), labels=tuple(names))

    def _expand(self, name: str) -> str:
        iri = self.expand(name)
        if '"' in iri or "\\" in iri:
            raise BadRequestData(f"Attribute {name!r} expands to an unsupported IRI {iri!r}")
        return iri

    # -- values
    def operand(self, op: str) -> Literal | Range | ValueList:
        first = self.value()
        if self.text.startswith("..", self.pos):
            self.pos += 2
            if op not in ("==", "!="):
                raise self.fail(f"a range is only allowed with == and != (not {op})")
            high = self.value()
            if first.family != high.family or first.family not in ("number", "string",
                                                                   "datetime"):
                raise self.fail("the bounds of a range must be two numbers, strings or "
                                "datetimes of the same kind")
            if self.text.startswith("..", self.pos):
                raise self.fail("a range has exactly two bounds")
            return Range(first, high)
        if not self.peek(","):
            if op not in ("==", "!=") and first.kind == "bool":
                raise self.fail(f"{op} needs a number, a string or a datetime")
            return first
        if op not in ("==", "!="):
            raise self.fail(f"a list of values is only allowed with == and != (not {op})")
        values = [first]
        while self.eat(","):
            values.append(self.value())
            if self.text.startswith("..", self.pos):
                raise self.fail("a list of values cannot contain ranges")
        return ValueList(tuple(values))

    def value(self) -> Literal:
        self.skip_ws()
        start = self.pos
        if self.text.startswith('"', self.pos):
            return Literal("string", self.quoted())
        while (self.pos < len(self.text) and self.text[self.pos] not in _VALUE_STOP
               and not self.text.startswith("..", self.pos)):
            self.pos += 1
        raw = self.text[start:self.pos]
        if not raw:
            raise self.fail("expected a value", start)
        return _literal(raw) or self._bad_value(raw, start)

    def _bad_value(self, raw: str, start: int) -> Literal:
        raise self.fail(f"{raw!r} is not a number, a datetime, true/false or a URI "
                        "(quote strings with \")", start)

    def quoted(self) -> str:
        start = self.pos
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                nxt = self.text[self.pos + 1]
                out.append(nxt if nxt in '"\\' else char + nxt)
                self.pos += 2
            elif char == '"':
                self.pos += 1
                return "".join(out)
            else:
                out.append(char)
                self.pos += 1
        raise self.fail("unterminated quoted string", start)

    def regex(self) -> str:
        self.skip_ws()
        start = self.pos
        pattern = self.quoted() if self.text.startswith('"', self.pos) else self.bare_regex()
        if not pattern:
            raise self.fail("expected a regular expression", start)
        try:
            _compiled(pattern)
        except BadRequestData as exc:
            raise self.fail(f"invalid regular expression ({exc.detail})", start) from None
        return pattern

    def bare_regex(self) -> str:
        """An unquoted pattern ends at ';' or '|' outside its own (...) and [...]."""
        start, depth, in_class = self.pos, 0, False
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\":
                self.pos += 2
                continue
            if in_class:
                in_class = char != "]"
            elif char == "[":
                in_class = True
            elif char == "(":
                depth += 1
            elif char == ")":
                if depth == 0:
                    break
                depth -= 1
            elif char in ";|" and depth == 0:
                break
            self.pos += 1
        self.pos = min(self.pos, len(self.text))
        return self.text[start:self.pos]


def _combine(cls: type[And | Or], children: list[QNode]) -> QNode:
    if len(children) == 1:
        return children[0]
    flat: list[QNode] = []
    for child in children:
        flat.extend(child.children if isinstance(child, cls) else (child,))
    return cls(tuple(flat))


def _literal(raw: str) -> Literal | None:
    """Classify an unquoted value: number, boolean, datetime, date, time or URI."""
    if _NUMBER.match(raw):
        number = float(raw) if any(c in raw for c in ".eE") else int(raw)
        if isinstance(number, float) and not math.isfinite(number):
            return None
        return Literal("number", number)
    if raw in ("true", "false"):
        return Literal("bool", raw == "true")
    if _DATETIME.match(raw):
        canonical = _canonical_datetime(raw)
        if canonical is None:
            raise BadRequestData(f"Invalid q expression: {raw!r} is not a valid datetime")
        return Literal("datetime", canonical)
    if _DATE.match(raw):
        return Literal("date", raw)
    if _TIME.match(raw):
        return Literal("time", raw)
    if _URI.match(raw):
        return Literal("uri", raw)
    return None


def parse_q(text: str, expand: Callable[[str], str], *, linked: bool = False) -> QNode:
    """Parse a ``q`` expression (clause 4.9); raise BadRequestData naming the bad position.
    Linked Entity paths (``rel{attr}``) are only accepted with ``linked``."""
    return _Parser(text, expand, linked).parse()


_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def unescape_q_member(text: str) -> str:
    """A ``q`` member of a JSON body (a subscription's, a POST query's) sent percent-encoded, as
    some clients do (ngsildclient's subscription builder): decoded once. ``%`` can only stand
    in a valid expression inside a quoted value, so an expression whose unquoted part holds a
    ``%XX`` escape is decoded; so is one whose quoted values hold an escaped space or double
    quote (``%20``, ``%22``: characters a URL never carries as they are, so the expression
    was encoded). Any other is returned as it is.

    >>> unescape_q_member("waterLevel%3E3")
    'waterLevel>3'
    >>> unescape_q_member('name=="50%25"')
    'name=="50%25"'
    >>> unescape_q_member('name=="Eiffel%20Tower"')
    'name=="Eiffel Tower"'
    """
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', "", text)
    encoded = _ESCAPE.search(unquoted) or _URL_ONLY_ESCAPE.search(text)
    return unquote(text) if encoded else text


#: escapes of characters that never stand raw in a URL
_URL_ONLY_ESCAPE = re.compile(r"%(?:20|22|09)")


def parse_path(text: str, expand: Callable[[str], str]) -> Path:
    """Parse one attribute path of the q grammar alone (``attr.sub.meta[member]``), as
    ``orderBy`` items name them (clause 4.23)."""
    parser = _Parser(text, expand)
    path = parser.path()
    parser.skip_ws()
    if parser.pos < len(text):
        raise parser.fail("expected the end of the attribute path")
    return path


def instance_values(entity: dict[str, Any], path: Path) -> list[Any]:
    """The candidate values of ``path`` in the entity, instance by instance (the default
    instance, without datasetId, first): what a comparison (and an ordering) looks at."""
    instances = sorted(_instances(entity, path), key=lambda i: "datasetId" in i)
    return [v for instance in instances for v in _candidates(instance, path)]


# --------------------------------------------------------------------------- evaluation


@lru_cache(maxsize=4096)
def _canonical_datetime(text: str) -> str | None:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC (naive means UTC), or None if not a datetime."""
    if not _DATE_PREFIX.match(text):
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed = parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
    return parsed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise BadRequestData(f"Invalid regular expression {pattern!r}: {exc}") from None


def pattern_matches(pattern: str, value: object) -> bool:
    """Whether ``value`` is a string in which ``re.search`` finds ``pattern`` (idPattern, ``~=``).

    Raises BadRequestData for an invalid pattern (the broker calls it once to validate).
    """
    compiled = _compiled(pattern)
    return isinstance(value, str) and compiled.search(value) is not None


_MISSING = object()


def _is_scalar(value: object) -> bool:
    return not isinstance(value, (dict, list))


def _flat(value: object) -> list[Any]:
    """The scalar elements of an array, a scalar itself; an object contributes nothing."""
    if isinstance(value, list):
        return [v for v in value if _is_scalar(v)]
    if isinstance(value, dict) or value is _MISSING:
        return []
    return [value]


def _leaves(value: object, key: object, accept: Callable[[object], bool]) -> Iterator[Any]:
    """Scalar leaves of a JSON tree whose own key (None for the root) is accepted."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, index, accept)
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from _leaves(item, name, accept)
    elif key is None or accept(key):
        yield value


def _object_key(key: object) -> bool:
    return isinstance(key, int) or key == "object"


def _candidates(instance: dict[str, Any], path: Path) -> list[Any]:
    """The values of one (sub-)attribute instance that a comparison looks at."""
    if path.meta is not None:
        return _flat_meta(instance.get(path.meta, _MISSING))
    kind = instance.get("type")
    if path.members:
        if kind == "LanguageProperty":
            return _language_values(instance, path.members)
        value = _member(instance, kind, path.members)
        return _flat(value)
    key = KEY_BY_TYPE.get(kind)  # type: ignore[arg-type]
    if key is None or key not in instance:
        return []
    value = instance[key]
    if kind == "LanguageProperty":
        return list(_leaves(value, None, lambda _key: True))
    if kind == "ListRelationship":
        return list(_leaves(value, None, _object_key))
    if kind in ("Property", "GeoProperty") and isinstance(value, dict):
        value = value.get("@value", _MISSING)
    return _flat(value)


def _language_values(instance: dict[str, Any], members: tuple[str, ...]) -> list[Any]:
    """``attr[tag]`` / ``attr[*]`` on a LanguageProperty: the texts of that language, or of
    every language."""
    language_map = instance.get("languageMap")
    if len(members) != 1 or not isinstance(language_map, dict):
        return []
    if members[0] == ANY_LANGUAGE:
        return list(_leaves(language_map, None, lambda _key: True))
    return _flat(language_map.get(members[0], _MISSING))


def _flat_meta(value: object) -> list[Any]:
    return [] if value is _MISSING or not _is_scalar(value) else [value]


def _member(instance: dict[str, Any], kind: object, members: tuple[str, ...]) -> object:
    key = COMPOUND_KEYS.get(kind) if isinstance(kind, str) else None
    value = instance.get(key, _MISSING) if key else _MISSING
    for member in members:
        if not isinstance(value, dict):
            return _MISSING
        value = value.get(member, _MISSING)
    return value


def _instances(entity: dict[str, Any], path: Path) -> Iterator[dict[str, Any]]:
    """The instances (or sub-attribute instances) addressed by the path, any datasetId."""
    instances = entity.get("attrs", {}).get(path.attr)
    if not isinstance(instances, list):
        return
    for instance in instances:
        for sub in path.subs:
            subs = instance.get("subs") if isinstance(instance, dict) else None
            instance = subs.get(sub) if isinstance(subs, dict) else None
        if isinstance(instance, dict):
            yield instance


def _exists(entity: dict[str, Any], path: Path) -> bool:
    return any(_has_target(instance, path) for instance in _instances(entity, path))


def _has_target(instance: dict[str, Any], path: Path) -> bool:
    """Whether the (sub-)attribute instance has what the path names (metadata, member)."""
    if path.meta is not None:
        return path.meta in instance
    if not path.members:
        return True
    if instance.get("type") == "LanguageProperty":
        language_map = instance.get("languageMap")
        return len(path.members) == 1 and isinstance(language_map, dict) and (
            bool(language_map) if path.members[0] == ANY_LANGUAGE
            else path.members[0] in language_map)
    return _member(instance, instance.get("type"), path.members) is not _MISSING


def _targets(instance: dict[str, Any], node: Compare | Match) -> bool:
    """Whether the operator may match the instance at all: a Relationship's object has no
    order (clause 4.9)."""
    path = node.path
    return not (isinstance(node, Compare) and node.op in ORDERING_OPS and path.meta is None
                and not path.members and instance.get("type") in RELATIONSHIP_TYPES)


def _compatible(value: object, literal: Literal) -> Any:
    """The stored value in the literal's comparison domain, or _MISSING if incomparable."""
    family = literal.family
    if family == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return value if ok else _MISSING
    if family == "bool":
        return value if isinstance(value, bool) else _MISSING
    if not isinstance(value, str):
        return _MISSING
    if family == "datetime":
        canonical = _canonical_datetime(value)
        return _MISSING if canonical is None else canonical
    return value


def _compare(value: object, op: str, operand: Literal | Range | ValueList) -> bool:
    if isinstance(operand, Range):
        seen = _compatible(value, operand.low)
        if seen is _MISSING:
            return False
        inside = operand.low.value <= seen <= operand.high.value
        return inside if op == "==" else not inside
    if isinstance(operand, ValueList):
        seen_values = [_compatible(value, v) for v in operand.values]
        equal = any(s is not _MISSING and s == v.value
                    for s, v in zip(seen_values, operand.values, strict=True))
        return equal if op == "==" else not equal
    seen = _compatible(value, operand)
    if seen is _MISSING:
        return False
    other = operand.value
    result: bool = {"==": seen == other, "!=": seen != other, ">": seen > other,
                    ">=": seen >= other, "<": seen < other, "<=": seen <= other}[op]
    return result


def evaluate(node: QNode, entity: dict[str, Any]) -> bool:
    """True if the stored entity satisfies the q expression (clause 4.9)."""
    if isinstance(node, And):
        return all(evaluate(c, entity) for c in node.children)
    if isinstance(node, Or):
        return any(evaluate(c, entity) for c in node.children)
    if isinstance(node, Exists):
        return _exists(entity, node.path) != node.negated
    if isinstance(node, Match):
        compiled = _compiled(node.pattern)
        return any(isinstance(v, str) and (compiled.search(v) is None) == node.negated
                   for inst in _instances(entity, node.path)
                   for v in _candidates(inst, node.path))
    if node.op == "!=":
        # clause 4.9: unequal is the negation of equal, instance by instance
        equal = Compare(node.path, "==", node.operand)
        return any(_has_target(inst, node.path)
                   and not any(_compare(v, "==", node.operand)
                               for v in _candidates(inst, equal.path))
                   for inst in _instances(entity, node.path))
    return any(_compare(v, node.op, node.operand)
               for inst in _instances(entity, node.path) if _targets(inst, node)
               for v in _candidates(inst, node.path))


def link_depth(node: QNode) -> int:
    """How many Linked Entity hops (``rel{...}``) the deepest path of a q expression makes.

    >>> link_depth(parse_q("a>1;b{c{d}}==2", lambda n: n))
    2
    """
    if isinstance(node, (And, Or)):
        return max(link_depth(c) for c in node.children)
    depth, path = 0, node.path
    while path.linked is not None:
        depth, path = depth + 1, path.linked
    return depth


def q_attributes(node: QNode) -> frozenset[str]:
    """The attribute IRIs a q expression looks at (for reading just those before ``evaluate``).

    >>> sorted(q_attributes(parse_q("a>1;(b==2|!c)", lambda n: "urn:" + n)))
    ['urn:a', 'urn:b', 'urn:c']
    """
    if isinstance(node, (And, Or)):
        return frozenset().union(*(q_attributes(c) for c in node.children))
    return frozenset((node.path.attr,))


# --------------------------------------------------------------------------- value index support


_BARE_PATH = Path("")


def comparable_values(instance: dict[str, Any]) -> list[Any]:
    """The values a comparison on an attribute looks at in one of its instances.

    A store may index these (per attribute) to answer simple comparisons exactly: the values
    are exactly those ``evaluate`` compares for a path naming just the attribute.
    """
    return _candidates(instance, _BARE_PATH)


def index_family(leaf: QNode) -> str | None:
    """The family (number, string, bool) if ``leaf`` can be answered from a value index.

    That is a comparison on a plain attribute path (no sub-attribute, metadata or compound
    member) whose operand values all belong to one family other than datetime.
    """
    if not isinstance(leaf, Compare) or leaf.op == "!=":
        return None  # the index holds values, not instances: != negates per instance
    path = leaf.path
    if path.subs or path.meta or path.members:
        return None
    operand = leaf.operand
    literals = (operand.low, operand.high) if isinstance(operand, Range) else (
        operand.values if isinstance(operand, ValueList) else (operand,))
    families = {literal.family for literal in literals}
    if len(families) != 1:
        return None
    family = families.pop()
    if family == "string" and leaf.op in ORDERING_OPS:
        return None  # Relationship objects are indexed strings, and have no order
    return None if family == "datetime" else family
