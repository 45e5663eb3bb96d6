"""Entity ordering (clause 4.23): orderBy items, directions, datatypes, distance, collation."""

from __future__ import annotations

from typing import Any

import pytest

from cityvisor.ngsild.errors import BadRequestData
from cityvisor.ngsild.ordering import page, parse_ordering

V = "https://example.org/"


def expand(name: str) -> str:
    return V + name


def prop(value: Any, **subs: Any) -> list[dict[str, Any]]:
    instance: dict[str, Any] = {"type": "Property", "value": value,
                                "createdAt": "2026-01-01T00:00:00.000000Z"}
    if subs:
        instance["subs"] = {V + k: {"type": "Property", "value": v} for k, v in subs.items()}
    return [instance]


def ent(key: str, created: str = "2026-01-01T00:00:00.000000Z", **attrs: Any) -> dict[str, Any]:
    return {"id": f"urn:ngsi-ld:T:{key}", "type": [V + "T"], "createdAt": created,
            "modifiedAt": created, "attrs": {V + k: v for k, v in attrs.items()}}


def ordered(entities: list[dict[str, Any]], order_by: str, order_from: str | None = None,
            collation: str | None = None, offset: int = 0, limit: int = 100) -> list[str]:
    ordering = parse_ordering(order_by, order_from, collation, expand)
    assert ordering is not None
    return [e["id"].rsplit(":", 1)[1]
            for e in page(entities, lambda e: e, ordering, offset, limit)]


ABC = [ent("b", name=prop("B", rank=2)),
       ent("a", "2026-01-02T00:00:00.000000Z", name=prop("A", rank=1)),
       ent("c", "2026-01-03T00:00:00.000000Z", name=prop("C", rank=3))]


@pytest.mark.parametrize(("order_by", "expected"), [
    ("name", ["a", "b", "c"]),
    ("name;asc", ["a", "b", "c"]),
    ("name;desc", ["c", "b", "a"]),
    ("id", ["a", "b", "c"]),
    ("id;desc", ["c", "b", "a"]),
    ("name.rank", ["a", "b", "c"]),
    ("name.rank;desc", ["c", "b", "a"]),
    ("createdAt", ["b", "a", "c"]),
    ("createdAt;desc", ["c", "a", "b"]),
    ("name.createdAt", ["b", "a", "c"]),  # ties keep the insertion order
    ("type,name", ["a", "b", "c"]),
    ("type;asc,name.rank;desc,name;asc", ["c", "b", "a"]),
])
def test_order_by(order_by: str, expected: list[str]) -> None:
    assert ordered(ABC, order_by) == expected


def test_the_page_is_cut_after_sorting() -> None:
    assert ordered(ABC, "name", offset=1, limit=1) == ["b"]
    assert ordered(ABC, "name", limit=0) == []


def test_datatypes_rank_numbers_strings_booleans_and_absent_last() -> None:
    # a compound value orders only through a member: the object itself counts as absent
    mixed = [ent("none"), ent("bool", p=prop(True)), ent("text", p=prop("abc")),
             ent("num", p=prop(5)), ent("obj", p=prop({"x": 1})), ent("list", p=prop([2, 9]))]
    assert ordered(mixed, "p") == ["list", "num", "text", "bool", "none", "obj"]
    assert ordered(mixed, "p;desc") == ["bool", "text", "num", "list", "none", "obj"]


def test_compound_member() -> None:
    cities = [ent("1", address=prop({"city": "Berlin"})), ent("2", address=prop({"city": "Zurich"})),
              ent("3", address=prop({"city": "Amsterdam"}))]
    assert ordered(cities, "address[city];desc") == ["2", "1", "3"]


def geo(lon: float, lat: float) -> list[dict[str, Any]]:
    return [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}]


def test_distance_from_order_from() -> None:
    places = [ent("far", location=geo(10, 45)), ent("near", location=geo(8.01, 40.01)),
              ent("mid", location=geo(9, 41)), ent("nowhere")]
    assert ordered(places, "location;dist-asc", "[8,40]") == ["near", "mid", "far", "nowhere"]
    assert ordered(places, "location;dist-desc", "[8,40]") == ["far", "mid", "near", "nowhere"]


def test_collation_ranks_accents_with_their_base_letter() -> None:
    names = [ent("1", name=prop("A")), ent("2", name=prop("b")), ent("3", name=prop("á")),
             ent("4", name=prop("a"))]
    assert ordered(names, "name") == ["1", "4", "2", "3"]  # code points
    assert ordered(names, "name", collation="und") == ["4", "1", "3", "2"]  # a A á b


@pytest.mark.parametrize(("order_by", "order_from", "collation"), [
    ("location;dist-asc", None, None),  # distance needs orderFrom
    ("name;sideways", None, None),
    ("", None, None),
    ("name,", None, None),
    ("id;dist-asc", "[8,40]", None),
    ("location;dist-asc", "[200,40]", None),
    ("location;dist-asc", "not json", None),
    ("name", None, "!!nope"),
    (None, "[8,40]", None),
])
def test_invalid_ordering_is_400(order_by: str | None, order_from: str | None,
                                 collation: str | None) -> None:
    with pytest.raises(BadRequestData):
        parse_ordering(order_by, order_from, collation, expand)


def test_no_order_by_is_no_ordering() -> None:
    assert parse_ordering(None, None, None, expand) is None
    assert parse_ordering(None, None, "und", expand) is None
