"""Tests of cityvisor.ngsild.query: the NGSI-LD Query Language (ETSI GS CIM 009 v1.8, 4.9)."""

from __future__ import annotations

import json
import random
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cityvisor.ngsild.errors import BadRequestData
from cityvisor.ngsild.query import (
    And,
    Compare,
    Exists,
    Literal,
    Match,
    Or,
    Path,
    Range,
    ValueList,
    evaluate,
    parse_q,
    sqlite_regexp,
    to_sql,
)

VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"


def expand(term: str) -> str:
    return VOCAB + term


def q(text: str):
    return parse_q(text, expand)


def p(name: str, *subs: str, meta: str | None = None, members: tuple[str, ...] = ()) -> Path:
    return Path(VOCAB + name, tuple(VOCAB + s for s in subs), meta, members)


def num(value: float) -> Literal:
    return Literal("number", value)


def text(value: str) -> Literal:
    return Literal("string", value)


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(("source", "expected"), [
    ("a==1", Compare(p("a"), "==", num(1))),
    ("a!=-2.5", Compare(p("a"), "!=", num(-2.5))),
    ("a>1e3", Compare(p("a"), ">", num(1000.0))),
    ("a>=1.5E-2", Compare(p("a"), ">=", num(0.015))),
    ("a<0", Compare(p("a"), "<", num(0))),
    ("a<=3", Compare(p("a"), "<=", num(3))),
    ('a=="on"', Compare(p("a"), "==", text("on"))),
    (r'a=="say \"hi\""', Compare(p("a"), "==", text('say "hi"'))),
    ("a==true", Compare(p("a"), "==", Literal("bool", True))),
    ("a!=false", Compare(p("a"), "!=", Literal("bool", False))),
    ("a==1..5", Compare(p("a"), "==", Range(num(1), num(5)))),
    ("a!=1.5..2.5", Compare(p("a"), "!=", Range(num(1.5), num(2.5)))),
    ('a=="a".."m"', Compare(p("a"), "==", Range(text("a"), text("m")))),
    ('a=="x","y"', Compare(p("a"), "==", ValueList((text("x"), text("y"))))),
    ("a!=1,2", Compare(p("a"), "!=", ValueList((num(1), num(2))))),
    ("a~=ab.*", Match(p("a"), "ab.*")),
    ('a!~="(?i)^x|y$"', Match(p("a"), "(?i)^x|y$", negated=True)),
    ("a~=^(a|b)c[)]", Match(p("a"), "^(a|b)c[)]")),
    ("a", Exists(p("a"))),
    ("!a", Exists(p("a"), negated=True)),
    ("a.s==1", Compare(p("a", "s"), "==", num(1))),
    ("a.s.t==1", Compare(p("a", "s", "t"), "==", num(1))),
    ("a.observedAt>2018-12-04T12:00:00Z",
     Compare(p("a", meta="observedAt"), ">",
             Literal("datetime", "2018-12-04T12:00:00.000000Z"))),
    ('a.s.unitCode=="C62"', Compare(p("a", "s", meta="unitCode"), "==", text("C62"))),
    ('a[x.y]=="q"', Compare(p("a", members=("x", "y")), "==", text("q"))),
    ('a[x][y]=="q"', Compare(p("a", members=("x", "y")), "==", text("q"))),
    ("a.s[x]==1", Compare(p("a", "s", members=("x",)), "==", num(1))),
    ("r==urn:ngsi-ld:Device:1", Compare(p("r"), "==", Literal("uri", "urn:ngsi-ld:Device:1"))),
    ('r=="urn:ngsi-ld:Device:1"', Compare(p("r"), "==", text("urn:ngsi-ld:Device:1"))),
    ("d==2018-12-04", Compare(p("d"), "==", Literal("date", "2018-12-04"))),
    ("d<12:30:00Z", Compare(p("d"), "<", Literal("time", "12:30:00Z"))),
    ("d==2018-12-04T12:00:00+01:00..2018-12-04T13:00:00Z",
     Compare(p("d"), "==", Range(Literal("datetime", "2018-12-04T11:00:00.000000Z"),
                                 Literal("datetime", "2018-12-04T13:00:00.000000Z")))),
])
def test_parse_terms(source: str, expected: object) -> None:
    assert q(source) == expected


def test_expand_applies_to_attribute_and_sub_attribute_names_only() -> None:
    seen: list[str] = []

    def recording(term: str) -> str:
        seen.append(term)
        return "urn:x:" + term

    node = parse_q("temp.accuracy.observedAt>2020-01-01;addr[street.name]==\"x\"", recording)
    assert seen == ["temp", "accuracy", "addr"]
    assert isinstance(node, And)
    assert node.children[0].path == Path("urn:x:temp", ("urn:x:accuracy",), "observedAt")
    assert node.children[1].path == Path("urn:x:addr", (), None, ("street", "name"))


def test_precedence_and_parentheses() -> None:
    a, b, c = (Exists(p(n)) for n in "abc")
    assert q("a;b|c") == Or((And((a, b)), c))
    assert q("a|b;c") == Or((a, And((b, c))))
    assert q("a;(b|c)") == And((a, Or((b, c))))
    assert q("((a));((b|(c)))") == And((a, Or((b, c))))
    assert q("a;b;c") == And((a, b, c))
    assert q("(a|b)|c") == Or((a, b, c))
    assert q(" a == 1 ; b ") == And((Compare(p("a"), "==", num(1)), b))


@pytest.mark.parametrize("source", [
    "", "   ", "(", ")", "()", "(a==1", "a==1)", "a==1;", "a==1|", ";a", "|a", "a==",
    "a>", "a=1", "a===1", "a<>1", "a==1..", "a==..5", "a==1..2..3", 'a==1.."z"',
    "a>1..5", "a>1,2", "a==1,", "a==true..false", "a>true", "a==foo", 'a=="open',
    "a~=", "a~=(", "a~=\"[\"", "a..b==1", "a.==1", "a[x==1", "a[]==1", "!", "!(a)",
    "a==1 b==2", "a==2018-13-45T00:00:00Z", "observedAt==1", "a.observedAt.b==1",
    "a.observedAt[x]==1", "a==1e999", "a==1,2..3",
])
def test_syntax_errors(source: str) -> None:
    with pytest.raises(BadRequestData) as info:
        q(source)
    assert "position" in info.value.detail or "datetime" in info.value.detail


def test_error_names_position_and_text() -> None:
    with pytest.raises(BadRequestData) as info:
        q("a==1;b==;c")
    assert "position 9" in info.value.detail
    assert "';c'" in info.value.detail


def test_quotes_in_expanded_names_are_rejected() -> None:
    with pytest.raises(BadRequestData):
        parse_q("a==1", lambda term: 'urn:x:"' + term)


def test_render() -> None:
    source = '(a==1|b!="x\\"y");!c;d.s.observedAt>=2018-12-04T12:00:00Z;e[f.g]~="^a"'
    assert str(q(source)) == (
        '(a==1|b!="x\\"y");!c;d.s.observedAt>=2018-12-04T12:00:00.000000Z;e[f.g]~="^a"')


def test_sqlite_regexp() -> None:
    assert sqlite_regexp("^ab", "abc") == 1
    assert sqlite_regexp("^ab", "cab") == 0
    assert sqlite_regexp("x", 3) == 0
    with pytest.raises(BadRequestData):
        sqlite_regexp("(", "x")


# --------------------------------------------------------------------------- evaluate


def prop(value: object, **extra: object) -> dict:
    return {"type": "Property", "value": value, **extra}


def entity(**attrs: list[dict]) -> dict:
    return {"id": "urn:ngsi-ld:T:1", "type": [VOCAB + "T"],
            "attrs": {VOCAB + name: insts for name, insts in attrs.items()}}


STREETLIGHT = entity(
    power=[prop("on", observedAt="2026-11-27T10:00:00Z", unitCode="C62",
                subs={VOCAB + "reliability": prop(0.9, observedAt="2026-11-27T09:00:00Z")}),
           prop("off", datasetId="urn:ngsi-ld:Dataset:b")],
    lum=[prop(42), prop(7.5, datasetId="urn:ngsi-ld:Dataset:x")],
    group=[{"type": "Relationship", "object": "urn:ngsi-ld:Group:3"}],
    peers=[{"type": "Relationship", "object": ["urn:ngsi-ld:L:1", "urn:ngsi-ld:L:2"]}],
    name=[{"type": "LanguageProperty", "languageMap": {"fr": "Arènes", "en": "Arena"}}],
    tags=[prop(["led", "smart"])],
    samples=[{"type": "ListProperty", "valueList": [1, 2, 3]}],
    parts=[{"type": "ListRelationship",
            "objectList": [{"object": "urn:ngsi-ld:P:1", "objectType": "urn:x:Part"},
                           "urn:ngsi-ld:P:2"]}],
    kind=[{"type": "VocabProperty", "vocab": VOCAB + "lamp"}],
    cfg=[{"type": "JsonProperty", "json": {"mode": "auto", "level": 3}}],
    address=[prop({"street": {"name": "Rue X", "number": 5}, "city": "Nîmes"})],
    installed=[prop({"@type": "DateTime", "@value": "2020-05-01T08:00:00+02:00"})],
    on=[prop(True)],
    location=[{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [4.36, 43.84]}}],
)


@pytest.mark.parametrize(("source", "expected"), [
    ('power=="on"', True), ('power=="off"', True), ('power=="dim"', False),
    ('power!="on"', True),  # the other instance differs
    ("lum>40", True), ("lum<8", True), ("lum==7.5", True), ("lum==8..40", False),
    ("lum==40..50", True), ("lum!=42,7.5", False), ("lum!=42", True),
    ('lum=="42"', False), ('power==1', False), ('power>"a"', True),
    ("power.observedAt>2026-11-27T09:59:59Z", True),
    ("power.observedAt==2026-11-27T11:00:00+01:00", True),
    ("power.observedAt<2026-11-27T10:00:00Z", False),
    ('power.unitCode=="C62"', True), ("power.unitCode", True), ("lum.unitCode", False),
    ("power.datasetId==urn:ngsi-ld:Dataset:b", True),
    ("power.reliability>0.5", True), ("power.reliability.observedAt<2026-11-27T10:00:00Z", True),
    ("power.reliability", True), ("power.other", False), ("lum.reliability", False),
    ("group==urn:ngsi-ld:Group:3", True), ('group=="urn:ngsi-ld:Group:3"', True),
    ("group~=Group", True), ("peers==urn:ngsi-ld:L:2", True), ("peers==urn:ngsi-ld:L:3", False),
    ('name=="Arena"', True), ("name~=^Ar", True), ('name=="Arene"', False),
    ('tags=="smart"', True), ('tags=="dumb"', False),
    ("samples==2", True), ("samples>3", False),
    ("parts==urn:ngsi-ld:P:1", True), ("parts==urn:ngsi-ld:P:2", True),
    ("parts==urn:x:Part", False),
    ("kind==https://uri.etsi.org/ngsi-ld/default-context/lamp", True),
    ('cfg[mode]=="auto"', True), ("cfg[level]>=3", True), ("cfg[missing]", False),
    ("cfg[mode]", True), ('cfg=="auto"', False),
    ('address[street.name]=="Rue X"', True), ("address[street.number]==1..9", True),
    ('address[city]~="^N"', True), ("address[street]", True), ('address[street]=="x"', False),
    ("installed==2020-05-01T06:00:00Z", True), ("installed>2020-05-01T07:00:00Z", False),
    ("installed==2020-05-01T06:00:00Z..2020-05-02T00:00:00Z", True),
    ("on==true", True), ("on!=true", False), ("on==1", False), ("on==false", False),
    ('location[type]=="Point"', True),
    ("missing", False), ("!missing", True), ("!power", False),
    ("missing!=1", False), ('missing!~="x"', False), ('power!~="n"', True), ('power!~="o"', False),
    ('power=="on";lum>40', True), ('power=="dim"|lum>40', True),
    ('power=="dim";lum>40|!missing', True), ('power=="dim";(lum>40|!missing)', False),
])
def test_evaluate(source: str, expected: bool) -> None:
    assert evaluate(q(source), STREETLIGHT) is expected


def test_datetime_literal_needs_a_datetime_string() -> None:
    e = entity(a=[prop("soon")], b=[prop(20181204)], c=[prop("2018-12-04T12:00:00Z")])
    assert not evaluate(q("a>2018-12-04T12:00:00Z"), e)
    assert not evaluate(q("b>2018-12-04T12:00:00Z"), e)
    assert evaluate(q("c==2018-12-04T13:00:00+01:00"), e)
    assert evaluate(q("c>=2018-12-04"), e)  # a date compares as a string


# --------------------------------------------------------------------------- SQL


def connect(entities: list[dict]) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.create_function("ngsi_regexp", 2, sqlite_regexp, deterministic=True)
    conn.execute("CREATE TABLE entities(rowid INTEGER PRIMARY KEY, doc TEXT)")
    conn.executemany("INSERT INTO entities(rowid, doc) VALUES (?, ?)",
                     [(i, json.dumps(e)) for i, e in enumerate(entities)])
    return conn


def check_sql(conn: sqlite3.Connection, entities: list[dict], source: str) -> bool:
    node = q(source)
    wanted = {i for i, e in enumerate(entities) if evaluate(node, e)}
    sql_filter = to_sql(node, "e.doc")
    if sql_filter is None:
        return False
    rows = conn.execute(f"SELECT e.rowid FROM entities e WHERE {sql_filter.sql}",
                        sql_filter.params)
    got = {r for (r,) in rows}
    if sql_filter.exact:
        assert got == wanted, (source, sorted(got ^ wanted)[:5])
    else:
        assert wanted <= got, (source, sorted(wanted - got)[:5])
    return sql_filter.exact


SCALARS = [0, 1, 2, 5, -3, 1.5, 2.0, True, False, None, "on", "off", "x", "Arena", "",
           "2018-12-04T12:00:00Z", "2018-12-04T13:00:00+01:00", "2018-12-04T12:00:00.0005Z",
           "2018-12-04", "urn:ngsi-ld:D:1", "urn:ngsi-ld:D:2"]


def random_value(rng: random.Random, depth: int = 0) -> object:
    roll = rng.random()
    if depth < 2 and roll < 0.15:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 2 and roll < 0.25:
        return {rng.choice(["x", "y", "@value"]): random_value(rng, depth + 1)
                for _ in range(rng.randint(0, 2))}
    return rng.choice(SCALARS)


def random_instance(rng: random.Random, depth: int = 0) -> dict:
    kind = rng.choice(["Property"] * 4 + ["Relationship", "LanguageProperty", "ListProperty",
                                          "ListRelationship", "VocabProperty", "JsonProperty",
                                          "GeoProperty"])
    key = {"Property": "value", "GeoProperty": "value", "Relationship": "object",
           "LanguageProperty": "languageMap", "ListProperty": "valueList",
           "ListRelationship": "objectList", "VocabProperty": "vocab", "JsonProperty": "json"}
    value = random_value(rng)
    if kind == "LanguageProperty":
        value = {"fr": rng.choice(SCALARS), "en": [rng.choice(SCALARS)]}
    elif kind == "ListRelationship":
        value = [{"object": rng.choice(SCALARS), "objectType": rng.choice(SCALARS)},
                 rng.choice(SCALARS)]
    inst: dict = {"type": kind, key[kind]: value}
    if rng.random() < 0.4:
        inst["observedAt"] = rng.choice(["2018-12-04T12:00:00Z", "2018-12-04T11:00:00Z",
                                         "2018-12-04T12:30:00+01:00", "bad"])
    if rng.random() < 0.3:
        inst["unitCode"] = rng.choice(["C62", "CEL"])
    if depth == 0 and rng.random() < 0.3:
        inst["subs"] = {VOCAB + "s": random_instance(rng, 1)}
    return inst


def random_entity(rng: random.Random) -> dict:
    attrs = {}
    for name in "abc":
        if rng.random() < 0.75:
            attrs[name] = [random_instance(rng) for _ in range(rng.choice([1, 1, 2, 3]))]
            for index, inst in enumerate(attrs[name][1:]):
                inst["datasetId"] = f"urn:ngsi-ld:Dataset:{index}"
    return entity(**attrs)


ENTITIES = [random_entity(random.Random(seed)) for seed in range(400)]


@pytest.fixture(scope="module")
def conn() -> sqlite3.Connection:
    return connect(ENTITIES)


@pytest.mark.parametrize("source", [
    "a==1", "a!=1", "a>1", "a>=1.5", "a<2", "a<=0", 'a=="on"', 'a!="on"', 'a>"o"',
    "a==true", "a!=true", "a==false", "a==1..2", "a!=1..2", 'a=="a".."p"',
    'a=="on","off"', 'a!="on","off"', "a==1,\"x\",true", "a!=1,\"x\",true",
    "a~=^o", 'a!~="n$"', "a", "!a", "a.s", "!a.s", "a.s==1", 'a.s~="."',
    "a.observedAt", "a.observedAt==2018-12-04T12:00:00Z",
    "a.observedAt>2018-12-04T11:30:00Z", "a.observedAt<2018-12-04T11:30:00Z",
    "a.observedAt!=2018-12-04T12:00:00Z", "a.observedAt==2018-12-04T11:00:00Z..2018-12-04T11:30Z",
    'a.unitCode=="C62"', "a.s.observedAt", 'a.s.unitCode!="C62"',
    "a==2018-12-04T12:00:00Z", "a>2018-12-04T12:00:00Z", "a!=2018-12-04T12:00:00Z",
    'a==2018-12-04T12:00:00Z,"on"', 'a!=2018-12-04T12:00:00Z,"on"',
    "a==2018-12-04", "a==urn:ngsi-ld:D:1", "a~=urn",
    "a[x]", "a[x]==1", 'a[x]=="on"', "a[x.y]", "a[x.y]==true", 'a[@value]=="x"',
    "a.s[x]==1", "!a[x]",
    'a==1;b=="on"', "a==1|b==1|c==1", "(a==1|b>1);!c", "!a;!b;!c", "a|!a",
    '(a~="o"|b.s)|(c.observedAt>2018-12-04T12:00:00Z;a==1)',
])
def test_sql_agrees_with_evaluate(conn: sqlite3.Connection, source: str) -> None:
    is_exact = check_sql(conn, ENTITIES, source)
    assert is_exact == ("2018-12-04T" not in source)


def test_sql_selects_something(conn: sqlite3.Connection) -> None:
    """The fixture data exercises both outcomes for the usual terms."""
    for source in ["a==1", 'a=="on"', "a.s", "a[x]", "a==true", "a.observedAt"]:
        node = q(source)
        hits = sum(evaluate(node, e) for e in ENTITIES)
        assert 0 < hits < len(ENTITIES), source


def test_sql_quotes_iris_in_json_paths() -> None:
    iri = "https://example.org/o'k#x/y.z:w"
    node = parse_q("ok==1;ok.observedAt", lambda term: iri)
    conn = connect([{"attrs": {iri: [prop(1, observedAt="2020-01-01T00:00:00Z")]}},
                    {"attrs": {"https://example.org/o'k": [prop(1)]}}])
    sql_filter = to_sql(node, "doc")
    assert sql_filter is not None and sql_filter.exact
    rows = conn.execute(f"SELECT rowid FROM entities WHERE {sql_filter.sql}",
                        sql_filter.params).fetchall()
    assert rows == [(0,)]


# --------------------------------------------------------------------------- hypothesis

NAMES = st.sampled_from(["a", "b", "c"])
PATHS = st.one_of(
    NAMES,
    st.builds(lambda n, m: f"{n}.{m}", NAMES,
              st.sampled_from(["s", "observedAt", "unitCode", "s.observedAt"])),
    st.builds(lambda n, m: f"{n}[{m}]", NAMES, st.sampled_from(["x", "y", "x.y", "@value"])),
)
VALUES = st.one_of(
    st.integers(-3, 6).map(str),
    st.sampled_from(["1.5", "2.0", "-0.5", "1e0", "true", "false", '"on"', '"off"', '"x"',
                     '""', '"Arena"', '"a\\"b"', "urn:ngsi-ld:D:1", "2018-12-04",
                     "2018-12-04T12:00:00Z", "2018-12-04T13:00:00+01:00"]),
)
RANGES = st.sampled_from(["0..2", "-3..1.5", '"a".."p"', "2018-12-04T11:00:00Z..2018-12-04T12:00:00Z"])
TERMS = st.one_of(
    PATHS,
    PATHS.map(lambda path: "!" + path),
    st.builds(lambda path, op, v: f"{path}{op}{v}", PATHS,
              st.sampled_from(["==", "!=", ">", ">=", "<", "<="]),
              VALUES.filter(lambda v: v not in ("true", "false"))),
    st.builds(lambda path, op, v: f"{path}{op}{v}", PATHS, st.sampled_from(["==", "!="]),
              st.one_of(VALUES, RANGES, st.lists(VALUES, min_size=2, max_size=3).map(",".join))),
    st.builds(lambda path, op, v: f"{path}{op}{v}", PATHS, st.sampled_from(["~=", "!~="]),
              st.sampled_from(["^o", '"n$"', '"(?i)ARE"', "[0-9]", '"^$"'])),
)
EXPRESSIONS = st.recursive(
    TERMS,
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(";".join),
        st.lists(inner, min_size=2, max_size=3).map("|".join),
        inner.map(lambda e: f"({e})"),
    ),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(EXPRESSIONS)
def test_render_round_trip(source: str) -> None:
    node = q(source)
    assert q(str(node)) == node
    assert str(q(str(node))) == str(node)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EXPRESSIONS, st.integers(0, 2**32))
def test_sql_agrees_with_evaluate_generated(source: str, seed: int) -> None:
    rng = random.Random(seed)
    entities = [random_entity(rng) for _ in range(40)]
    check_sql(connect(entities), entities, source)
    check_sql(CONN_ALL, ENTITIES, source)


CONN_ALL = connect(ENTITIES)
