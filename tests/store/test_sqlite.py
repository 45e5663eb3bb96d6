"""The embedded store: atomic staging, group commit, index tables kept in step."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from cityvisor.ngsild.errors import AlreadyExists, BadRequestData
from cityvisor.store.base import EntityQuery, WriteOp
from cityvisor.store.sqlite import SqliteStore, _values

pytestmark = pytest.mark.anyio
V = "https://uri.etsi.org/ngsi-ld/default-context/"
NOW = "2026-11-27T18:00:00.000000Z"


def entity(n: int, level: float, *, types: tuple[str, ...] = ("Gauge",)) -> dict[str, object]:
    return {"id": f"urn:ngsi-ld:Gauge:{n}", "type": [V + t for t in types],
            "createdAt": NOW, "modifiedAt": NOW, "attrs": {
                V + "level": [{"type": "Property", "value": level,
                               "createdAt": NOW, "modifiedAt": NOW}],
                "https://uri.etsi.org/ngsi-ld/location": [{
                    "type": "GeoProperty", "createdAt": NOW, "modifiedAt": NOW,
                    "value": {"type": "Point", "coordinates": [4.36 + n / 1000, 43.84]}}]}}


def index_rows(path: Path) -> set[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return set(conn.execute("SELECT attr, kind, value, entity FROM attr_values"))


def expected_rows(path: Path) -> set[tuple[object, ...]]:
    import json

    rows: set[tuple[object, ...]] = set()
    with sqlite3.connect(path) as conn:
        for rowid, doc in conn.execute("SELECT rowid, doc FROM entities"):
            for iri, instances in json.loads(doc)["attrs"].items():
                rows |= {(*row, rowid) for row in _values(iri, instances)}
    return rows


async def test_concurrent_writers_share_one_commit_and_are_durable(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    await asyncio.gather(*(store.write(None, [WriteOp(None, entity(n, n))]) for n in range(20)))
    # A second process sees every acknowledged write.
    with sqlite3.connect(store.path(None)) as conn:
        assert conn.execute("SELECT count(*) FROM entities").fetchone()[0] == 20
    await store.close()


async def test_a_failing_op_rolls_back_alone(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    await store.write(None, [WriteOp(None, entity(1, 1.0))])
    good = await store.stage(None, [WriteOp(None, entity(2, 2.0))])
    with pytest.raises(AlreadyExists):
        await store.stage(None, [WriteOp(None, entity(3, 3.0)), WriteOp(None, entity(1, 9.0))])
    await good
    ids = {e["id"] for e in (await store.query(None, EntityQuery(limit=100))).entities}
    assert ids == {"urn:ngsi-ld:Gauge:1", "urn:ngsi-ld:Gauge:2"}
    await store.close()


async def test_index_tables_follow_updates_and_deletes(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    await store.write(None, [WriteOp(None, entity(n, float(n))) for n in range(10)])
    old = await store.get(None, "urn:ngsi-ld:Gauge:3")
    assert old is not None
    new = entity(3, 42.0, types=("Gauge", "Sensor"))
    new["attrs"][V + "status"] = [{"type": "Property", "value": "ok",  # type: ignore[index]
                                   "createdAt": NOW, "modifiedAt": NOW}]
    gone = await store.get(None, "urn:ngsi-ld:Gauge:4")
    # The same entity changed twice in one transaction ends in its final state.
    await store.write(None, [WriteOp(old, entity(3, 7.0)), WriteOp(entity(3, 7.0), new),
                             WriteOp(gone, None)])
    assert index_rows(store.path(None)) == expected_rows(store.path(None))
    stats = {(s.entity_type.removeprefix(V), s.attribute.removeprefix(V), s.count)
             for s in await store.attribute_stats(None) if s.attribute == V + "status"}
    assert stats == {("", "status", 1), ("Gauge", "status", 1), ("Sensor", "status", 1)}
    with sqlite3.connect(store.path(None)) as conn:
        assert conn.execute("SELECT count(*) FROM geo").fetchone()[0] == 9
        assert conn.execute("SELECT type FROM entity_types").fetchall() == [(V + "Sensor",)]
    await store.close()


def test_tenant_names_are_checked(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    with pytest.raises(BadRequestData):
        store.path("../etc")
    assert store.path("nimes").name == "tenant-nimes.sqlite"


async def test_a_file_of_an_older_version_gets_the_failure_count(tmp_path: Path) -> None:
    """A subscriptions table without ``times_failed`` (written before it was counted) gets
    the column when the file opens, and its rows keep their status."""
    from cityvisor.store.records import StoredSubscription, SubscriptionStatus

    store = SqliteStore(tmp_path)
    path = store.path(None)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE subscriptions (id TEXT PRIMARY KEY, doc TEXT NOT NULL, "
                     "context TEXT, times_sent INTEGER NOT NULL DEFAULT 0, "
                     "last_notification TEXT, last_success TEXT, last_failure TEXT, "
                     "delivery TEXT)")
        conn.execute("INSERT INTO subscriptions VALUES ('urn:s', '{}', '[]', 2, ?, ?, NULL, "
                     "'ok')", (NOW, NOW))
    conn.close()
    try:
        await store.write(None, [], [SubscriptionStatus("urn:s", 1, 1, NOW, None, NOW)])
        assert await store.subscriptions(None) == [
            StoredSubscription("urn:s", "{}", "[]", 3, NOW, NOW, NOW, "ok", 1)]
    finally:
        await store.close()
