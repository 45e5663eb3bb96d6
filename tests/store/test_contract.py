"""The contract of the store ports (``store/base.py``): every backend passes these tests.

They go through the port only (the ``store`` and ``system_store`` fixtures of ``conftest.py``
build one of each backend per test), and every expectation is written out, never taken from
another backend.
"""

from __future__ import annotations

import contextlib
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cityvisor.broker.contexts import core_context_document
from cityvisor.ngsild.context import DEFAULT_VOCAB, compile_context
from cityvisor.ngsild.errors import AlreadyExists, BadRequestData
from cityvisor.ngsild.geo import parse_geoquery
from cityvisor.ngsild.model import expand_entity
from cityvisor.ngsild.ordering import parse_ordering
from cityvisor.ngsild.query import parse_q
from cityvisor.ngsild.scopequery import parse_scope_q
from cityvisor.ngsild.typequery import parse_type_selection
from cityvisor.store.base import (
    Buckets,
    EntityQuery,
    EntitySelector,
    StaleWrite,
    Store,
    SystemStore,
    TimeFilter,
    WriteOp,
)
from cityvisor.store.records import (
    AttributeHistoryDeleted,
    EntityMapDelete,
    EntityMapPut,
    EntityMapsExpired,
    EntityRecord,
    EntityTouched,
    HistoryDeleted,
    InstanceDeleted,
    InstanceModified,
    InstanceRecord,
    OutboxDone,
    OutboxRecord,
    OutboxRetry,
    StoredContext,
    StoredEntityMap,
    StoredSubscription,
    StoredToken,
    SubscriptionDelete,
    SubscriptionPut,
    SubscriptionStatus,
    TemporalEntity,
)

pytestmark = pytest.mark.anyio

TERMS = compile_context([], core_context_document()["@context"])
V = DEFAULT_VOCAB
LOCATION = "https://uri.etsi.org/ngsi-ld/location"
OBSERVATION_SPACE = "https://uri.etsi.org/ngsi-ld/observationSpace"
NOW = "2026-11-27T18:00:00.000000Z"
LATER = "2026-11-28T08:00:00.000000Z"
GAUGE, SENSOR, PUMP = (TERMS.expand(t) for t in ("Gauge", "Sensor", "Pump"))
LEVEL, STATUS, OWNER, READING = (TERMS.expand(t) for t in ("level", "status", "owner", "reading"))
DS = "urn:ngsi-ld:Dataset:b"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------------------- builders


def urn(n: int | str, kind: str = "Thing") -> str:
    return f"urn:ngsi-ld:{kind}:{n}"


def entity(entity_id: str, types: str | list[str] = "Gauge", now: str = NOW,
           **attrs: Any) -> dict[str, Any]:
    """A stored entity, expanded with the core context from its NGSI-LD form."""
    return expand_entity({"id": entity_id, "type": types, **attrs}, TERMS, now)


def point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


def square(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1],
                                                [x0, y0]]]}


def ids_of(entities: list[dict[str, Any]]) -> list[str]:
    return [e["id"] for e in entities]


async def insert(store: Store, *entities: dict[str, Any], tenant: str | None = None) -> None:
    await store.write(tenant, [WriteOp(None, e) for e in entities])


async def found(store: Store, query: EntityQuery, tenant: str | None = None) -> list[str]:
    return ids_of((await store.query(tenant, query)).entities)


def q(text: str) -> EntityQuery:
    return EntityQuery(q=parse_q(text, TERMS.expand), limit=100)


def typed(text: str) -> EntitySelector:
    return EntitySelector(types=parse_type_selection(text, TERMS.expand))


def geo(georel: str, geometry: str, coordinates: object, geoproperty: str | None = None,
        **options: Any) -> EntityQuery:
    text = coordinates if isinstance(coordinates, str) else json.dumps(coordinates)
    query = parse_geoquery(georel, geometry, text, geoproperty, TERMS.expand)
    options.setdefault("limit", 100)
    return EntityQuery(geo=query, **options)


def at(minutes: float) -> str:
    """A normalised time, ``minutes`` after 2026-01-01T00:00Z."""
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def instance(entity_id: str, attr: str, observed: str, value: object, *, dataset: str = "",
             kind: str = "Property", deleted: bool = False, created: str | None = None,
             modified: str | None = None, entity_type: str = GAUGE) -> InstanceRecord:
    """An InstanceRecord as the broker makes it (a deletion: observed and modified are the
    deletion time, no number)."""
    body: dict[str, Any] = {"type": kind, "object" if kind == "Relationship" else "value": value}
    if dataset:
        body["datasetId"] = dataset
    number = (float(value) if kind == "Property" and isinstance(value, (int, float))
              and not isinstance(value, bool) and not deleted else None)
    return InstanceRecord(entity_id, entity_type, attr, dataset, observed, created or observed,
                          modified or observed, observed if deleted else None, number,
                          json.dumps(body))


def values(rows: list[Any]) -> list[object]:
    return [json.loads(row.value).get("value", json.loads(row.value).get("object"))
            for row in rows]


# ---------------------------------------------------------------------------- entities


async def test_get_returns_what_was_written_and_never_shares_it(store: Store) -> None:
    first = entity(urn(1), level=5, name="alpha")
    await insert(store, first, entity(urn(2), level=6))
    stored = await store.get(None, urn(1))
    assert stored == first
    assert stored is not first
    assert stored is not None
    stored["attrs"].clear()
    first["attrs"].clear()
    again = await store.get(None, urn(1))
    assert again is not None and LEVEL in again["attrs"]
    assert await store.get(None, urn(9)) is None


async def test_expiries_are_indexed_per_entity(store: Store) -> None:
    """Clause 4.22: the first expiresAt of an entity (its own or an instance's) is found
    without a scan, staged changes included, and forgotten when the entity changes."""
    assert await store.next_expiry(None) is None
    soon, later = "2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"
    transient = entity(urn(1), expiresAt=later)
    attribute = entity(urn(2), level={"type": "Property", "value": 1, "expiresAt": soon})
    await insert(store, transient, attribute, entity(urn(3), level=1))
    assert await store.next_expiry(None) == "2026-12-01T00:00:00.000000Z"
    assert ids_of(await store.expiring(None, "2026-12-01T12:00:00.000000Z")) == [urn(2)]
    assert ids_of(await store.expiring(None, "2026-12-03T00:00:00.000000Z")) == [urn(2), urn(1)]
    durable = entity(urn(2), level=2)
    await store.stage(None, [WriteOp(attribute, durable), WriteOp(transient, None)])
    assert await store.next_expiry(None) is None
    assert await store.expiring(None, "2027-01-01T00:00:00.000000Z") == []


async def test_get_many_returns_the_known_ids_once(store: Store) -> None:
    await insert(store, entity(urn(1)), entity(urn(2)), entity(urn(3)))
    got = await store.get_many(None, [urn(3), urn(1), urn(3), urn(9)])
    assert set(got) == {urn(1), urn(3)}
    assert got[urn(3)]["id"] == urn(3)
    assert await store.get_many(None, []) == {}


async def test_update_and_delete(store: Store) -> None:
    old = entity(urn(1), level=5)
    await insert(store, old, entity(urn(2), level=6))
    new = entity(urn(1), level=7, now=LATER)
    await store.write(None, [WriteOp(old, new)])
    assert await store.get(None, urn(1)) == new
    await store.write(None, [WriteOp(new, None)])
    assert await store.get(None, urn(1)) is None
    assert await found(store, EntityQuery(limit=10)) == [urn(2)]
    # deleting an entity that is gone changes nothing (a backend shared by several processes
    # says so: StaleWrite, another process must have deleted it since it was read)
    with contextlib.suppress(StaleWrite):
        await store.write(None, [WriteOp(new, None)])
    assert await found(store, EntityQuery(limit=10)) == [urn(2)]


async def test_get_sees_staged_changes_before_they_are_durable(store: Store) -> None:
    durable = await store.stage(None, [WriteOp(None, entity(urn(1)))])
    assert (await store.get(None, urn(1))) is not None
    assert set(await store.get_many(None, [urn(1)])) == {urn(1)}
    await durable
    assert await found(store, EntityQuery(limit=10)) == [urn(1)]


async def test_an_empty_stage_is_durable_at_once(store: Store) -> None:
    await (await store.stage(None, [], []))
    assert await store.has_tenant(None)


async def test_inserting_an_existing_entity_raises_already_exists(store: Store) -> None:
    await insert(store, entity(urn(1), level=1))
    with pytest.raises(AlreadyExists):
        await store.write(None, [WriteOp(None, entity(urn(1), level=2))])
    with pytest.raises(AlreadyExists):
        await store.write(None, [WriteOp(None, entity(urn(2))), WriteOp(None, entity(urn(2)))])
    stored = await store.get(None, urn(1))
    assert stored is not None and stored["attrs"][LEVEL][0]["value"] == 1
    assert await store.get(None, urn(2)) is None


async def test_delete_then_insert_in_one_batch_replaces_the_entity(store: Store) -> None:
    old = entity(urn(1), level=1)
    await insert(store, old, entity(urn(2)))
    new = entity(urn(1), level=2)
    await store.write(None, [WriteOp(old, None), WriteOp(None, new)])
    assert await store.get(None, urn(1)) == new
    assert await found(store, EntityQuery(limit=10)) == [urn(2), urn(1)]


async def test_a_failing_batch_changes_nothing(store: Store) -> None:
    existing = entity(urn(1), level=1)
    await insert(store, existing)
    ok = await store.stage(None, [WriteOp(None, entity(urn(2)))])  # shares the commit
    side = [SubscriptionPut("urn:ngsi-ld:Subscription:1", "{}", "[]"),
            OutboxRecord("urn:ngsi-ld:Subscription:1", "http://h/", "{}", b"x", 1.0),
            EntityRecord(urn(3), (GAUGE,), NOW, NOW), instance(urn(3), LEVEL, at(0), 1)]
    with pytest.raises(AlreadyExists):
        await store.stage(None, [WriteOp(None, entity(urn(3))),
                                 WriteOp(existing, entity(urn(1), level=9)),
                                 WriteOp(None, entity(urn(1)))], side)
    await ok
    assert await found(store, EntityQuery(limit=10)) == [urn(1), urn(2)]
    stored = await store.get(None, urn(1))
    assert stored is not None and stored["attrs"][LEVEL][0]["value"] == 1
    assert await store.subscriptions(None) == []
    assert await store.temporal_entities(None, [urn(3)], staged=True) == {}
    reader = await store.outbox_reader(None)
    try:
        assert await reader.pending() == 0
    finally:
        await reader.close()


async def test_an_unknown_record_fails_the_whole_batch(store: Store) -> None:
    with pytest.raises(TypeError):
        await store.stage(None, [WriteOp(None, entity(urn(1)))],
                          [EntityRecord(urn(1), (GAUGE,), NOW, NOW), object()])
    assert await store.get(None, urn(1)) is None
    assert await store.temporal_entities(None, [urn(1)], staged=True) == {}


async def test_an_unusable_geometry_fails_the_whole_batch(store: Store) -> None:
    broken = entity(urn(2))
    broken["attrs"][LOCATION] = [{"type": "GeoProperty", "value": {"type": "Point"},
                                  "createdAt": NOW, "modifiedAt": NOW}]
    with pytest.raises(BadRequestData):
        await store.write(None, [WriteOp(None, entity(urn(1))), WriteOp(None, broken)])
    assert await store.get_many(None, [urn(1), urn(2)]) == {}


# ---------------------------------------------------------------------------- query


async def test_query_by_id_id_pattern_and_type(store: Store) -> None:
    await insert(store, entity(urn(1), "Gauge"), entity(urn(2), ["Gauge", "Sensor"]),
                 entity(urn(3), "Sensor"), entity(urn(4), ["Sensor", "Pump"]),
                 entity(urn(10), "Pump"))

    def one(**selector: Any) -> EntityQuery:
        return EntityQuery(selectors=(EntitySelector(**selector),), limit=100)

    assert await found(store, one(ids=(urn(3), urn(1), urn(99)))) == [urn(1), urn(3)]
    assert await found(store, one(id_pattern=r":[12]$")) == [urn(1), urn(2)]
    assert await found(store, one(id_pattern=r"Thing:1")) == [urn(1), urn(10)]

    async def types(text: str) -> list[str]:
        return await found(store, EntityQuery(selectors=(typed(text),), limit=100))

    assert await types("Gauge") == [urn(1), urn(2)]
    assert await types("Sensor") == [urn(2), urn(3), urn(4)]  # extra types count
    assert await types("Gauge,Pump") == [urn(1), urn(2), urn(4), urn(10)]
    assert await types("Gauge|Pump") == [urn(1), urn(2), urn(4), urn(10)]
    assert await types("Gauge;Sensor") == [urn(2)]
    assert await types("Sensor;Pump") == [urn(4)]
    assert await types("(Gauge|Pump);Sensor") == [urn(2), urn(4)]
    assert await types("Gauge;Pump") == []
    assert await types("Unknown") == []
    # a selector's members all apply; several selectors are alternatives
    both = EntitySelector(ids=(urn(1), urn(3)), types=parse_type_selection("Sensor", TERMS.expand))
    assert await found(store, EntityQuery(selectors=(both,), limit=100)) == [urn(3)]
    either = (EntitySelector(ids=(urn(10),)), typed("Gauge"))
    assert await found(store, EntityQuery(selectors=either, limit=100)) == [
        urn(1), urn(2), urn(10)]
    mixed = EntitySelector(id_pattern=r":\d$", types=parse_type_selection("Pump", TERMS.expand))
    assert await found(store, EntityQuery(selectors=(mixed,), limit=100)) == [urn(4)]


async def test_query_by_attrs(store: Store) -> None:
    await insert(store, entity(urn(1), level=1), entity(urn(2), status="ok"),
                 entity(urn(3), level=2, status="ko"), entity(urn(4)))
    assert await found(store, EntityQuery(attrs=frozenset({LEVEL}), limit=10)) == [
        urn(1), urn(3)]
    assert await found(store, EntityQuery(attrs=frozenset({LEVEL, STATUS}), limit=10)) == [
        urn(1), urn(2), urn(3)]
    assert await found(store, EntityQuery(attrs=frozenset({V + "none"}), limit=10)) == []


@pytest.fixture
def q_entities() -> list[dict[str, Any]]:
    return [
        entity(urn(1), level={"type": "Property", "value": 5,
                              "observedAt": "2026-01-01T10:00:00Z"},
               name="alpha", active=True,
               address={"type": "Property", "value": {"city": "Nimes", "zip": "30000"}},
               owner={"type": "Relationship", "object": "urn:ngsi-ld:Person:1"},
               temperature={"type": "Property", "value": 21,
                            "accuracy": {"type": "Property", "value": 0.9}}),
        entity(urn(2), level=12.5, name="beta", active=False,
               address={"type": "Property", "value": {"city": "Arles"}},
               owner={"type": "Relationship", "object": "urn:ngsi-ld:Person:2"},
               temperature={"type": "Property", "value": 18,
                            "accuracy": {"type": "Property", "value": 0.2}}),
        entity(urn(3), level=-3, name="alphabet"),
        entity(urn(4), name="gamma", level="high"),
    ]


@pytest.mark.parametrize(("text", "expected"), [
    ("level>4", [1, 2]),
    ("level>=5;level<=12.5", [1, 2]),
    ("level<0", [3]),
    ("level==5", [1]),
    ("level!=5", [2, 3, 4]),  # "high" is of another data type: unequal
    ("level==1..6", [1]),
    ("level==-5..0", [3]),
    ("level!=1..6", [2, 3, 4]),
    ("level==5,12.5", [1, 2]),
    ("level!=5,12.5", [3, 4]),
    ('level=="high"', [4]),
    ('name=="alpha"', [1]),
    ('name!="alpha"', [2, 3, 4]),
    ('name>"b"', [2, 4]),
    ('name=="beta","gamma"', [2, 4]),
    ("name~=^alpha", [1, 3]),
    ("name!~=^alpha", [2, 4]),
    ("active==true", [1]),
    ("active==false", [2]),
    ("active", [1, 2]),
    ("!active", [3, 4]),
    ('(level>10|name=="gamma");name~=a', [2, 4]),
    ('level>0;(name=="alpha"|name=="beta")', [1, 2]),
    ('level<0|(active==true;level==5)', [1, 3]),
    ('address[city]=="Nimes"', [1]),
    ('address[city]!="Nimes"', [2]),
    ("address[zip]", [1]),
    ('owner=="urn:ngsi-ld:Person:2"', [2]),
    ("level.observedAt>2026-01-01T09:00:00Z", [1]),
    ("level.observedAt>2026-01-01T11:00:00Z", []),
    ("temperature.accuracy>0.5", [1]),
    ("temperature.accuracy<0.5;temperature>10", [2]),
])
async def test_query_by_q(store: Store, q_entities: list[dict[str, Any]], text: str,
                          expected: list[int]) -> None:
    await insert(store, *q_entities)
    assert await found(store, q(text)) == [urn(n) for n in expected]
    counted = await store.query(None, EntityQuery(q=q(text).q, limit=1, count=True))
    assert counted.count == len(expected)
    assert ids_of(counted.entities) == [urn(n) for n in expected[:1]]


async def test_q_follows_updates_and_deletes(store: Store) -> None:
    one, two = entity(urn(1), level=5), entity(urn(2), level=6)
    await insert(store, one, two)
    await store.write(None, [WriteOp(one, entity(urn(1), level=50)), WriteOp(two, None)])
    assert await found(store, q("level>10")) == [urn(1)]
    assert await found(store, q("level==5|level==6")) == []


@pytest.fixture
def places() -> list[dict[str, Any]]:
    return [
        entity(urn(1), location=point(4.360, 43.840)),
        entity(urn(2), location=point(4.370, 43.840)),  # ~800 m east
        entity(urn(3), location=point(4.500, 43.840)),  # ~11 km east
        entity(urn(4), location={"type": "GeoProperty",
                                 "value": square(4.355, 43.835, 4.365, 43.845)}),
        entity(urn(5), observationSpace=point(4.360, 43.840)),
    ]


@pytest.mark.parametrize(("georel", "geometry", "coordinates", "expected"), [
    ("near;maxDistance==1000", "Point", [4.36, 43.84], [1, 2, 4]),
    ("near;maxDistance==100", "Point", [4.36, 43.84], [1, 4]),
    ("near;minDistance==5000", "Point", [4.36, 43.84], [3]),
    # an extended reference: the distance is to its closest point (~800 m west of urn 3)
    ("near;maxDistance==1000", "LineString", [[4.49, 43.83], [4.49, 43.85]], [3]),
    ("near;minDistance==5000", "LineString", [[4.49, 43.83], [4.49, 43.85]], [1, 2, 4]),
    ("within", "Polygon", square(4.35, 43.83, 4.38, 43.85)["coordinates"], [1, 2, 4]),
    # the polygon's box meets the square's, yet the square is not within it
    ("within", "Polygon", square(4.362, 43.83, 4.40, 43.85)["coordinates"], [2]),
    ("intersects", "Polygon", square(4.362, 43.83, 4.40, 43.85)["coordinates"], [2, 4]),
    ("disjoint", "Polygon", square(4.362, 43.83, 4.40, 43.85)["coordinates"], [1, 3]),
    ("intersects", "Point", [4.36, 43.84], [1, 4]),
    ("equals", "Point", [4.5, 43.84], [3]),
    ("contains", "Point", [4.361, 43.841], [4]),
    ("within", "Polygon", square(10.0, 10.0, 11.0, 11.0)["coordinates"], []),
])
async def test_query_by_geo(store: Store, places: list[dict[str, Any]], georel: str,
                            geometry: str, coordinates: object, expected: list[int]) -> None:
    await insert(store, *places)
    assert await found(store, geo(georel, geometry, coordinates)) == [urn(n) for n in expected]


async def test_geo_on_another_geoproperty_with_count_and_pages(store: Store,
                                                               places: list[dict[str, Any]]
                                                               ) -> None:
    await insert(store, *places)
    assert await found(store, geo("near;maxDistance==10", "Point", [4.36, 43.84],
                                  "observationSpace")) == [urn(5)]
    page = await store.query(None, geo("near;maxDistance==1000", "Point", [4.36, 43.84],
                                       limit=1, offset=1, count=True))
    assert ids_of(page.entities) == [urn(2)] and page.count == 3
    both = await store.query(None, EntityQuery(
        q=parse_q("level==1", TERMS.expand), geo=geo("near;maxDistance==1000", "Point",
                                                     [4.36, 43.84]).geo, limit=10))
    assert both.entities == []


async def test_geo_follows_moves(store: Store, places: list[dict[str, Any]]) -> None:
    await insert(store, *places)
    moved = entity(urn(3), location=point(4.3601, 43.8401))
    await store.write(None, [WriteOp(places[2], moved), WriteOp(places[0], None)])
    assert await found(store, geo("near;maxDistance==100", "Point", [4.36, 43.84])) == [
        urn(3), urn(4)]


async def test_insertion_order_limit_offset_and_count(store: Store) -> None:
    stored = [entity(urn(n), level=n) for n in range(10)]
    await insert(store, *stored)
    await store.write(None, [WriteOp(stored[3], entity(urn(3), level=33)),  # keeps its place
                             WriteOp(stored[5], None)])
    await insert(store, entity(urn(5), level=55))  # re-created: goes last
    order = [urn(n) for n in (0, 1, 2, 3, 4, 6, 7, 8, 9, 5)]
    assert await found(store, EntityQuery(limit=100)) == order
    assert await found(store, EntityQuery(limit=3)) == order[:3]
    assert await found(store, EntityQuery(limit=3, offset=8)) == order[8:]
    page = await store.query(None, EntityQuery(limit=2, offset=4, count=True))
    assert ids_of(page.entities) == order[4:6] and page.count == 10
    none = await store.query(None, EntityQuery(limit=0, count=True))
    assert none.entities == [] and none.count == 10
    assert (await store.query(None, EntityQuery(limit=5))).count is None
    beyond = await store.query(None, EntityQuery(limit=5, offset=20, count=True))
    assert beyond.entities == [] and beyond.count == 10
    filtered = await store.query(None, EntityQuery(q=parse_q("level>=6", TERMS.expand),
                                                   limit=2, offset=1, count=True))
    assert ids_of(filtered.entities) == [urn(6), urn(7)] and filtered.count == 6
    typed_page = await store.query(None, EntityQuery(selectors=(typed("Gauge"),), limit=1,
                                                     offset=9, count=True))
    assert ids_of(typed_page.entities) == [urn(5)] and typed_page.count == 10


async def test_query_by_scope(store: Store) -> None:
    await insert(store, entity(urn(1), scope="/Nimes/Ecusson"),
                 entity(urn(2), scope=["/Nimes/Gare", "/Agency/Water"]),
                 entity(urn(3)), entity(urn(4), scope="/Nimes"))

    async def scoped(text: str) -> list[str]:
        return await found(store, EntityQuery(scope=parse_scope_q(text), limit=100))

    assert await scoped("/Nimes") == [urn(4)]
    assert await scoped("/Nimes/#") == [urn(1), urn(2), urn(4)]
    assert await scoped("/Nimes/+") == [urn(1), urn(2)]
    assert await scoped("/#") == [urn(1), urn(2), urn(4)]
    assert await scoped("/Nimes/Gare;/Agency/Water") == [urn(2)]
    assert await scoped("(/Nimes/Gare;/Agency/Sewer)|/Nimes/Ecusson") == [urn(1)]
    assert await scoped("/Nimes/Gare,/Nimes") == [urn(2), urn(4)]
    counted = await store.query(None, EntityQuery(scope=parse_scope_q("/Nimes/#"), limit=1,
                                                  count=True))
    assert ids_of(counted.entities) == [urn(1)] and counted.count == 3


async def test_ordered_queries(store: Store) -> None:
    await insert(store, entity(urn(1), level=3, location=point(10, 45)),
                 entity(urn(2), level=1, location=point(8.01, 40.01)),
                 entity(urn(3), level="x", location=point(9, 41)), entity(urn(4)),
                 entity(urn(5), level=2))

    async def ordered(order_by: str, order_from: str | None = None, **options: Any
                      ) -> list[str]:
        order = parse_ordering(order_by, order_from, None, TERMS.expand)
        options.setdefault("limit", 100)
        return await found(store, EntityQuery(order=order, **options))

    assert await ordered("level") == [urn(2), urn(5), urn(1), urn(3), urn(4)]
    assert await ordered("level;desc") == [urn(3), urn(1), urn(5), urn(2), urn(4)]
    assert await ordered("level", limit=2, offset=1) == [urn(5), urn(1)]
    assert await ordered("id;desc", limit=2) == [urn(5), urn(4)]
    assert await ordered("createdAt") == [urn(1), urn(2), urn(3), urn(4), urn(5)]  # ties
    later = entity(urn(4), now=LATER)
    await store.write(None, [WriteOp(entity(urn(4)), later)])
    assert await ordered("modifiedAt;desc", limit=2) == [urn(4), urn(1)]
    assert await ordered("modifiedAt;desc,id;desc", limit=2) == [urn(4), urn(5)]
    assert await ordered("location;dist-asc", "[8,40]") == [urn(2), urn(3), urn(1), urn(4),
                                                            urn(5)]
    with_q = EntityQuery(q=parse_q("level>1", TERMS.expand), count=True, limit=1,
                         order=parse_ordering("level;desc", None, None, TERMS.expand))
    page = await store.query(None, with_q)
    assert ids_of(page.entities) == [urn(1)] and page.count == 2
    near = geo("near;maxDistance==200000", "Point", [8, 40], count=True, limit=0,
               order=parse_ordering("level", None, None, TERMS.expand))
    none = await store.query(None, near)
    assert none.entities == [] and none.count == 2


# ---------------------------------------------------------------------------- attribute stats


def stats_of(rows: list[Any]) -> set[tuple[str, str, str, int]]:
    return {(s.entity_type.removeprefix(V), s.attribute.removeprefix(V)
             .removeprefix("https://uri.etsi.org/ngsi-ld/"), s.kind, s.count) for s in rows}


async def test_attribute_stats_follow_inserts_updates_and_deletes(store: Store) -> None:
    a = entity(urn(1), "Gauge", level=1, location=point(4.36, 43.84))
    b = entity(urn(2), ["Gauge", "Sensor"], level=2,
               owner={"type": "Relationship", "object": "urn:ngsi-ld:Person:1"})
    c = entity(urn(3), "Sensor", level=[{"type": "Property", "value": 3},
                                        {"type": "Property", "value": 4, "datasetId": DS}])
    await insert(store, a, b, c)
    assert stats_of(await store.attribute_stats(None)) == {
        ("", "", "", 3), ("", "level", "Property", 3), ("", "location", "GeoProperty", 1),
        ("", "owner", "Relationship", 1),
        ("Gauge", "", "", 2), ("Gauge", "level", "Property", 2),
        ("Gauge", "location", "GeoProperty", 1), ("Gauge", "owner", "Relationship", 1),
        ("Sensor", "", "", 2), ("Sensor", "level", "Property", 2),
        ("Sensor", "owner", "Relationship", 1)}
    a2 = entity(urn(1), "Gauge", level={"type": "Relationship", "object": "urn:x:1"},
                location=point(4.36, 43.84))
    b2 = entity(urn(2), "Sensor", level=5,
                owner={"type": "Relationship", "object": "urn:ngsi-ld:Person:1"})
    await store.write(None, [WriteOp(a, a2), WriteOp(b, b2), WriteOp(c, None)])
    assert stats_of(await store.attribute_stats(None)) == {
        ("", "", "", 2), ("", "level", "Property", 1), ("", "level", "Relationship", 1),
        ("", "location", "GeoProperty", 1), ("", "owner", "Relationship", 1),
        ("Gauge", "", "", 1), ("Gauge", "level", "Relationship", 1),
        ("Gauge", "location", "GeoProperty", 1),
        ("Sensor", "", "", 1), ("Sensor", "level", "Property", 1),
        ("Sensor", "owner", "Relationship", 1)}
    await store.write(None, [WriteOp(a2, None), WriteOp(b2, None)])
    assert await store.attribute_stats(None) == []


# ---------------------------------------------------------------------------- tenants


async def test_tenants_are_isolated(store: Store) -> None:
    assert await store.has_tenant(None)
    assert not await store.has_tenant("north")
    assert await store.tenants() == []
    await insert(store, entity(urn(1), level=1), tenant="north")
    await insert(store, entity(urn(1), level=2), entity(urn(2)), tenant="south-2")
    await insert(store, entity(urn(3)))
    assert await store.tenants() == ["north", "south-2"]
    assert await store.has_tenant("north") and await store.has_tenant("south-2")
    north = await store.get("north", urn(1))
    assert north is not None and north["attrs"][LEVEL][0]["value"] == 1
    assert await store.get("north", urn(3)) is None
    assert await found(store, EntityQuery(limit=10), "south-2") == [urn(1), urn(2)]
    assert await found(store, EntityQuery(limit=10)) == [urn(3)]
    assert await found(store, q("level==2"), "north") == []
    assert stats_of(await store.attribute_stats("north")) == {
        ("", "", "", 1), ("", "level", "Property", 1), ("Gauge", "", "", 1),
        ("Gauge", "level", "Property", 1)}
    # the same id in two tenants: no AlreadyExists across them
    await insert(store, entity(urn(3)), tenant="north")


async def test_reads_of_an_unknown_tenant_find_nothing_and_create_nothing(store: Store) -> None:
    assert await store.get("ghost", urn(1)) is None
    assert await store.get_many("ghost", [urn(1)]) == {}
    result = await store.query("ghost", EntityQuery(count=True))
    assert result.entities == [] and result.count == 0
    assert await store.attribute_stats("ghost") == []
    assert await store.temporal_entities("ghost", [urn(1)]) == {}
    assert await store.select_temporal_entities("ghost", EntityQuery(count=True)) == ([], 0)
    assert await store.histories("ghost", [urn(1)], None, TimeFilter(), 10) == {}
    assert await store.subscriptions("ghost") == []
    assert not await store.has_tenant("ghost")
    assert await store.tenants() == []


async def test_invalid_tenant_names_are_refused(store: Store) -> None:
    for name in ("../etc", "a b", "x" * 65, ""):
        with pytest.raises(BadRequestData):
            await store.stage(name, [WriteOp(None, entity(urn(1)))])
        with pytest.raises(BadRequestData):
            await store.get(name, urn(1))
    assert await store.tenants() == []


# ---------------------------------------------------------------------------- temporal history


async def test_temporal_entities_from_entity_records_and_instances(store: Store) -> None:
    await store.write(None, [], [EntityRecord(urn(1), (GAUGE, SENSOR), at(0), at(0)),
                                 instance(urn(1), LEVEL, at(0), 1)])
    # instances without an EntityRecord make a temporal entity of their type
    await store.write(None, [], [instance(urn(2), LEVEL, at(5), 1, entity_type=PUMP,
                                          created=at(4)),
                                 instance(urn(2), LEVEL, at(6), 2, entity_type=PUMP)])
    found_entities = await store.temporal_entities(None, [urn(1), urn(2), urn(9)])
    assert found_entities == {
        urn(1): TemporalEntity(urn(1), (GAUGE, SENSOR), at(0), at(0), None),
        urn(2): TemporalEntity(urn(2), (PUMP,), at(4), at(4), None)}
    # an update keeps createdAt; a deletion marks the entity; a new record revives it
    await store.write(None, [], [EntityRecord(urn(1), (SENSOR,), at(9), at(10))])
    assert (await store.temporal_entities(None, [urn(1)]))[urn(1)] == TemporalEntity(
        urn(1), (SENSOR,), at(0), at(10), None)
    await store.write(None, [], [EntityRecord(urn(1), (SENSOR,), at(0), at(20), at(20))])
    assert (await store.temporal_entities(None, [urn(1)]))[urn(1)] == TemporalEntity(
        urn(1), (SENSOR,), at(0), at(20), at(20))
    await store.write(None, [], [EntityRecord(urn(1), (GAUGE,), at(30), at(30))])
    assert (await store.temporal_entities(None, [urn(1)]))[urn(1)] == TemporalEntity(
        urn(1), (GAUGE,), at(0), at(30), None)
    # a deletion mark of an unknown entity creates nothing
    await store.write(None, [], [EntityRecord(urn(7), (GAUGE,), at(0), at(1), at(1))])
    assert await store.temporal_entities(None, [urn(7)]) == {}


async def test_entity_touched_moves_modified_at_only(store: Store) -> None:
    await store.write(None, [], [EntityRecord(urn(1), (GAUGE,), at(0), at(0))])
    await store.write(None, [], [EntityTouched(urn(1), at(42)), EntityTouched(urn(9), at(42))])
    assert await store.temporal_entities(None, [urn(1), urn(9)]) == {
        urn(1): TemporalEntity(urn(1), (GAUGE,), at(0), at(42), None)}


async def test_staged_temporal_reads_see_uncommitted_changes(store: Store) -> None:
    await store.write(None, [], [EntityRecord(urn(1), (GAUGE,), at(0), at(0))])
    durable = await store.stage(None, [], [EntityRecord(urn(2), (GAUGE,), at(1), at(1)),
                                           instance(urn(2), LEVEL, at(1), 7)])
    # (an asynchronous read of committed data may let the commit run first: only the staged
    # reads are certain to see the batch before the awaitable completes)
    assert set(await store.temporal_entities(None, [urn(1), urn(2)], staged=True)) == {
        urn(1), urn(2)}
    assert await store.has_history(None, urn(2), LEVEL, None, staged=True)
    assert not await store.has_history(None, urn(2), STATUS, None, staged=True)
    await durable
    assert set(await store.temporal_entities(None, [urn(1), urn(2)])) == {urn(1), urn(2)}
    assert await store.has_history(None, urn(2), LEVEL, None)


@pytest.fixture
async def temporal(store: Store) -> Store:
    """Four temporal entities: 1 Gauge (level), 2 Gauge+Sensor (status), 3 Sensor (level),
    4 Gauge (no instance, deleted)."""
    await store.write(None, [], [
        EntityRecord(urn(1), (GAUGE,), at(0), at(0)), instance(urn(1), LEVEL, at(0), 1),
        EntityRecord(urn(2), (GAUGE, SENSOR), at(1), at(1)),
        instance(urn(2), STATUS, at(1), "ok", entity_type=GAUGE),
        EntityRecord(urn(3), (SENSOR,), at(2), at(2)),
        instance(urn(3), LEVEL, at(2), 3, entity_type=SENSOR),
        EntityRecord(urn(4), (GAUGE,), at(3), at(3)),
        EntityRecord(urn(4), (GAUGE,), at(3), at(4), at(4))])
    return store


async def test_select_temporal_entities(temporal: Store) -> None:
    store = temporal

    async def select(**options: Any) -> list[str]:
        options.setdefault("limit", 100)
        entities, count = await store.select_temporal_entities(None, EntityQuery(**options))
        assert count is None
        return [e.id for e in entities]

    assert await select() == [urn(1), urn(2), urn(3), urn(4)]
    assert await select(selectors=(typed("Gauge"),)) == [urn(1), urn(2), urn(4)]
    assert await select(selectors=(typed("Sensor"),)) == [urn(2), urn(3)]
    assert await select(selectors=(typed("Gauge;Sensor"),)) == [urn(2)]
    assert await select(selectors=(typed("(Sensor;Gauge)|Pump"),)) == [urn(2)]
    assert await select(selectors=(typed("Pump,Sensor"),)) == [urn(2), urn(3)]
    assert await select(selectors=(EntitySelector(id_pattern=":[12]$"),)) == [urn(1), urn(2)]
    # a pattern an engine may not translate, beside a selector by type: each decides alone
    assert await select(selectors=(typed("Pump"), EntitySelector(id_pattern=r"\b3$"))) == [
        urn(3)]
    assert await select(selectors=(EntitySelector(ids=(urn(3), urn(1))),)) == [urn(1), urn(3)]
    assert await select(selectors=(EntitySelector(ids=(urn(3),)), typed("Gauge;Sensor"))) == [
        urn(2), urn(3)]
    assert await select(attrs=frozenset({LEVEL})) == [urn(1), urn(3)]
    assert await select(attrs=frozenset({LEVEL, STATUS})) == [urn(1), urn(2), urn(3)]
    assert await select(attrs=frozenset({LEVEL}), selectors=(typed("Sensor"),)) == [urn(3)]
    # q and geo are not the temporal store's business
    assert await select(q=parse_q("level>100", TERMS.expand)) == [urn(1), urn(2), urn(3),
                                                                  urn(4)]
    page, count = await store.select_temporal_entities(None, EntityQuery(limit=2, offset=1,
                                                                         count=True))
    assert [e.id for e in page] == [urn(2), urn(3)] and count == 4
    page, count = await store.select_temporal_entities(None, EntityQuery(limit=0, count=True))
    assert page == [] and count == 4
    deleted = EntityQuery(selectors=(EntitySelector(ids=(urn(4),)),), limit=5)
    page, _ = await store.select_temporal_entities(None, deleted)
    assert page == [TemporalEntity(urn(4), (GAUGE,), at(3), at(4), at(4))]


async def test_has_history_and_history_instance(store: Store) -> None:
    await store.write(None, [], [instance(urn(1), LEVEL, at(0), 1),
                                 instance(urn(1), LEVEL, at(1), 2, dataset=DS),
                                 instance(urn(1), STATUS, at(2), "ok")])
    assert await store.has_history(None, urn(1), LEVEL, None)
    assert await store.has_history(None, urn(1), LEVEL, "")
    assert await store.has_history(None, urn(1), LEVEL, DS)
    assert not await store.has_history(None, urn(1), LEVEL, "urn:ngsi-ld:Dataset:other")
    assert await store.has_history(None, urn(1), STATUS, "")
    assert not await store.has_history(None, urn(1), STATUS, DS)
    assert not await store.has_history(None, urn(1), OWNER, None)
    assert not await store.has_history(None, urn(2), LEVEL, None)
    rows = (await store.histories(None, [urn(1)], None, TimeFilter(), 10))[urn(1)]
    first = rows[LEVEL][0]
    assert await store.history_instance(None, urn(1), LEVEL, first.instance_id) == first
    assert await store.history_instance(None, urn(1), LEVEL, first.instance_id,
                                        staged=True) == first
    assert first.attr == LEVEL and first.dataset_id == "" and first.observed_at == at(0)
    assert first.deleted_at is None and json.loads(first.value)["value"] == 1
    status = rows[STATUS][0].instance_id
    assert await store.history_instance(None, urn(1), LEVEL, status) is None
    assert await store.history_instance(None, urn(2), LEVEL, first.instance_id) is None
    assert await store.history_instance(None, urn(1), LEVEL, 10**9) is None


async def test_instance_ids_grow(store: Store) -> None:
    """A new instance's id is above every existing one (a deleted id below the top is never
    given again; the SQLite backend may give the top id again once its instance is gone)."""
    await store.write(None, [], [instance(urn(1), LEVEL, at(n), n) for n in range(3)])
    await store.write(None, [], [instance(urn(2), LEVEL, at(9), 9)])
    rows = await store.histories(None, [urn(1), urn(2)], None, TimeFilter(), 10)
    ids = [r.instance_id for r in rows[urn(1)][LEVEL]] + [rows[urn(2)][LEVEL][0].instance_id]
    assert ids == sorted(ids) and len(set(ids)) == 4
    await store.write(None, [], [InstanceDeleted(ids[1])])
    await store.write(None, [], [instance(urn(2), LEVEL, at(10), 10)])
    again = await store.histories(None, [urn(2)], None, TimeFilter(), 10)
    assert [r.instance_id for r in again[urn(2)][LEVEL]][-1] > ids[-1]


@pytest.fixture
async def history(store: Store) -> Store:
    """urn(1): level 1..4 at minutes 0, 10, 20, 30 and 10, 20 (dataset DS) at 5, 15; status
    ok, ok, ko at 0, 10, 20; reading with its own createdAt/modifiedAt; a deletion of owner."""
    await store.write(None, [], [
        EntityRecord(urn(1), (GAUGE,), at(0), at(0)),
        *(instance(urn(1), LEVEL, at(m), v) for m, v in ((0, 1), (10, 2), (20, 3), (30, 4))),
        *(instance(urn(1), LEVEL, at(m), v, dataset=DS) for m, v in ((5, 10), (15, 20))),
        *(instance(urn(1), STATUS, at(m), v) for m, v in ((0, "ok"), (10, "ok"), (20, "ko"))),
        instance(urn(1), READING, at(0), "a", created=at(50), modified=at(70)),
        instance(urn(1), READING, at(10), "b", created=at(40), modified=at(60)),
        instance(urn(1), READING, at(20), "c", created=at(30), modified=at(80)),
        instance(urn(1), OWNER, at(0), "urn:ngsi-ld:Person:1", kind="Relationship"),
        instance(urn(1), OWNER, at(25), "urn:ngsi-ld:Person:1", kind="Relationship",
                 deleted=True)])
    return store


async def levels(store: Store, time: TimeFilter, limit: int = 100,
                 attr: str = LEVEL) -> list[object]:
    found_rows = await store.histories(None, [urn(1)], frozenset({attr}), time, limit)
    return values(found_rows[urn(1)].get(attr, []))


async def test_histories_in_time_order_with_every_time_filter(history: Store) -> None:
    store = history
    assert await levels(store, TimeFilter()) == [1, 10, 2, 20, 3, 4]
    assert await levels(store, TimeFilter(after=at(10))) == [20, 3, 4]
    assert await levels(store, TimeFilter(from_=at(10))) == [2, 20, 3, 4]
    assert await levels(store, TimeFilter(from_=at(10), before=at(20))) == [2, 20]
    assert await levels(store, TimeFilter(before=at(10))) == [1, 10]
    assert await levels(store, TimeFilter(after=at(40))) == []
    assert await levels(store, TimeFilter(), limit=2) == [1, 10]
    assert await levels(store, TimeFilter(after=at(0)), limit=3) == [10, 2, 20]


async def test_histories_on_created_at_and_modified_at(history: Store) -> None:
    store = history
    assert await levels(store, TimeFilter(), attr=READING) == ["a", "b", "c"]
    assert await levels(store, TimeFilter("createdAt"), attr=READING) == ["c", "b", "a"]
    assert await levels(store, TimeFilter("createdAt", after=at(35)), attr=READING) == [
        "b", "a"]
    assert await levels(store, TimeFilter("modifiedAt", before=at(75)), attr=READING) == [
        "b", "a"]
    assert await levels(store, TimeFilter("modifiedAt", from_=at(60), before=at(80)),
                        attr=READING) == ["b", "a"]
    assert await levels(store, TimeFilter("modifiedAt", last_n=1), 1, READING) == ["c"]


async def test_histories_last_n_gives_the_most_recent_in_ascending_order(history: Store
                                                                          ) -> None:
    store = history
    assert await levels(store, TimeFilter(last_n=2), limit=2) == [3, 4]
    assert await levels(store, TimeFilter(last_n=2), limit=1) == [4]
    assert await levels(store, TimeFilter(last_n=10), limit=10) == [1, 10, 2, 20, 3, 4]
    assert await levels(store, TimeFilter(before=at(20), last_n=3), limit=3) == [10, 2, 20]


async def test_histories_last_n_below_the_limit_bounds_the_instances(history: Store) -> None:
    assert await levels(history, TimeFilter(last_n=2), limit=100) == [3, 4]


async def test_histories_keys_attrs_and_deletions(history: Store) -> None:
    store = history
    everything = await store.histories(None, [urn(1)], None, TimeFilter(), 100)
    assert set(everything[urn(1)]) == {LEVEL, STATUS, READING, OWNER}
    owner = everything[urn(1)][OWNER]
    assert [r.deleted_at for r in owner] == [None, at(25)]
    assert [r.observed_at for r in owner] == [at(0), at(25)]
    assert [r.dataset_id for r in everything[urn(1)][LEVEL]] == ["", DS, "", DS, "", ""]
    some = await store.histories(None, [urn(1)], frozenset({STATUS, V + "none"}),
                                 TimeFilter(), 100)
    assert set(some[urn(1)]) == {STATUS}
    # an entity with a history is a key even when nothing is in range
    late = await store.histories(None, [urn(1)], None, TimeFilter(after=at(1000)), 100)
    assert late[urn(1)] == {}


async def test_histories_break_time_ties_by_instance_id(store: Store) -> None:
    await store.write(None, [], [instance(urn(1), LEVEL, at(5), "second"),
                                 instance(urn(1), LEVEL, at(5), "third", dataset=DS),
                                 instance(urn(1), LEVEL, at(0), "first")])
    rows = (await store.histories(None, [urn(1)], None, TimeFilter(), 10))[urn(1)][LEVEL]
    assert values(rows) == ["first", "second", "third"]
    last = (await store.histories(None, [urn(1)], None, TimeFilter(last_n=1), 1))[urn(1)]
    assert values(last[LEVEL]) == ["third"]


METHODS = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")


def measured(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    """Rows with floats rounded, for comparisons."""
    return [tuple(round(v, 6) if isinstance(v, float) else v for v in row) for row in rows]


async def aggregate(store: Store, attr: str = LEVEL, time: TimeFilter | None = None,
                    methods: tuple[str, ...] = ("totalCount",), buckets: Buckets | None = None,
                    origin: str | None = None, with_last_time: bool = False) -> Any:
    result = await store.aggregate_histories(None, [urn(1)], frozenset({attr}),
                                             time or TimeFilter(), methods,
                                             buckets or Buckets(), origin, with_last_time)
    return result[urn(1)].get(attr)


async def test_aggregate_every_method_over_the_whole_range(history: Store) -> None:
    found_aggregate = await aggregate(history, methods=METHODS)
    assert found_aggregate.kind == "Property" and found_aggregate.origin == at(0)
    assert found_aggregate.last_time is None
    assert measured(found_aggregate.rows) == [
        ("", 0, 4, 4, 10.0, 2.5, 1.0, 4.0, round(math.sqrt(5 / 3), 6), 30.0),
        (DS, 0, 2, 2, 30.0, 15.0, 10.0, 20.0, round(math.sqrt(50), 6), 500.0)]
    last = await aggregate(history, with_last_time=True)
    assert last.last_time == at(30)
    assert (await aggregate(history, time=TimeFilter(before=at(20)),
                            with_last_time=True)).last_time == at(15)


async def test_aggregate_non_numbers_and_relationships(history: Store) -> None:
    status = await aggregate(history, STATUS, methods=METHODS)
    assert status.kind == "Property"
    assert status.rows == [("", 0, 3, 2, None, None, None, None, None, None)]
    owner = await aggregate(history, OWNER, methods=("totalCount", "distinctCount"))
    assert owner.kind == "Relationship"
    assert owner.rows == [("", 0, 1, 1)]  # the deletion is not aggregated


async def test_aggregate_in_a_time_range_with_one_value(history: Store) -> None:
    found_aggregate = await aggregate(history, time=TimeFilter(after=at(10)),
                                      methods=("totalCount", "sum", "stddev"))
    assert found_aggregate.origin == at(15)
    assert found_aggregate.rows == [("", 0, 2, 7.0, math.sqrt(0.5)), (DS, 0, 1, 20.0, None)]
    assert await aggregate(history, time=TimeFilter(after=at(100))) is None


async def test_aggregate_fixed_periods_from_the_first_instance_or_the_origin(history: Store
                                                                             ) -> None:
    quarter = Buckets(period_ms=15 * 60_000)
    first = await aggregate(history, methods=("totalCount", "sum"), buckets=quarter)
    assert first.origin == at(0)
    assert first.rows == [("", 0, 2, 3.0), ("", 1, 1, 3.0), ("", 2, 1, 4.0),
                          (DS, 0, 1, 10.0), (DS, 1, 1, 20.0)]
    given = await aggregate(history, methods=("totalCount", "sum"), buckets=quarter,
                            origin=at(-5))
    assert given.origin == at(-5)
    assert given.rows == [("", 0, 1, 1.0), ("", 1, 2, 5.0), ("", 2, 1, 4.0),
                          (DS, 0, 1, 10.0), (DS, 1, 1, 20.0)]
    ranged = await aggregate(history, time=TimeFilter(from_=at(10), before=at(30)),
                             buckets=Buckets(period_ms=10 * 60_000), origin=at(10))
    assert ranged.origin == at(10)
    assert ranged.rows == [("", 0, 1), ("", 1, 1), (DS, 0, 1)]


async def test_aggregate_calendar_months(store: Store) -> None:
    times = ["2026-01-31T10:00:00.000000Z", "2026-02-15T00:00:00.000000Z",
             "2026-02-28T12:00:00.000000Z", "2026-03-31T09:00:00.000000Z",
             "2026-04-01T00:00:00.000000Z"]
    await store.write(None, [], [instance(urn(1), LEVEL, t, n) for n, t in enumerate(times)])
    monthly = await aggregate(store, methods=("totalCount", "sum"), buckets=Buckets(months=1))
    assert monthly.origin == times[0]
    assert monthly.rows == [("", 0, 3, 3.0), ("", 1, 1, 3.0), ("", 2, 1, 4.0)]
    two = await aggregate(store, buckets=Buckets(months=2))
    assert two.rows == [("", 0, 4), ("", 1, 1)]
    calendar = await aggregate(store, buckets=Buckets(months=1),
                               origin="2026-01-01T00:00:00.000000Z")
    assert calendar.rows == [("", 0, 1), ("", 1, 2), ("", 2, 1), ("", 3, 1)]


async def test_aggregate_skips_deletions_for_the_origin(store: Store) -> None:
    await store.write(None, [], [instance(urn(1), LEVEL, at(0), 1, deleted=True),
                                 instance(urn(1), LEVEL, at(10), 2),
                                 instance(urn(1), LEVEL, at(20), 3)])
    found_aggregate = await aggregate(store, methods=("totalCount", "max"),
                                      buckets=Buckets(period_ms=10 * 60_000))
    assert found_aggregate.origin == at(10)
    assert found_aggregate.rows == [("", 0, 1, 2.0), ("", 1, 1, 3.0)]


async def test_aggregate_distinct_count_compares_values(store: Store) -> None:
    await store.write(None, [], [instance(urn(1), LEVEL, at(n), v) for n, v in
                                 enumerate([1, 1.0, "1", {"a": 1}, {"a": 1}, [1, 2], None])])
    found_aggregate = await aggregate(store, methods=("totalCount", "distinctCount"))
    assert found_aggregate.rows == [("", 0, 7, 4)]


async def test_history_deleted_drops_the_entity_and_its_instances(history: Store) -> None:
    store = history
    await store.write(None, [], [EntityRecord(urn(2), (GAUGE,), at(0), at(0)),
                                 instance(urn(2), LEVEL, at(0), 1)])
    rows = await store.histories(None, [urn(1)], None, TimeFilter(), 100)
    kept = rows[urn(1)][LEVEL][0].instance_id
    await store.write(None, [], [HistoryDeleted(urn(1))])
    assert set(await store.temporal_entities(None, [urn(1), urn(2)])) == {urn(2)}
    assert not await store.has_history(None, urn(1), LEVEL, None)
    assert await store.history_instance(None, urn(1), LEVEL, kept) is None
    assert (await store.histories(None, [urn(1)], None, TimeFilter(), 100)).get(urn(1)) in (
        None, {})
    assert await store.has_history(None, urn(2), LEVEL, None)


async def test_attribute_history_deleted_for_one_dataset_or_all(history: Store) -> None:
    store = history
    await store.write(None, [], [AttributeHistoryDeleted(urn(1), LEVEL, DS)])
    assert await levels(store, TimeFilter()) == [1, 2, 3, 4]
    await store.write(None, [], [AttributeHistoryDeleted(urn(1), LEVEL, "")])
    assert not await store.has_history(None, urn(1), LEVEL, None)
    await store.write(None, [], [instance(urn(1), STATUS, at(40), "x", dataset=DS),
                                 AttributeHistoryDeleted(urn(1), STATUS, None)])
    assert not await store.has_history(None, urn(1), STATUS, None)
    assert await store.has_history(None, urn(1), READING, None)
    assert set(await store.temporal_entities(None, [urn(1)])) == {urn(1)}


async def test_instance_modified_and_instance_deleted(history: Store) -> None:
    store = history
    rows = (await store.histories(None, [urn(1)], frozenset({LEVEL}), TimeFilter(),
                                  100))[urn(1)][LEVEL]
    first, second = rows[0], rows[2]  # level 1 at 0, level 2 at 10
    new_value = json.dumps({"type": "Property", "value": 100})
    await store.write(None, [], [InstanceModified(first.instance_id, at(35), at(99), 100.0,
                                                  new_value),
                                 InstanceDeleted(second.instance_id)])
    modified = await store.history_instance(None, urn(1), LEVEL, first.instance_id)
    assert modified is not None
    assert (modified.observed_at, modified.created_at, modified.modified_at) == (
        at(35), at(0), at(99))
    assert json.loads(modified.value)["value"] == 100
    assert await store.history_instance(None, urn(1), LEVEL, second.instance_id) is None
    assert await levels(store, TimeFilter()) == [10, 20, 3, 4, 100]
    assert (await aggregate(store, methods=("totalCount", "max"))).rows[0] == ("", 0, 3, 100.0)


async def test_retention_settings(store: Store) -> None:
    assert await store.retention(None) == {}
    await store.set_retention(None, "", 30)
    await store.set_retention(None, LEVEL, 7)
    await store.set_retention("north", STATUS, 1)
    assert await store.retention(None) == {"": 30, LEVEL: 7}
    await store.set_retention(None, LEVEL, 8)
    await store.set_retention(None, "", None)
    assert await store.retention(None) == {LEVEL: 8}
    assert await store.retention("north") == {STATUS: 1}


async def test_purge_history_per_attribute_and_by_default(history: Store) -> None:
    store = history
    # level: before minute 20; other attributes: before minute 5
    assert await store.purge_history(None, {LEVEL: at(20)}, at(5)) == 4 + 1 + 1 + 1
    assert await levels(store, TimeFilter()) == [3, 4]
    assert await levels(store, TimeFilter(), attr=STATUS) == ["ok", "ko"]
    assert await levels(store, TimeFilter(), attr=READING) == ["b", "c"]
    owner = (await store.histories(None, [urn(1)], None, TimeFilter(), 100))[urn(1)][OWNER]
    assert [r.deleted_at for r in owner] == [at(25)]
    # without a default, only the attributes named go
    assert await store.purge_history(None, {STATUS: at(15)}, None) == 1
    assert await levels(store, TimeFilter(), attr=READING) == ["b", "c"]
    assert await store.purge_history(None, {}, None) == 0
    assert set(await store.temporal_entities(None, [urn(1)])) == {urn(1)}
    assert await store.purge_history("ghost", {}, at(1000)) == 0


# ---------------------------------------------------------------------------- subscriptions


SUB1, SUB2 = "urn:ngsi-ld:Subscription:1", "urn:ngsi-ld:Subscription:2"


async def test_subscriptions_put_status_and_delete(store: Store) -> None:
    assert await store.subscriptions(None) == []
    await store.write(None, [], [SubscriptionPut(SUB1, '{"a": 1}', '["c1"]'),
                                 SubscriptionPut(SUB2, '{"b": 2}', '["c2"]')])
    assert await store.subscriptions(None) == [StoredSubscription(SUB1, '{"a": 1}', '["c1"]'),
                                               StoredSubscription(SUB2, '{"b": 2}', '["c2"]')]
    assert await store.subscription(None, SUB2) == StoredSubscription(SUB2, '{"b": 2}',
                                                                      '["c2"]')
    assert await store.subscription(None, "urn:ngsi-ld:Subscription:9") is None
    assert await store.subscription("north", SUB1) is None
    await store.write(None, [], [SubscriptionStatus(SUB1, 1, 0, at(1), at(1)),
                                 SubscriptionStatus(SUB1, 2, 1, at(2), None, at(2)),
                                 SubscriptionStatus("urn:ngsi-ld:Subscription:9", 1)])
    # a new document (replacing the one read) keeps the status and the place
    await store.write(None, [], [SubscriptionPut(SUB1, '{"a": 2}', '["c3"]', '{"a": 1}')])
    assert await store.subscriptions(None) == [
        StoredSubscription(SUB1, '{"a": 2}', '["c3"]', 3, at(2), at(1), at(2), "failed", 1),
        StoredSubscription(SUB2, '{"b": 2}', '["c2"]')]
    assert await store.subscription(None, SUB1) == (await store.subscriptions(None))[0]
    await store.write(None, [], [SubscriptionDelete(SUB1)])
    assert [s.id for s in await store.subscriptions(None)] == [SUB2]
    assert await store.subscriptions("north") == []


async def test_subscription_status_records_add_up_in_any_order(store: Store) -> None:
    """Status records are increments (several workers deliver for one subscription): counts
    add up, each time is the latest given, and the status is that of the later outcome."""
    await store.write(None, [], [SubscriptionPut(SUB1, "{}", "[]")])
    # a worker's success at minute 3, then another's failure noted at minute 2 (out of order)
    await store.write(None, [], [SubscriptionStatus(SUB1, 2, 0, at(3), at(3))])
    await store.write(None, [], [SubscriptionStatus(SUB1, 1, 1, at(2), None, at(2))])
    stored = await store.subscription(None, SUB1)
    assert stored == StoredSubscription(SUB1, "{}", "[]", 3, at(3), at(3), at(2), "ok", 1)
    # a sending alone (outcome to come) leaves the status; a later failure sets it
    await store.write(None, [], [SubscriptionStatus(SUB1, 1, 0, at(4))])
    stored = await store.subscription(None, SUB1)
    assert stored is not None and (stored.times_sent, stored.delivery) == (4, "ok")
    await store.write(None, [], [SubscriptionStatus(SUB1, 0, 1, None, None, at(5)),
                                 SubscriptionStatus(SUB1, 0, 0, None, None, at(4))])
    assert await store.subscription(None, SUB1) == StoredSubscription(
        SUB1, "{}", "[]", 4, at(4), at(3), at(5), "failed", 2)
    await store.write(None, [], [SubscriptionStatus(SUB1, 0, 0, None, at(5))])
    stored = await store.subscription(None, SUB1)
    assert stored is not None and stored.delivery == "ok"  # a tie: the success


def mail(subscription: str = SUB1, n: int = 0) -> OutboxRecord:
    return OutboxRecord(subscription, f"http://h{n}/", json.dumps({"uri": f"http://h{n}/"}),
                        b"payload-%d" % n, 1000.0 + n)


async def test_outbox_records_are_fresh_until_tried(store: Store) -> None:
    reader = await store.outbox_reader(None)
    try:
        assert (await reader.fresh(0, 10), await reader.due(1e12, 10), await reader.max_id(),
                await reader.pending()) == ([], [], 0, 0)
        await store.write(None, [], [mail(SUB1, 1), mail(SUB1, 2), mail(SUB2, 3)])
        rows = await reader.fresh(0, 10)
        assert [(r.subscription, r.endpoint, r.target, r.payload, r.created_at, r.attempts)
                for r in rows] == [
            (SUB1, "http://h1/", '{"uri": "http://h1/"}', b"payload-1", 1001.0, 0),
            (SUB1, "http://h2/", '{"uri": "http://h2/"}', b"payload-2", 1002.0, 0),
            (SUB2, "http://h3/", '{"uri": "http://h3/"}', b"payload-3", 1003.0, 0)]
        ids = [r.id for r in rows]
        assert ids == sorted(ids) and len(set(ids)) == 3
        assert await reader.fresh(ids[0], 10) == rows[1:]
        assert await reader.fresh(0, 1) == rows[:1]
        assert await reader.max_id() == ids[-1] and await reader.pending() == 3
        assert await reader.due(1e12, 10) == []
    finally:
        await reader.close()


async def test_outbox_reader_sees_committed_rows_only(store: Store) -> None:
    reader = await store.outbox_reader(None)
    try:
        durable = await store.stage(None, [], [mail(SUB1, 1)])
        assert await reader.fresh(0, 10) == [] and await reader.pending() == 0
        await durable
        assert len(await reader.fresh(0, 10)) == 1 and await reader.pending() == 1
    finally:
        await reader.close()


async def test_outbox_retry_done_and_ids_never_reused(store: Store) -> None:
    await store.write(None, [], [mail(SUB1, 1), mail(SUB1, 2), mail(SUB2, 3)])
    reader = await store.outbox_reader(None)
    try:
        one, two, three = (r.id for r in await reader.fresh(0, 10))
        await store.write(None, [], [OutboxRetry(one, 1, 100.0), OutboxRetry(two, 2, 50.0)])
        assert [r.id for r in await reader.fresh(0, 10)] == [three]
        assert await reader.due(40.0, 10) == []
        assert [r.id for r in await reader.due(50.0, 10)] == [two]
        due = await reader.due(200.0, 10)
        assert [(r.id, r.attempts) for r in due] == [(two, 2), (one, 1)]
        assert [r.id for r in await reader.due(200.0, 1)] == [two]
        assert await reader.pending() == 3
        await store.write(None, [], [OutboxDone(two), OutboxDone(three)])
        assert [r.id for r in await reader.due(200.0, 10)] == [one]
        assert await reader.fresh(0, 10) == [] and await reader.pending() == 1
        assert await reader.max_id() == one
        await store.write(None, [], [mail(SUB2, 4)])
        (four,) = (r.id for r in await reader.fresh(0, 10))
        assert four > three
    finally:
        await reader.close()


async def test_deleting_a_subscription_drops_its_notifications(store: Store) -> None:
    await store.write(None, [], [SubscriptionPut(SUB1, "{}", "[]"),
                                 SubscriptionPut(SUB2, "{}", "[]"),
                                 mail(SUB1, 1), mail(SUB2, 2), mail(SUB1, 3)])
    reader = await store.outbox_reader(None)
    try:
        first = (await reader.fresh(0, 10))[0].id
        await store.write(None, [], [OutboxRetry(first, 1, 10.0), SubscriptionDelete(SUB1)])
        assert [r.subscription for r in await reader.fresh(0, 10)] == [SUB2]
        assert await reader.due(1e12, 10) == [] and await reader.pending() == 1
    finally:
        await reader.close()


async def test_outbox_readers_are_per_tenant(store: Store) -> None:
    await store.write("north", [], [mail(SUB1, 1)])
    north, default = await store.outbox_reader("north"), await store.outbox_reader(None)
    try:
        assert len(await north.fresh(0, 10)) == 1 and await default.fresh(0, 10) == []
        assert await default.pending() == 0
    finally:
        await north.close()
        await default.close()
    reader = await store.outbox_reader("south")  # a reader creates the tenant's storage
    await reader.close()
    assert await store.has_tenant("south")


# ---------------------------------------------------------------------------- entity maps

MAP1, MAP2 = "urn:ngsi-ld:entitymap:1", "urn:ngsi-ld:entitymap:2"


async def test_entity_maps_put_replace_and_delete(store: Store) -> None:
    assert await store.entity_map(None, MAP1) is None
    one = StoredEntityMap(MAP1, at(60), (urn(2), urn(1)), at(0))
    await store.write(None, [], [EntityMapPut(one)])
    assert await store.entity_map(None, MAP1) == one  # the ids keep their order
    longer = StoredEntityMap(MAP1, at(90), (urn(3),), at(0))
    await store.write(None, [], [EntityMapPut(longer)])
    assert await store.entity_map(None, MAP1) == longer
    await store.write(None, [], [EntityMapDelete(MAP1), EntityMapDelete(MAP2)])
    assert await store.entity_map(None, MAP1) is None


async def test_entity_maps_seen_once_staged_and_per_tenant(store: Store) -> None:
    one = StoredEntityMap(MAP1, at(60), (urn(1),), at(0))
    durable = await store.stage("north", [], [EntityMapPut(one)])
    assert await store.entity_map("north", MAP1) == one
    await durable
    assert await store.entity_map(None, MAP1) is None
    assert await store.entity_map("south", MAP1) is None
    assert not await store.has_tenant("south")  # a read creates no tenant


async def test_expired_entity_maps_go_together(store: Store) -> None:
    await store.write(None, [], [EntityMapPut(StoredEntityMap(MAP1, at(10), (), at(0))),
                                 EntityMapPut(StoredEntityMap(MAP2, at(30), (), at(0)))])
    await store.write(None, [], [EntityMapsExpired(at(10))])  # at or before
    assert await store.entity_map(None, MAP1) is None
    assert await store.entity_map(None, MAP2) is not None


# ---------------------------------------------------------------------------- system store


def context(local_id: str, url: str, created_at: str, kind: str = "Hosted",
            document: bytes = b'{"@context": {}}') -> StoredContext:
    return StoredContext(local_id, url, kind, document, created_at)


async def test_contexts(system_store: SystemStore) -> None:
    store = system_store
    assert await store.contexts() == [] and await store.context(local_id="a") is None
    first = context("a", "http://x/ctx/a", at(0))
    second = context("b", "http://remote/ctx.jsonld", at(1), "Cached", b'{"@context": 1}')
    await store.put_context(first)
    await store.put_context(second)
    assert await store.context(local_id="a") == first
    assert await store.context(url="http://remote/ctx.jsonld") == second
    assert await store.context(url="http://nowhere/") is None
    assert await store.contexts() == [first, second]
    # the same URL again: new document and kind, same id and creation time
    await store.put_context(context("c", "http://remote/ctx.jsonld", at(5), "Hosted", b'{"x": 2}'))
    assert await store.context(url="http://remote/ctx.jsonld") == context(
        "b", "http://remote/ctx.jsonld", at(1), "Hosted", b'{"x": 2}')
    assert await store.context(local_id="c") is None
    assert [c.local_id for c in await store.contexts()] == ["a", "b"]
    assert await store.delete_context("a") and not await store.delete_context("a")
    assert [c.local_id for c in await store.contexts()] == ["b"]


async def test_contexts_are_listed_oldest_first(system_store: SystemStore) -> None:
    await system_store.put_context(context("late", "http://x/2", at(10)))
    await system_store.put_context(context("early", "http://x/1", at(1)))
    assert [c.local_id for c in await system_store.contexts()] == ["early", "late"]


async def test_tokens(system_store: SystemStore) -> None:
    store = system_store
    assert await store.tokens() == [] and await store.token("t1") is None
    one = StoredToken("t1", "ab" * 32, "admin", "*", "ops", at(1))
    two = StoredToken("t2", "cd" * 32, "reader", "", "", at(0))
    await store.add_token(one)
    await store.add_token(two)
    assert await store.token("t1") == one
    assert await store.tokens() == [two, one]
    assert await store.revoke_token("t1", at(5))
    assert await store.token("t1") == StoredToken("t1", "ab" * 32, "admin", "*", "ops", at(1), at(5))
    assert not await store.revoke_token("t1", at(6))  # already revoked: the first time stays
    revoked = await store.token("t1")
    assert revoked is not None and revoked.revoked_at == at(5)
    assert not await store.revoke_token("t9", at(6))
    assert [t.token_id for t in await store.tokens()] == ["t2", "t1"]
