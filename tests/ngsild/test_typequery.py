"""Tests of cityvisor.ngsild.typequery: entity type selection (ETSI GS CIM 009 v1.8, 4.17)."""

from __future__ import annotations

import itertools
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cityvisor.ngsild.errors import BadRequestData
from cityvisor.ngsild.typequery import (
    TypeAll,
    TypeAny,
    TypeName,
    matches_types,
    parse_type_selection,
    simple_types,
)
from cityvisor.store.sqlite_q import type_sql

VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"


def expand(term: str) -> str:
    return VOCAB + term


def t(text: str):
    return parse_type_selection(text, expand)


A, B, C, D = (TypeName(VOCAB + n) for n in "ABCD")


@pytest.mark.parametrize(("source", "expected"), [
    ("A", A),
    ("A,B", TypeAny((A, B))),
    ("A|B", TypeAny((A, B))),
    ("A,B|C", TypeAny((A, B, C))),
    ("A;B", TypeAll((A, B))),
    ("A;B,C", TypeAny((TypeAll((A, B)), C))),
    ("A,B;C", TypeAny((A, TypeAll((B, C))))),
    ("(A,B);C", TypeAll((TypeAny((A, B)), C))),
    ("((A));((B|C);D)", TypeAll((A, TypeAny((B, C)), D))),
    (" A , B ", TypeAny((A, B))),
    ("https://example.org/T", TypeName("https://example.org/T")),
    ("urn:x:T|A", TypeAny((TypeName("urn:x:T"), A))),
    ("ngsi-ld:T", TypeName(VOCAB + "ngsi-ld:T")),  # a CURIE goes through expand
])
def test_parse(source: str, expected: object) -> None:
    assert t(source) == expected


@pytest.mark.parametrize("source", [
    "", " ", "(", ")", "()", "A,", ",A", "A;", "A;;B", "A||B", "(A,B", "A,B)", "A B",
    "(A)(B)", "A,(,B)",
])
def test_errors(source: str) -> None:
    with pytest.raises(BadRequestData) as info:
        t(source)
    assert "position" in info.value.detail


def test_matches() -> None:
    assert matches_types(t("A"), [VOCAB + "A"])
    assert not matches_types(t("A"), [VOCAB + "B"])
    assert matches_types(t("A,B"), [VOCAB + "B"])
    assert not matches_types(t("A;B"), [VOCAB + "B"])
    assert matches_types(t("A;B"), {VOCAB + "B", VOCAB + "A"})
    assert matches_types(t("A;B|C"), [VOCAB + "C"])
    assert not matches_types(t("A;(B|C)"), [VOCAB + "C"])


def test_simple_types() -> None:
    assert simple_types(t("A")) == [VOCAB + "A"]
    assert simple_types(t("A,B|A")) == [VOCAB + "A", VOCAB + "B"]
    assert simple_types(t("(A|B)|C")) == [VOCAB + "A", VOCAB + "B", VOCAB + "C"]
    assert simple_types(t("A;B")) is None
    assert simple_types(t("A|B;C")) is None


def test_render_round_trip() -> None:
    for source in ["A", "A,B", "A;B", "(A,B);C", "A;B,C;D", "urn:x:T;(A|B)"]:
        node = t(source)
        assert parse_type_selection(str(node), expand) == node


TYPES = "ABCD"
ENTITY_TYPES = [combo for size in (1, 2, 3) for combo in itertools.combinations(TYPES, size)]


def one_type_sql(_iri: str) -> str:
    return "EXISTS(SELECT 1 FROM entity_types t WHERE t.entity = e.rowid AND t.type = ?)"


@pytest.fixture(scope="module")
def conn() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE entities(rowid INTEGER PRIMARY KEY, doc TEXT)")
    db.execute("CREATE TABLE entity_types(entity INTEGER, type TEXT)")
    for rowid, types in enumerate(ENTITY_TYPES):
        db.execute("INSERT INTO entities VALUES (?, '{}')", (rowid,))
        db.executemany("INSERT INTO entity_types VALUES (?, ?)",
                       [(rowid, VOCAB + name) for name in types])
    return db


def selected(conn: sqlite3.Connection, source: str) -> set[int]:
    sql, params = type_sql(t(source), one_type_sql)
    assert sql.count("?") == len(params)
    return {r for (r,) in conn.execute(f"SELECT e.rowid FROM entities e WHERE {sql}", params)}


def expected(source: str) -> set[int]:
    node = t(source)
    return {i for i, types in enumerate(ENTITY_TYPES)
            if matches_types(node, [VOCAB + n for n in types])}


@pytest.mark.parametrize("source", ["A", "A,B", "A;B", "A;B|C", "(A|B);(C|D)", "A;B;C",
                                    "A;(B,C;D)", "E"])
def test_sql(conn: sqlite3.Connection, source: str) -> None:
    assert selected(conn, source) == expected(source)


def test_sql_examples(conn: sqlite3.Connection) -> None:
    assert {ENTITY_TYPES[i] for i in selected(conn, "A;B")} == {
        ("A", "B"), ("A", "B", "C"), ("A", "B", "D")}


SELECTIONS = st.recursive(
    st.sampled_from(list(TYPES) + ["E"]),
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(";".join),
        st.lists(inner, min_size=2, max_size=3).map(",".join),
        st.lists(inner, min_size=2, max_size=3).map("|".join),
        inner.map(lambda e: f"({e})"),
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(SELECTIONS)
def test_sql_and_render_agree_generated(conn: sqlite3.Connection, source: str) -> None:
    assert selected(conn, source) == expected(source)
    node = t(source)
    assert t(str(node)) == node
