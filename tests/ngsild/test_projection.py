"""Tests of cityvisor.ngsild.projection: the Attribute Projection Language (clause 4.21)."""

from __future__ import annotations

import pytest

from cityvisor.ngsild.errors import BadRequestData
from cityvisor.ngsild.projection import Projection, parse_projection


def test_flat_list_comma_and_pipe() -> None:
    assert parse_projection("id,name") == Projection({"id": None, "name": None})
    assert parse_projection("id|name") == parse_projection("id,name")
    assert parse_projection("id|name,type").names() == {"id", "name", "type"}


def test_nested_linked_entity_terms() -> None:
    projection = parse_projection("id,locatedAt{id,name,isInCountry{description}}")
    assert projection.plain() == {"id"}
    located = projection.nested("locatedAt")
    assert located is not None and located.plain() == {"id", "name"}
    country = located.nested("isInCountry")
    assert country == Projection({"description": None})
    assert projection.depth() == 2
    assert parse_projection("a{a{a{name}}}").depth() == 3
    assert parse_projection("name").depth() == 0


def test_full_iri_names() -> None:
    assert parse_projection("https://example.org/ns#speed").names() == {
        "https://example.org/ns#speed"}


def test_repeated_member_merges() -> None:
    assert parse_projection("rel{a},rel{b}") == Projection({"rel": Projection({"a": None,
                                                                                "b": None})})
    assert parse_projection("rel{a},rel") == Projection({"rel": None})


@pytest.mark.parametrize("text", [
    "", "id;name", "id,,name", "name||other", "id,", ",id", "rel{name", "rel{{name}",
    "rel{,name}", "rel{}", "name}", "rel{a}}", "a b", "rel{a}b", "na(me", "\x00", "a\x7f",
    "a%22b"])
def test_grammar_violations(text: str) -> None:
    with pytest.raises(BadRequestData) as error:
        parse_projection(text, "omit")
    assert "omit" in str(error.value)
