"""Property: the SQLite store answers ``q`` (clause 4.9) exactly as the reference evaluator.

For random entities (request bodies expanded with ``expand_entity``, so the stored form is the
real one) and a random ``q`` expression (a tree of depth <= 3 rendered to text and parsed with
``parse_q``), ``SqliteStore.query`` must return exactly the entities for which
``ngsild.query.evaluate`` is true, in insertion order, with the right count:

* with ``count=True`` and ``count=False`` (the value index is then probed per candidate or
  collected once, two different SQL shapes);
* with a type selector too (simple ``e.type IN`` or the multi-typed path);
* with a small page (``offset=1, limit=2``), where an inexact SQL prefilter streams candidates
  and stops early.

Only the public store API is used (the SQL translation lives behind it and may move). Some
entities are written as an earlier version first and then updated, and some extra entities are
written and deleted again, so the index tables are checked after updates and deletes too.

Known disagreements are pinned by the strict-xfail regression tests at the end; the pools of
the property leave out exactly those values (see ``Q_NUMBERS``, ``STORED_BIG_INTS`` and
``STRINGS``).
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, event, given, note, settings
from hypothesis import strategies as st

from cityvisor.broker.contexts import core_context_document
from cityvisor.ngsild.context import compile_context
from cityvisor.ngsild.errors import BadRequestData
from cityvisor.ngsild.model import expand_entity
from cityvisor.ngsild.query import Compare, Literal, QNode, evaluate, parse_q
from cityvisor.ngsild.typequery import TypeNode, matches_types, parse_type_selection
from cityvisor.store.base import EntityQuery, EntitySelector, WriteOp
from cityvisor.store.sqlite import SqliteStore

NOW = "2026-11-27T18:00:00.000000Z"
# "d" is defined by a user context with an IRI holding a quote and a hash (JSON paths and SQL
# literals must quote it); the other names expand with the core @vocab.
TERMS = compile_context([{"d": "urn:x:it's#d"}], core_context_document()["@context"])
STORED_NAMES = ["a", "b", "c", "d"]
QUERY_NAMES = [*STORED_NAMES, "e"]  # "e" is never stored

# --------------------------------------------------------------------------- value pools
#
# Each example draws a palette of a few scalars from the pool; stored values and q literals
# come mostly from the palette (through Slot placeholders and q text markers), so that the
# comparisons of an example hit the stored values often.

STORED_INTS = [0, 1, 2, -1, -3, 7, 2**53 + 1, 2**63 - 1, -(2**63)]
#: Integers beyond int64 that the API accepts (orjson reads up to 2**64 - 1). Only ones that a
#: float represents exactly: the others disagree (test_big_int_vs_float_literal_* below).
STORED_BIG_INTS = [2**63, 2**63 + 2048, 2**64 - 2048]
STORED_FLOATS = [0.0, -0.0, 1.0, 1.5, -0.5, 2.0, 1e20, 9007199254740992.0,
                 9.223372036854776e18, 1.8446744073709552e19]
#: No string with a NUL character: SQLite's JSON functions cut it there (test_nul_* below).
STRINGS = ["", "x", "on", "off", "O'k", 'a"b', "a\\b", "é", "日本", "Arena", "a\tb",
           "2018-12-04", "12:00:00Z", "urn:ngsi-ld:D:1"]
DATETIME_STRINGS = ["2018-12-04T12:00:00Z", "2018-12-04T13:00:00+01:00",
                    "2018-12-04T12:00:00.0005Z", "2018-12-04T11:59:59.9995Z",
                    "2018-12-04T11:00:00Z", "2018-12-04T12:00", "2018-12-04 12:00:00",
                    "2018-12-04T12:00:00+0100", "2018-12-04T12:00:00-00:00",
                    "2018-12-04T24:00:00Z", "2018-12-04t12:00:00z"]
URIS = ["urn:ngsi-ld:D:1", "urn:ngsi-ld:D:2", "https://uri.etsi.org/ngsi-ld/default-context/lamp"]
POOL = [*STORED_INTS, *STORED_BIG_INTS, *STORED_FLOATS, *STRINGS, *DATETIME_STRINGS, *URIS,
        True, False]
PALETTE_SIZE = 3
PALETTES = st.lists(st.sampled_from(POOL), min_size=PALETTE_SIZE, max_size=PALETTE_SIZE)


@dataclass(frozen=True)
class Slot:
    """A placeholder for the palette value number ``index`` (``text``: "x" unless a string,
    for a languageMap)."""

    index: int
    text: bool = False


SLOTS = st.builds(Slot, st.integers(0, PALETTE_SIZE - 1))
SCALARS = st.one_of(SLOTS, SLOTS, SLOTS, st.sampled_from(POOL))
MEMBER_NAMES = st.sampled_from(["x", "y", "@value"])


def fill(value: Any, palette: list[Any]) -> Any:
    """The value with its Slots replaced by the palette's values."""
    if isinstance(value, Slot):
        chosen = palette[value.index]
        return "x" if value.text and not isinstance(chosen, str) else chosen
    if isinstance(value, list):
        return [fill(v, palette) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, palette) for k, v in value.items()}
    return value


def nested(leaf: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Scalars, nulls, and lists/objects of them up to two levels deep (not st.recursive:
    that costs more than the store in this test)."""
    flat = st.one_of(leaf, leaf, st.none())
    level1 = st.one_of(flat, flat, st.lists(flat, max_size=3),
                       st.dictionaries(MEMBER_NAMES, flat, max_size=2))
    return st.one_of(level1, level1, st.lists(level1, max_size=2),
                     st.dictionaries(MEMBER_NAMES, level1, max_size=2))


# --------------------------------------------------------------------------- stored entities

NESTED = nested(SCALARS)
PROPERTY_VALUES = st.one_of(
    SCALARS, SCALARS, SCALARS, SCALARS, SCALARS,
    st.lists(NESTED, max_size=3),
    st.dictionaries(MEMBER_NAMES, NESTED, min_size=1, max_size=3),
    st.builds(lambda v: {"@type": "DateTime", "@value": v}, SCALARS),
)
# stored DateTimes are UTC without an offset (clause 4.6.3); one instant written two ways
OBSERVED = st.sampled_from(["2018-12-04T12:00:00Z", "2018-12-04T12:00:00.000Z",
                            "2018-12-04T11:00:00Z", "2018-12-04T12:00:00.0005Z"])
_URI = st.sampled_from(URIS)
_TEXT = st.one_of(st.builds(Slot, st.integers(0, PALETTE_SIZE - 1), st.just(True)),
                  st.sampled_from(STRINGS))
_WORD = st.sampled_from(["lamp", "on", "urn:ngsi-ld:D:1"])
#: the value member of each attribute type, in the request form
VALUE_BODIES = {
    "Property": st.fixed_dictionaries({"value": PROPERTY_VALUES}),
    "Relationship": st.fixed_dictionaries({"object": st.one_of(
        _URI, st.lists(_URI, min_size=1, max_size=2))}),
    "GeoProperty": st.fixed_dictionaries({"value": st.builds(
        lambda x: {"type": "Point", "coordinates": [x, 43.84]},
        st.sampled_from([4.36, 0, -1, 2]))}),
    "LanguageProperty": st.fixed_dictionaries({"languageMap": st.dictionaries(
        st.sampled_from(["fr", "en"]), st.one_of(_TEXT, st.lists(_TEXT, max_size=2)),
        min_size=1)}),
    "ListProperty": st.fixed_dictionaries({"valueList": st.lists(NESTED, max_size=3)}),
    "ListRelationship": st.fixed_dictionaries({"objectList": st.lists(
        st.one_of(_URI, st.builds(lambda u: {"object": u}, _URI)), max_size=3)}),
    "VocabProperty": st.fixed_dictionaries({"vocab": st.one_of(
        _WORD, st.lists(_WORD, min_size=1, max_size=2))}),
    "JsonProperty": st.fixed_dictionaries({"json": NESTED.filter(lambda v: v is not None)}),
}
KINDS = st.sampled_from(["Property"] * 6 + sorted(set(VALUE_BODIES) - {"Property"}))
UNIT_CODES = st.sampled_from(["C62", "CEL", "é"])
TENTHS = st.integers(0, 9)


@st.composite
def instance(draw: st.DrawFn, sub: bool = False) -> dict[str, Any]:
    """One attribute instance in the normalized request form (with Slots)."""
    kind = draw(KINDS)
    body: dict[str, Any] = {"type": kind, **draw(VALUE_BODIES[kind])}
    if draw(TENTHS) < 4:
        body["observedAt"] = draw(OBSERVED)
    if draw(TENTHS) < 3 and kind not in ("Relationship", "ListRelationship"):
        body["unitCode"] = draw(UNIT_CODES)  # clause 4.5.3.2: never on a Relationship
    if not sub and draw(TENTHS) < 3:
        body["s"] = draw(SUB_INSTANCES)
    return body


SUB_INSTANCES = instance(sub=True)
INSTANCES = instance()
INSTANCE_COUNTS = st.sampled_from([1, 1, 1, 2, 3])


@st.composite
def attribute(draw: st.DrawFn) -> Any:
    """One instance, or several with distinct datasetIds (one maybe the default instance)."""
    count = draw(INSTANCE_COUNTS)
    if count == 1:
        one = draw(INSTANCES)
        if draw(TENTHS) == 0:
            one["datasetId"] = "urn:ngsi-ld:Dataset:0"
        return one
    instances = [draw(INSTANCES) for _ in range(count)]
    first_default = draw(st.booleans())
    for index, item in enumerate(instances):
        if index or not first_default:
            item["datasetId"] = f"urn:ngsi-ld:Dataset:{index}"
    return instances


ATTRIBUTES = attribute()
ENTITY_TYPES = st.sampled_from([["T1"], ["T1"], ["T2"], ["T2"], ["T1", "T2"]])


@st.composite
def entity_body(draw: st.DrawFn) -> dict[str, Any]:
    """An entity body without its id (with Slots)."""
    types = draw(ENTITY_TYPES)
    body: dict[str, Any] = {"type": types[0] if len(types) == 1 else types}
    for name in STORED_NAMES:
        if draw(TENTHS) < 7:
            body[name] = draw(ATTRIBUTES)
    return body


ENTITY_BODIES = entity_body()
SIZES = st.integers(1, 8)
GHOSTS = st.integers(0, 2)


def expand(body: dict[str, Any], number: int | None = None) -> dict[str, Any]:
    if number is not None:
        body = {"id": f"urn:ngsi-ld:T:{number}", **body}
    return expand_entity(body, TERMS, NOW)


# --------------------------------------------------------------------------- q expressions

#: Unquoted number literals. Integers beyond int64 are left out: they fail with OverflowError
#: (test_integer_literal_beyond_int64 below).
Q_NUMBERS = ["0", "1", "2", "-1", "-3", "7", "1.5", "-0.5", "2.0", "1e0", "-0.0", "0.0",
             "1e20", "9007199254740993", "9007199254740992.0", "9223372036854775807",
             "-9223372036854775808", "9.223372036854776e18", "1.8446744073709552e19"]
Q_DATETIMES = ["2018-12-04T12:00:00Z", "2018-12-04T13:00:00+01:00", "2018-12-04T12:00:00.0005Z",
               "2018-12-04T11:00:00Z", "2018-12-04T11:59:59.9995Z", "2026-11-27T18:00:00Z"]


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal_family(text: str) -> str | None:
    """The family of a q value text, None if the parser rejects it."""
    try:
        node = parse_q("a==" + text, TERMS.expand)
    except BadRequestData:
        return None
    return node.operand.family if isinstance(node, Compare) and isinstance(
        node.operand, Literal) else None


def render(value: Any, mode: str) -> str:
    """A palette value as a q literal. Modes: ``v`` unquoted where the parser takes it (so a
    datetime string is an instant, a URI a URI), ``q`` quoted; ``o`` and ``p`` the same for an
    ordering operator (no boolean: ``>true`` is a syntax error)."""
    if isinstance(value, bool):
        return "0" if mode in "op" else "true" if value else "false"
    if isinstance(value, int):  # beyond int64: as the (equal) float, see Q_NUMBERS
        return str(value) if -(2**63) <= value < 2**63 else repr(float(value))
    if isinstance(value, float):
        return repr(value)
    if mode not in "qp" and value and not any(c.isspace() or c in ';|),"' for c in value) \
            and ".." not in value and literal_family(value) is not None:
        return value
    return quote(value)


def render_range(low: Any, high: Any) -> str:
    """``low..high`` if both render to one family a range takes, else ``low..low``."""
    lo, hi = render(low, "o"), render(high, "o")
    family = literal_family(lo)
    if family not in ("number", "string", "datetime"):
        return "0..1"
    return f"{lo}..{hi}" if literal_family(hi) == family else f"{lo}..{lo}"


_MARKER = re.compile("\x01(\\d)([vqop]|r(\\d))\x02")


def fill_q(text: str, palette: list[Any]) -> str:
    """Replace the palette markers of a q text by literals."""
    def one(match: re.Match[str]) -> str:
        value = palette[int(match[1])]
        if match[3] is not None:
            return render_range(value, palette[int(match[3])])
        return render(value, match[2])

    return _MARKER.sub(one, text)


def marker(mode: str) -> st.SearchStrategy[str]:
    return st.integers(0, PALETTE_SIZE - 1).map(lambda i: f"\x01{i}{mode}\x02")


Q_STRINGS = [quote(s) for s in [*STRINGS, "2018-12-04T12:00:00Z", "lamp", "C62"]]
Q_OTHERS = ["true", "false", *URIS, "urn:ngsi-ld:Dataset:1", "2018-12-04", "12:00:00Z"]
POOL_VALUES = st.one_of(st.sampled_from(Q_NUMBERS), st.sampled_from(Q_STRINGS),
                        st.sampled_from(Q_DATETIMES), st.sampled_from(Q_OTHERS))
VALUES = st.one_of(marker("v"), marker("v"), marker("q"), POOL_VALUES)
ORDERED_VALUES = st.one_of(marker("o"), marker("o"), marker("p"),
                           POOL_VALUES.filter(lambda v: v not in ("true", "false")))
RANGES = st.one_of(
    st.builds(lambda i, j: f"\x01{i}r{j}\x02", st.integers(0, PALETTE_SIZE - 1),
              st.integers(0, PALETTE_SIZE - 1)),
    *(st.builds(lambda lo, hi: f"{lo}..{hi}", pool, pool) for pool in (
        st.sampled_from(Q_NUMBERS), st.sampled_from(Q_STRINGS), st.sampled_from(Q_DATETIMES))))
PATTERNS = st.sampled_from(['"^o"', '"n$"', '"(?i)ARE"', '"[0-9]"', '"^$"', '"é"', '"^urn:"',
                            '"\\\\\\\\"', "^o", "x|y", '"\\""', '"\\t"', '"^2018-12-04T12"'])
SUFFIXES = st.one_of(
    st.just(""), st.just(""), st.just(""),
    st.sampled_from([".s", ".t", ".observedAt", ".unitCode", ".datasetId", ".createdAt",
                     ".s.observedAt", ".s.unitCode", "[x]", "[y]", "[x.y]", "[x][y]",
                     "[@value]", "[type]", "[coordinates]", ".s[x]"]))
PATHS = st.builds(lambda name, suffix: name + suffix, st.sampled_from(QUERY_NAMES), SUFFIXES)
LEAVES = st.one_of(
    PATHS,
    PATHS.map(lambda path: "!" + path),
    st.builds(lambda p, op, v: f"{p}{op}{v}", PATHS,
              st.sampled_from(["==", "!=", ">", ">=", "<", "<="]), ORDERED_VALUES),
    st.builds(lambda p, op, v: f"{p}{op}{v}", PATHS, st.sampled_from(["==", "!="]), VALUES),
    st.builds(lambda p, op, v: f"{p}{op}{v}", PATHS, st.sampled_from(["==", "!="]), RANGES),
    st.builds(lambda p, op, v: f"{p}{op}{','.join(v)}", PATHS, st.sampled_from(["==", "!="]),
              st.lists(VALUES, min_size=2, max_size=3)),
    st.builds(lambda p, op, v: f"{p}{op}{v}", PATHS, st.sampled_from(["~=", "!~="]), PATTERNS),
).map(lambda text: (text, "leaf"))


def combine(kind: str, children: list[tuple[str, str]], spaced: bool) -> tuple[str, str]:
    """Render an And (';') or Or ('|'): an Or inside an And needs parentheses."""
    parts = [f"({text})" if kind == "and" and child == "or" else text
             for text, child in children]
    joiner = ";" if kind == "and" else "|"
    return (f" {joiner} " if spaced else joiner).join(parts), kind


def q_texts(depth: int) -> st.SearchStrategy[tuple[str, str]]:
    """(q text with markers, kind of the top node) of a tree of at most ``depth`` levels."""
    if depth == 0:
        return LEAVES
    inner = q_texts(depth - 1)
    inner = st.one_of(inner, inner.map(lambda node: (f"({node[0]})", node[1])))
    return st.one_of(
        LEAVES,
        st.builds(combine, st.sampled_from(["and", "or"]),
                  st.lists(inner, min_size=2, max_size=3), st.booleans()),
    )


Q_TEXTS = q_texts(3)
TYPE_SELECTIONS = st.sampled_from(["T1", "T2", "T1,T2", "T1;T2", "T3"])


@dataclass
class Scenario:
    finals: list[dict[str, Any]]  # the entities, in insertion order
    earlier: list[dict[str, Any] | None]  # an earlier version of each, updated to the final
    ghosts: list[dict[str, Any]]  # written with the others, then deleted
    q: str
    types: str


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """Random entities and a random q tree."""
    palette = draw(PALETTES)
    size = draw(SIZES)

    def body() -> dict[str, Any]:
        return fill(draw(ENTITY_BODIES), palette)  # type: ignore[no-any-return]

    finals = [expand(body(), n) for n in range(size)]
    earlier = [expand(body(), n) if draw(TENTHS) < 3 else None for n in range(size)]
    ghosts = [expand(body(), 100 + n) for n in range(draw(GHOSTS))]
    q = fill_q(draw(Q_TEXTS)[0], palette)
    return Scenario(finals, earlier, ghosts, q, draw(TYPE_SELECTIONS))


# Focused: one attribute "a" holding palette values, one comparison on it. Many more of the
# value pairs (int/float, big numbers, unicode, datetimes...) meet than in random trees.
SIMPLE_A = st.one_of(
    SLOTS, SLOTS, SLOTS,
    st.lists(SLOTS, min_size=1, max_size=3),
    st.builds(lambda v: {"x": v}, SLOTS),
).map(lambda v: {"type": "Property", "value": v})
SIMPLE_ATTRIBUTES = st.one_of(
    SIMPLE_A, SIMPLE_A,
    st.lists(SIMPLE_A, min_size=2, max_size=3).map(
        lambda insts: [{**i, "datasetId": f"urn:ngsi-ld:Dataset:{n}"}
                       for n, i in enumerate(insts)]),
    st.builds(lambda inst, sub: {**inst, "s": sub}, SIMPLE_A, SIMPLE_A),
)
SIMPLE_BODIES = st.fixed_dictionaries({"type": ENTITY_TYPES},
                                      optional={"a": SIMPLE_ATTRIBUTES})
COMPARISONS = st.one_of(
    st.builds(lambda path, op, v: f"{path}{op}{v}",
              st.sampled_from(["a", "a", "a", "a.s", "a[x]"]),
              st.sampled_from(["==", "!=", ">", ">=", "<", "<="]), ORDERED_VALUES),
    st.builds(lambda path, op, v: f"{path}{op}{v}", st.sampled_from(["a", "a", "a.s", "a[x]"]),
              st.sampled_from(["==", "!="]),
              st.one_of(VALUES, RANGES, st.lists(VALUES, min_size=2, max_size=3).map(
                  ",".join))),
)


@st.composite
def comparisons(draw: st.DrawFn) -> Scenario:
    """Entities whose attribute ``a`` holds palette values, and one comparison on ``a``."""
    palette = draw(PALETTES)
    size = draw(st.integers(2, 8))
    finals = [expand(fill(draw(SIMPLE_BODIES), palette), n) for n in range(size)]
    return Scenario(finals, [None] * size, [], fill_q(draw(COMPARISONS), palette),
                    draw(TYPE_SELECTIONS))


# --------------------------------------------------------------------------- the store


def ids(entities: list[dict[str, Any]]) -> list[str]:
    return [e["id"] for e in entities]


async def check_store(scenario: Scenario, node: QNode, types: TypeNode) -> None:
    finals, earlier = scenario.finals, scenario.earlier
    with tempfile.TemporaryDirectory() as directory:
        store = SqliteStore(Path(directory), readers=1)
        try:
            first = [old if old is not None else new for old, new in zip(earlier, finals,
                                                                          strict=True)]
            await store.write(None, [WriteOp(None, e)
                                     for e in first[:1] + scenario.ghosts + first[1:]])
            updates = [WriteOp(old, new) for old, new in zip(earlier, finals, strict=True)
                       if old is not None]
            await store.write(None, updates + [WriteOp(g, None) for g in scenario.ghosts])

            wanted = ids([e for e in finals if evaluate(node, e)])
            for count in (True, False):
                result = await store.query(None, EntityQuery(q=node, limit=1000, count=count))
                assert ids(result.entities) == wanted, f"count={count}"
                assert result.count == (len(wanted) if count else None)
                page = await store.query(None, EntityQuery(q=node, limit=2, offset=1,
                                                           count=count))
                assert ids(page.entities) == wanted[1:3], f"page, count={count}"
                assert page.count == (len(wanted) if count else None)

            typed = ids([e for e in finals if matches_types(types, e["type"])
                         and evaluate(node, e)])
            selector = EntitySelector(types=types)
            for count in (True, False):
                result = await store.query(None, EntityQuery(
                    selectors=(selector,), q=node, limit=1000, count=count))
                assert ids(result.entities) == typed, f"typed, count={count}"
                assert result.count == (len(typed) if count else None)
        finally:
            await store.close()


# --------------------------------------------------------------------------- the property

STATS: Counter[str] = Counter()


def check_scenario(scenario: Scenario) -> None:
    STATS["generated"] += 1
    try:
        node = parse_q(scenario.q, TERMS.expand)
    except BadRequestData:
        STATS["rejected"] += 1
        event("q rejected by the parser")
        assume(False)
    note(f"q = {scenario.q!r} -> {node}; types = {scenario.types!r}")
    note(f"entities = {scenario.finals!r}")
    if any(scenario.earlier) or scenario.ghosts:
        note(f"earlier = {scenario.earlier!r}; ghosts = {scenario.ghosts!r}")
    matched = sum(evaluate(node, e) for e in scenario.finals)
    everything = matched == len(scenario.finals)
    event(f"matches: {'none' if not matched else 'all' if everything else 'some'}")
    STATS["examples"] += 1
    STATS["some"] += matched > 0 and not everything
    types = parse_type_selection(scenario.types, TERMS.expand)
    asyncio.run(check_store(scenario, node, types))


def run_property(check: Any) -> None:
    """Run a Hypothesis property; check that its q texts parse and its matches vary."""
    STATS.clear()
    started = time.perf_counter()
    check()
    elapsed = time.perf_counter() - started
    print(f"\n{check.__name__}: {STATS['examples']} examples in {elapsed:.1f} s "
          f"({STATS['examples'] / elapsed:.1f}/s); {STATS['rejected']} of "
          f"{STATS['generated']} q texts rejected by the parser; q matched some but not all "
          f"entities in {STATS['some']}")
    # The generators only write valid q: a rejection means they (or the parser) drifted.
    assert STATS["rejected"] <= STATS["generated"] // 50
    # The palette makes comparisons hit: many examples tell entities apart.
    assert STATS["some"] >= STATS["examples"] // 10  # one CI run saw 37 of 250 (15 %)


@settings(max_examples=250, deadline=None, database=None, report_multiple_bugs=False)
@given(scenarios())
def random_trees(scenario: Scenario) -> None:
    check_scenario(scenario)


@settings(max_examples=250, deadline=None, database=None, report_multiple_bugs=False)
@given(comparisons())
def single_comparisons(scenario: Scenario) -> None:
    check_scenario(scenario)


@pytest.mark.timeout(900)  # shrinking a failure takes Hypothesis up to 5 min
def test_store_q_agrees_with_evaluate_on_random_trees() -> None:
    run_property(random_trees)


@pytest.mark.timeout(900)  # shrinking a failure takes Hypothesis up to 5 min
def test_store_q_agrees_with_evaluate_on_single_comparisons() -> None:
    run_property(single_comparisons)


# --------------------------------------------------------------------------- known disagreements


def one_store_query(bodies: list[dict[str, Any]], text: str, count: bool
                    ) -> tuple[list[str], list[str]]:
    """(ids evaluate accepts, ids the store returns) for ``q=text``."""
    finals = [expand(b) for b in bodies]
    node = parse_q(text, TERMS.expand)

    async def run() -> list[str]:
        with tempfile.TemporaryDirectory() as directory:
            store = SqliteStore(Path(directory), readers=1)
            try:
                await store.write(None, [WriteOp(None, e) for e in finals])
                result = await store.query(None, EntityQuery(q=node, limit=1000, count=count))
                return ids(result.entities)
            finally:
                await store.close()

    return ids([e for e in finals if evaluate(node, e)]), asyncio.run(run())


def gauge(number: int, value: object, **more: object) -> dict[str, Any]:
    return {"id": f"urn:ngsi-ld:T:{number}", "type": "T1",
            "a": {"type": "Property", "value": value, **more}}


@pytest.mark.parametrize("count", [True, False])
@pytest.mark.parametrize("text", ["a==9223372036854775808", "a.s==9223372036854775808",
                                  "a==-9223372036854775809", "a==1..9223372036854775808"])
def test_integer_literal_beyond_int64(text: str, count: bool) -> None:
    wanted, got = one_store_query([gauge(1, 2**63, s={"type": "Property", "value": 2**63})],
                                  text, count)
    assert got == wanted


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "a stored integer beyond int64 that no float represents (2**63 + 1) is indexed, and read "
    "by json_extract, as the float 2**63: a==9.223372036854776e18 matches it in SQL but not "
    "in evaluate (Python compares int and float exactly)"))
@pytest.mark.parametrize("count", [True, False])
@pytest.mark.parametrize("text", ["a==9.223372036854776e18", "a<=9.223372036854776e18",
                                  "a!=9.223372036854776e18,1", "a.s==9.223372036854776e18",
                                  "a[x]==9.223372036854776e18"])
def test_big_int_vs_float_literal_disagree(text: str, count: bool) -> None:
    wanted, got = one_store_query([
        gauge(1, 2**63 + 1, s={"type": "Property", "value": 2**63 + 1}),
        {**gauge(2, {"x": 2**63 + 1}), "b": 1}], text, count)
    assert got == wanted


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "2**63 + 1 > 9.223372036854776e18 is true in evaluate; SQL compares the float 2**63"))
@pytest.mark.parametrize("count", [True, False])
def test_big_int_greater_than_float_literal(count: bool) -> None:
    wanted, got = one_store_query([gauge(1, 2**63 + 1)], "a>9.223372036854776e18", count)
    assert got == wanted


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "SQLite's JSON functions cut a string at an escaped NUL (json_extract of \"a\\u0000b\" "
    "is 'a'): ~= and !~= (always JSON SQL) see 'a', so a~=\"b$\" misses the stored "
    "'a\\x00b' that evaluate matches, and a!~=\"\\x00\" matches it"))
@pytest.mark.parametrize("count", [True, False])
@pytest.mark.parametrize(("value", "text"), [
    ("a\x00b", 'a~="b$"'), ("a\x00b", 'a~="\\x00"'), ("a\x00b", 'a!~="\\x00"'),
    (["a\x00b"], 'a~="b$"'), (["a\x00b"], 'a!~="\\x00"'), ({"x": "a\x00b"}, 'a[x]~="b$"'),
])
def test_nul_in_string_regex(value: object, text: str, count: bool) -> None:
    wanted, got = one_store_query([gauge(1, value)], text, count)
    assert got == wanted


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "SQLite's JSON functions cut a string at an escaped NUL: comparisons through JSON SQL "
    "(sub-attributes, compound members) see 'a' for the stored 'a\\x00b' (false match of "
    "=='a', missed =='a\\x00b'); the value index (a plain path) gets it right"))
@pytest.mark.parametrize("count", [True, False])
@pytest.mark.parametrize(("body", "text"), [
    (gauge(1, {"x": "a\x00b"}), 'a[x]=="a"'),
    (gauge(1, {"x": "a\x00b"}), 'a[x]=="a\x00b"'),
    (gauge(1, {"x": "a\x00b"}), 'a[x]<"a\x00"'),
    (gauge(1, 5, s={"type": "Property", "value": "a\x00b"}), 'a.s=="a"'),
    (gauge(1, 5, s={"type": "Property", "value": "a\x00b"}), 'a.s=="a\x00b"'),
])
def test_nul_in_string_json_path(body: dict[str, Any], text: str, count: bool) -> None:
    wanted, got = one_store_query([body], text, count)
    assert got == wanted
