"""Tests of cityvisor.store.sqlite_q: the q language as SQLite SQL agrees with ``evaluate``."""

from __future__ import annotations

import json
import random
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from q_samples import EXPRESSIONS, VOCAB, entity, prop, q

from cityvisor.ngsild.query import evaluate, parse_q
from cityvisor.store.sqlite_q import sqlite_regexp, to_sql


def test_sqlite_regexp() -> None:
    assert sqlite_regexp("^ab", "abc") == 1
    assert sqlite_regexp("^ab", "cab") == 0
    assert sqlite_regexp("x", 3) == 0


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
    # language filters, != as the negation of == per instance, unordered relationships
    "a[fr]", "a[*]", "!a[en]", "a[fr]==1", 'a[en]=="on"', "a[*]==1", 'a[*]!="on"',
    'a[fr]!="on"', "a[en]>0", 'a>"urn"', 'a<="urn:ngsi-ld:D:1"', "a!=urn:ngsi-ld:D:1",
    'a.s!="on"', "a[x]!=1", "a.unitCode!=\"C62\"",
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


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EXPRESSIONS, st.integers(0, 2**32))
def test_sql_agrees_with_evaluate_generated(source: str, seed: int) -> None:
    rng = random.Random(seed)
    entities = [random_entity(rng) for _ in range(40)]
    check_sql(connect(entities), entities, source)
    check_sql(CONN_ALL, ENTITIES, source)


CONN_ALL = connect(ENTITIES)
