"""Subscriptions and their delivery with several workers on one PostgreSQL database
(``docs/postgresql.md``, "Several workers"): each worker (a store on a pool of its own, a
broker, the subscriptions and their delivery: ``Notifications``) delivers the notifications it
claimed, and what one worker counts or changes is never overwritten by another."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from support.receiver import Receiver
from support.workers import workers_on_postgres

from cityvisor.broker.subscriptions import SubscriptionManager
from cityvisor.notify import Notifications
from cityvisor.store.base import Store

pytestmark = pytest.mark.anyio


@dataclass
class Delivering:
    store: Store
    notifications: Notifications
    sent: int = 0  # notifications this worker sent (tried)

    @property
    def manager(self) -> SubscriptionManager:
        return self.notifications.manager


@asynccontextmanager
async def two_delivering(lease_s: float | None = None) -> AsyncIterator[list[Delivering]]:
    """Two workers on one namespace, each with its subscriptions and delivery started (their
    outbox claims lasting ``lease_s``, if given)."""
    async with workers_on_postgres(2) as workers:
        found: list[Delivering] = []
        try:
            for worker in workers:
                if lease_s is not None:
                    worker.store.outbox_lease_s = lease_s  # type: ignore[attr-defined]
                notifications = Notifications(worker.store, worker.broker, retry_base_s=0.05,
                                              retry_cap_s=0.2)
                worker.broker.listeners.append(notifications.manager.on_change)
                found.append(_counting(Delivering(worker.store, notifications)))
                await notifications.start()
            yield found
        finally:
            for each in found:
                await each.notifications.close()


@pytest.fixture
async def delivering() -> AsyncIterator[list[Delivering]]:
    async with two_delivering() as found:
        yield found


def _counting(worker: Delivering) -> Delivering:
    """``worker``, counting the notifications its delivery sends."""
    senders = worker.notifications.outbox.senders
    send = senders["http"]

    async def counted(target: dict[str, Any], payload: bytes, tenant: str | None) -> None:
        worker.sent += 1
        await send(target, payload, tenant)

    senders["http"] = counted
    return worker


def _subscription(uri: str) -> dict[str, Any]:
    return {"type": "Subscription", "entities": [{"type": "Lamp"}],
            "notification": {"endpoint": {"uri": uri}}}


def _lamp(n: int) -> dict[str, Any]:
    return {"id": f"urn:ngsi-ld:Lamp:{n}", "type": "Lamp", "level": {"value": n}}


async def _until(condition: Callable[[], Awaitable[bool]], limit_s: float = 20) -> None:
    deadline = time.monotonic() + limit_s
    while not await condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def _delivered(worker: Delivering) -> None:
    """Until the outbox is empty (every outcome, and the status with it, committed)."""
    reader = await worker.store.outbox_reader(None)
    try:
        await _until(lambda: _empty(reader))
    finally:
        await reader.close()


async def _empty(reader: Any) -> bool:
    return int(await reader.pending()) == 0


async def test_the_delivery_figures_of_two_workers_add_up(
        delivering: list[Delivering]) -> None:
    a, b = delivering
    receiver = Receiver(fail=2)
    try:
        sub_id = await a.manager.create(None, None, _subscription(receiver.url))
        await b.manager.reload(None)  # what the change feed does
        n = 20
        for i in range(n):  # each worker notifies (and delivers) the changes it takes
            await (a if i % 2 else b).manager.broker.create_entity(None, None, _lamp(i))
        counts = await asyncio.to_thread(
            receiver.wait_for_ids, {_lamp(i)["id"] for i in range(n)}, 20)
        assert set(counts) == {_lamp(i)["id"] for i in range(n)}
        await _delivered(a)
        assert a.sent and b.sent  # both workers delivered (else the test proves nothing)
        assert a.sent + b.sent == len(receiver.attempts)
        for worker in (a, b):
            status = (await worker.manager.retrieve(None, sub_id))["notification"]
            assert status["timesSent"] == len(receiver.attempts)  # the 2 failures included
            assert status["timesFailed"] == 2
            assert status["status"] == "ok" and status["lastSuccess"] > status["lastFailure"]
        listed = (await b.manager.query(None, 10, 0))[0]
        assert listed[0]["notification"]["timesSent"] == len(receiver.attempts)
    finally:
        receiver.close()


async def test_a_delivery_slower_than_the_lease_keeps_its_row() -> None:
    """The worker delivering a notification renews its claim on the row while the endpoint
    takes its time (three leases here): the other worker never takes it, so it goes once."""
    receiver = Receiver(delay_s=1.5)
    try:
        async with two_delivering(lease_s=0.5) as (a, b):
            sub_id = await a.manager.create(None, None, _subscription(receiver.url))
            await b.manager.reload(None)
            b.notifications.outbox.wake(None)  # b's dispatcher runs (and polls the outbox)
            await a.manager.broker.create_entity(None, None, _lamp(1))
            await _delivered(a)  # the answer came and the row went
            await asyncio.sleep(0.3)  # a duplicate claimed at the last moment: arrived
            assert [entity["id"] for entity in receiver.entities()] == [_lamp(1)["id"]]
            assert a.sent + b.sent == 1
            status = (await b.manager.retrieve(None, sub_id))["notification"]
            assert status["timesSent"] == 1 and status["status"] == "ok"
    finally:
        receiver.close()
