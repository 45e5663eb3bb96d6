"""Several processes on one PostgreSQL database (``docs/postgresql.md``, "Several workers").

Each "process" is a ``PostgresStore`` on a pool of its own (and a broker on it): what the
per-tenant lock of one broker cannot serialise, the store's optimistic check and the broker's
retry must (``store.base``: ``StaleWrite``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from support.workers import Worker, workers_on_postgres

from cityvisor.store.base import StaleWrite, Store, WriteOp
from cityvisor.store.records import OutboxDone, OutboxRecord, OutboxRetry

pytestmark = pytest.mark.anyio

LAMP = "urn:ngsi-ld:Streetlight:shared:1"
DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"  # terms of no @context
COUNT = DEFAULT + "count"


@pytest.fixture
async def workers() -> AsyncIterator[list[Worker]]:
    """Two workers (two pools) on one namespace of the test database."""
    async with workers_on_postgres(2) as found:
        yield found


def _lamp(**attrs: Any) -> dict[str, Any]:
    return {"id": LAMP, "type": "Streetlight", **attrs}


def _count(entity: dict[str, Any]) -> int:
    return int(entity["attrs"][COUNT][0]["value"])


async def test_a_counter_incremented_from_two_processes_loses_no_increment(
        workers: list[Worker]) -> None:
    a, b = workers
    await a.broker.create_entity(None, None, _lamp(count={"type": "Property", "value": 0}))
    refused = 0

    async def increment(store: Store) -> None:
        nonlocal refused
        while True:  # a read-modify-write at the port, as the broker does it
            old = await store.get(None, LAMP)
            assert old is not None
            new = {**old, "attrs": {**old["attrs"], COUNT: [
                {**old["attrs"][COUNT][0], "value": _count(old) + 1}]}}
            try:
                await store.write(None, [WriteOp(old, new)])
                return
            except StaleWrite:
                refused += 1

    n = 40
    await asyncio.gather(*(increment((a if i % 2 else b).store) for i in range(n)))
    for worker in workers:
        stored = await worker.store.get(None, LAMP)
        assert stored is not None and _count(stored) == n
    assert refused > 0  # the two processes did race (else the test proves nothing)


async def test_concurrent_appends_and_patches_from_two_brokers_are_all_kept(
        workers: list[Worker]) -> None:
    a, b = workers
    await a.broker.create_entity(None, None, _lamp(level={"type": "Property", "value": 0}))
    n = 15

    async def append(worker: Worker, i: int) -> None:
        await worker.broker.append_attributes(
            None, None, LAMP, {f"a{i}": {"type": "Property", "value": i}})

    async def patch(worker: Worker, i: int) -> None:
        await worker.broker.update_attribute(None, None, LAMP, "level", {"value": i})

    async def merge(worker: Worker, i: int) -> None:
        await worker.broker.merge_entity(None, None, LAMP,
                                         {f"m{i}": {"type": "Property", "value": i}})

    await asyncio.gather(*(job(workers[i % 2], i) for i in range(n)
                           for job in (append, patch, merge)))
    stored = await b.store.get(None, LAMP)
    assert stored is not None
    names = {iri.rsplit("/", 1)[-1] for iri in stored["attrs"]}
    assert names == {"level"} | {f"a{i}" for i in range(n)} | {f"m{i}" for i in range(n)}
    assert stored["attrs"][f"{DEFAULT}level"][0]["value"] in range(n)


async def test_a_stale_writer_fails_alone_in_its_group_commit(workers: list[Worker]) -> None:
    a, b = workers
    await a.broker.create_entity(None, None, _lamp(count={"type": "Property", "value": 0}))
    read = await a.store.get(None, LAMP)
    assert read is not None
    await b.broker.update_attribute(None, None, LAMP, "count", {"value": 5})
    other = {"id": "urn:ngsi-ld:Streetlight:shared:2", "type": [f"{DEFAULT}Streetlight"],
             "attrs": {}, "createdAt": read["createdAt"], "modifiedAt": read["modifiedAt"]}
    fresh = await a.store.stage(None, [WriteOp(None, other)])  # opens a's group
    with pytest.raises(StaleWrite):
        await a.store.stage(None, [WriteOp(read, {**read, "modifiedAt": "x"})])
    with pytest.raises(StaleWrite):  # a delete of what is no longer stored, the same
        await a.store.stage(None, [WriteOp(read, None)])
    with pytest.raises(StaleWrite):  # an insert of an entity another process made
        await a.store.stage(None, [WriteOp(None, read)])
    await fresh
    stored = await a.store.get(None, LAMP)
    assert stored is not None and _count(stored) == 5
    assert await a.store.get(None, other["id"]) == other


# ---------------------------------------------------------------------------- outbox claims


def _mail(n: int) -> OutboxRecord:
    return OutboxRecord("urn:ngsi-ld:Subscription:s", f"http://h{n % 3}/",
                        '{"uri": "http://h/"}', b"n%d" % n, 1000.0 + n)


async def test_two_outbox_readers_never_get_the_same_row(workers: list[Worker]) -> None:
    a, b = workers
    readers = [await a.store.outbox_reader(None), await b.store.outbox_reader(None)]
    n = 300
    got: list[list[int]] = [[], []]

    async def write() -> None:
        for i in range(0, n, 10):
            await a.store.write(None, [], [_mail(i + k) for k in range(10)])

    async def read(k: int) -> None:
        last = 0
        while sum(map(len, got)) < n:
            rows = await readers[k].fresh(last, 7) + await readers[k].due(time.time(), 7)
            got[k] += [row.id for row in rows]
            last = max([last, *(row.id for row in rows)])
            await asyncio.sleep(0)

    await asyncio.wait_for(asyncio.gather(write(), read(0), read(1)), 30)
    assert not set(got[0]) & set(got[1])
    assert len(got[0]) + len(got[1]) == n == len(set(got[0]) | set(got[1]))
    assert got[0] and got[1]  # both took a share


async def test_rows_of_a_reader_whose_lease_expired_go_to_another(
        workers: list[Worker]) -> None:
    a, b = workers
    a.store.outbox_lease_s = 0.3  # type: ignore[attr-defined]
    dead, other = await a.store.outbox_reader(None), await b.store.outbox_reader(None)
    await a.store.write(None, [], [_mail(1), _mail(2), _mail(3)])
    one, two, three = (row.id for row in await dead.fresh(0, 10))
    assert [row.id for row in await dead.fresh(0, 10)] == [one, two, three]  # still its own
    assert await other.fresh(0, 10) == [] and await other.due(time.time(), 10) == []
    await a.store.write(None, [], [OutboxDone(one), OutboxRetry(two, 1, time.time() - 1)])
    assert [row.id for row in await other.due(time.time(), 10)] == [two]  # retry: free again
    await asyncio.sleep(0.4)  # the lease of the reader that "died" runs out
    assert await other.fresh(0, 10) == []  # never-tried, but claimed once: from due
    assert [row.id for row in await other.due(time.time(), 10)] == [three, two]  # soonest
    assert await dead.due(time.time(), 10) == [] and await dead.fresh(0, 10) == []
    assert await other.pending() == 2


# ---------------------------------------------------------------------------- leaders


async def test_one_worker_leads_a_job_until_it_goes(workers: list[Worker]) -> None:
    a, b = workers
    assert await a.store.leader("retention")
    assert not await b.store.leader("retention")
    assert await a.store.leader("retention")  # kept, asked again before each run
    assert await b.store.leader("periodic-notifications")  # another job, another leader
    assert not await a.store.leader("periodic-notifications")
    a.store._leader_conn.terminate()  # type: ignore[attr-defined]  # a worker killed
    for _ in range(100):  # the server notices the session is gone
        if await b.store.leader("retention"):
            break
        await asyncio.sleep(0.05)
    assert await b.store.leader("retention")
    assert not await a.store.leader("retention")  # the old leader knows it is no more


async def test_a_backend_of_one_process_always_leads() -> None:
    from cityvisor.store.memory import MemoryStore

    assert await MemoryStore().leader("retention")
