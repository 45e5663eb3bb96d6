"""PostgreSQL applies the parts of the writers that queue together (one statement per table):
a stale or refused part fails alone, the others commit; what a process staged reads back
before the commit; the reads of one turn share one query."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cityvisor.store.base import StaleWrite, WriteOp

pytestmark = pytest.mark.anyio

T = "2026-01-01T00:00:00.000000Z"


def entity(n: int, value: object = 0) -> dict[str, Any]:
    return {"id": f"urn:ngsi-ld:T:{n}", "type": ["https://example.org/T"], "createdAt": T,
            "modifiedAt": T, "attrs": {"https://example.org/v": [
                {"type": "Property", "value": value, "createdAt": T, "modifiedAt": T}]}}


@pytest.fixture
def store(postgres_store: Any) -> Any:
    return postgres_store


def count_batches(store: Any) -> list[int]:
    """The sizes of the batches the store applies from now on."""
    sizes: list[int] = []
    real = store._apply

    async def counted(conn: Any, parts: list[Any]) -> None:
        sizes.append(len(parts))
        await real(conn, parts)

    store._apply = counted
    return sizes


async def stage_and_commit(store: Any, ops: list[WriteOp]) -> None:
    await (await store.stage(None, ops))


async def test_a_stale_part_fails_alone_and_the_others_of_its_batch_commit(store: Any) -> None:
    await stage_and_commit(store, [WriteOp(None, entity(n)) for n in range(1, 5)])
    sizes = count_batches(store)
    stale = WriteOp(entity(2, value=99), entity(2, value=2))  # not what is stored
    results = await asyncio.gather(
        stage_and_commit(store, [WriteOp(entity(1), entity(1, value=1))]),
        stage_and_commit(store, [stale]),
        stage_and_commit(store, [WriteOp(entity(3), entity(3, value=3))]),
        return_exceptions=True)
    assert sizes[0] == 3  # the three parts went together first, then each alone
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], StaleWrite)
    got = await store.get_many(None, [f"urn:ngsi-ld:T:{n}" for n in range(1, 5)])
    values = {i: e["attrs"]["https://example.org/v"][0]["value"] for i, e in got.items()}
    assert values == {"urn:ngsi-ld:T:1": 1, "urn:ngsi-ld:T:2": 0, "urn:ngsi-ld:T:3": 3,
                      "urn:ngsi-ld:T:4": 0}


async def test_a_refused_part_in_a_later_batch_leaves_the_earlier_one(store: Any) -> None:
    await stage_and_commit(store, [WriteOp(None, entity(1))])
    first = await store.stage(None, [WriteOp(entity(1), entity(1, value=1))])  # open group
    sizes = count_batches(store)
    results = await asyncio.gather(  # an entity that exists: refused by the unique index
        stage_and_commit(store, [WriteOp(None, entity(1))]),
        stage_and_commit(store, [WriteOp(None, entity(6))]), return_exceptions=True)
    await first
    assert sizes == [2, 1, 1]  # under a savepoint together, then each alone
    assert isinstance(results[0], StaleWrite) and results[1] is None
    got = await store.get_many(None, ["urn:ngsi-ld:T:1", "urn:ngsi-ld:T:6"])
    assert sorted(got) == ["urn:ngsi-ld:T:1", "urn:ngsi-ld:T:6"]
    assert got["urn:ngsi-ld:T:1"]["attrs"]["https://example.org/v"][0]["value"] == 1


async def test_staged_entities_read_back_before_the_commit_and_reads_share_a_query(
        store: Any) -> None:
    await stage_and_commit(store, [WriteOp(None, entity(n)) for n in range(1, 4)])
    durable = await store.stage(None, [WriteOp(entity(1), entity(1, value=7)),
                                       WriteOp(entity(2), None)])
    assert (await store.get(None, "urn:ngsi-ld:T:1"))["attrs"]["https://example.org/v"][0][
        "value"] == 7
    assert await store.get(None, "urn:ngsi-ld:T:2") is None  # deleted, not committed yet
    queries: list[set[str]] = []
    real_read = store._read_batch

    async def read(schema: str, batch: Any) -> None:
        queries.append(set(batch.ids))
        await real_read(schema, batch)

    store._read_batch = read
    got = await asyncio.gather(*(store.get(None, f"urn:ngsi-ld:T:{n}") for n in (3, 3, 4)))
    assert [e and e["id"] for e in got] == ["urn:ngsi-ld:T:3", "urn:ngsi-ld:T:3", None]
    # one query for the three reads of the turn
    assert queries == [{"urn:ngsi-ld:T:3", "urn:ngsi-ld:T:4"}]
    await durable


async def test_instances_of_a_month_whose_partition_another_process_dropped_are_written(
        store: Any) -> None:
    from cityvisor.store.base import TimeFilter
    from cityvisor.store.records import EntityRecord, InstanceRecord

    def record(n: int) -> InstanceRecord:
        at = f"2026-01-0{n}T00:00:00.000000Z"
        return InstanceRecord("urn:ngsi-ld:T:1", "https://example.org/T", "https://example.org/v",
                              "", at, at, at, None, float(n), '{"type": "Property", "value": 1}')

    await (await store.stage(None, [], [EntityRecord("urn:ngsi-ld:T:1",
                                                      ("https://example.org/T",), T, T),
                                         record(1)]))
    schema = await store._schema(None)
    await store.pool.execute(f"DROP TABLE {schema}.temporal_instances_y2026m01")  # elsewhere
    await (await store.stage(None, [], [record(2), record(3)]))  # the cache still knows it
    rows = (await store.histories(None, ["urn:ngsi-ld:T:1"], None, TimeFilter(), 10)
            )["urn:ngsi-ld:T:1"]["https://example.org/v"]
    assert [row.observed_at for row in rows] == [record(2).observed_at, record(3).observed_at]
    assert rows[0].instance_id < rows[1].instance_id  # ids grow in the order written
