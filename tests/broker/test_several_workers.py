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

import orjson
import pytest
from support.workers import Worker, workers_on_postgres

from cityvisor.broker.subscriptions import SubscriptionManager
from cityvisor.store.base import StaleWrite, Store, WriteOp
from cityvisor.store.records import (
    OutboxDone,
    OutboxRecord,
    OutboxRetry,
    SubscriptionDelete,
    SubscriptionPut,
)

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


# ---------------------------------------------------------------------------- subscriptions


SUB = "urn:ngsi-ld:Subscription:shared"


def _watching() -> dict[str, Any]:
    return {"id": SUB, "type": "Subscription", "entities": [{"type": "Streetlight"}],
            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}}}


async def _stored_doc(manager: SubscriptionManager) -> dict[str, Any]:
    (stored,) = await manager.store.subscriptions(None)
    return orjson.loads(stored.doc)  # type: ignore[no-any-return]


async def test_a_subscription_another_process_changed_is_not_overwritten(
        workers: list[Worker]) -> None:
    a, b = workers
    await a.store.write(None, [], [SubscriptionPut(SUB, '{"v": 1}', "null")])
    with pytest.raises(StaleWrite):  # a creation of an id that exists
        await b.store.write(None, [], [SubscriptionPut(SUB, '{"v": 9}', "null")])
    await a.store.write(None, [], [SubscriptionPut(SUB, '{"v": 2}', "null", '{"v": 1}')])
    with pytest.raises(StaleWrite):  # a replacement of what is no longer stored
        await b.store.write(None, [], [SubscriptionPut(SUB, '{"v": 3}', "null", '{"v": 1}'),
                                       OutboxRecord(SUB, "http://h/", "{}", b"x", 1.0)])
    stored = await b.store.subscription(None, SUB)
    assert stored is not None and stored.doc == '{"v": 2}'
    assert await (await b.store.outbox_reader(None)).pending() == 0  # nothing of the batch
    await b.store.write(None, [], [SubscriptionDelete(SUB)])
    with pytest.raises(StaleWrite):  # nor of one that is gone
        await a.store.write(None, [], [SubscriptionPut(SUB, '{"v": 4}', "null", '{"v": 2}')])


async def test_concurrent_updates_of_a_subscription_from_two_workers_are_all_kept(
        workers: list[Worker]) -> None:
    a, b = (SubscriptionManager(worker.broker) for worker in workers)
    await a.create(None, None, _watching())
    # b caches the subscription, then a changes it (no change feed between them)
    assert (await b.retrieve(None, SUB))["notification"]["endpoint"]["uri"].endswith("/n")
    await a.update(None, SUB, {"subscriptionName": "lamps"})
    await b.update(None, SUB, {"description": "every lamp"})
    assert (await _stored_doc(b))["subscriptionName"] == "lamps"  # not lost by b's update
    refused = 0

    def counting(stage: Any) -> Any:
        async def staged(*args: Any, **kwargs: Any) -> Any:
            nonlocal refused
            try:
                return await stage(*args, **kwargs)
            except StaleWrite:
                refused += 1
                raise

        return staged

    for worker in workers:
        worker.store.stage = counting(worker.store.stage)  # type: ignore[method-assign]
    n = 12
    await asyncio.gather(*(job for i in range(n) for job in (
        a.update(None, SUB, {"subscriptionName": f"a{i}", "throttling": i + 1}),
        b.update(None, SUB, {"description": f"b{i}", "q": f"count>{i}"}))))
    for manager in (a, b):
        doc = await _stored_doc(manager)
        # the last update of each worker, with the other's members kept
        assert doc["subscriptionName"] in {f"a{i}" for i in range(n)}
        assert doc["throttling"] == int(doc["subscriptionName"][1:]) + 1
        assert doc["description"] in {f"b{i}" for i in range(n)}
        assert doc["q"] == f"count>{doc['description'][1:]}"
    assert refused > 0  # the two workers did race (else the test proves nothing)


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


async def test_a_reader_that_renews_its_claims_keeps_its_rows(workers: list[Worker]) -> None:
    a, b = workers
    a.store.outbox_lease_s = 0.4  # type: ignore[attr-defined]
    busy, other = await a.store.outbox_reader(None), await b.store.outbox_reader(None)
    assert busy.lease_s == 0.4
    await a.store.write(None, [], [_mail(1), _mail(2)])
    one, two = (row.id for row in await busy.fresh(0, 10))
    for _ in range(4):  # 0.8 s in all, two leases: the first row renewed, the other not
        await asyncio.sleep(0.2)
        await busy.renew([one])
        await other.renew([two])  # not its claim: left alone
    assert [row.id for row in await other.due(time.time(), 10)] == [two]
    await asyncio.sleep(0.5)  # no renewal for a whole lease: the row goes to another reader
    assert [row.id for row in await other.due(time.time(), 10)] == [one]


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
