"""``EntityBroker.observers``: every committed batch, whichever worker wrote it, told once and
in order, never failing the write; with no observer (and no change feed) a write pays nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from pathlib import Path

import pytest
from support.backends import BACKENDS, services_on

from cityvisor.broker.changes import Change, EntitiesChanged, Resync
from cityvisor.config import Settings
from cityvisor.services import Services
from cityvisor.store.base import WriteOp

pytestmark = pytest.mark.anyio

LAMP = "urn:ngsi-ld:Streetlight:observed:1"
COUNT = "https://uri.etsi.org/ngsi-ld/default-context/count"  # a term of no @context


@pytest.fixture(params=BACKENDS)
async def services(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Services]:
    settings = Settings(data_dir=tmp_path, auth=False, allow_context_fetch=False)
    async with services_on(request.param, settings) as built:
        yield built


def _count(op: WriteOp) -> int:
    assert op.new is not None
    return int(op.new["attrs"][COUNT][0]["value"])


async def _create(services: Services) -> None:
    await services.broker.create_entity(None, None, {
        "id": LAMP, "type": "Streetlight", "count": {"type": "Property", "value": 0}})


async def _set_count(services: Services, value: int) -> None:
    await services.broker.update_attribute(None, None, LAMP, "count",
                                           {"type": "Property", "value": value})


async def test_nobody_observing_costs_a_write_nothing(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = services.broker
    assert broker.on_commit is None and not broker.observers  # one worker, no console

    def no_wait(*args: object) -> None:
        raise AssertionError("a write waited for its commit to tell nobody")

    monkeypatch.setattr(broker, "_committed", no_wait)
    await _create(services)
    monkeypatch.undo()
    heard: list[EntitiesChanged | Resync] = []

    async def observer(change: EntitiesChanged | Resync) -> None:
        heard.append(change)

    broker.observers.append(observer)
    await _set_count(services, 1)
    (change,) = heard  # told before the write returned
    assert isinstance(change, EntitiesChanged) and change.tenant is None
    assert [_count(op) for op in change.ops] == [1]


async def test_a_failing_observer_or_feed_is_logged_and_never_fails_the_write(
        services: Services, caplog: pytest.LogCaptureFixture) -> None:
    broker = services.broker
    heard: list[EntitiesChanged | Resync] = []

    async def failing(change: EntitiesChanged | Resync) -> None:
        raise RuntimeError("view out of order")

    async def observer(change: EntitiesChanged | Resync) -> None:
        heard.append(change)

    def failing_feed(change: Change) -> None:
        raise RuntimeError("feed out of order")

    broker.observers.extend([failing, observer])
    broker.on_commit = failing_feed
    with caplog.at_level("ERROR", logger="cityvisor.broker.entities"):
        await _create(services)  # durable: reported as written
        remote = EntitiesChanged("elsewhere", ())
        await broker.observe(remote)  # a batch of another worker: the same path
        await broker.observe(Resync("test"))
    assert await broker.store.get(None, LAMP) is not None
    assert len(heard) == 3 and heard[1:] == [remote, Resync("test")]
    messages = [record.getMessage() for record in caplog.records]
    assert sum("observer" in m for m in messages) == 3
    assert sum("change feed" in m for m in messages) == 1
    assert all(record.exc_info is not None for record in caplog.records)


async def test_observers_hear_the_batches_in_the_order_they_were_staged(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = services.broker
    await _create(services)
    store = broker.store
    real_stage = store.stage
    staged: list[int] = []
    heard: list[int] = []

    async def stage(tenant: str | None, ops: list[WriteOp],
                    records: Sequence[object] = ()) -> Awaitable[None]:
        durable = await real_stage(tenant, ops, records)  # may refuse: not staged then
        staged.extend(_count(op) for op in ops)  # under the tenant's lock: the write order
        return durable

    async def slow_observer(change: EntitiesChanged | Resync) -> None:
        assert isinstance(change, EntitiesChanged)
        (value,) = [_count(op) for op in change.ops]
        await asyncio.sleep(0.001 * (3 - value % 3))  # later batches would overtake
        heard.append(value)

    monkeypatch.setattr(store, "stage", stage)
    broker.observers.append(slow_observer)
    await asyncio.gather(*(_set_count(services, value) for value in range(1, 13)))
    assert sorted(heard) == list(range(1, 13))  # each batch once
    assert heard == staged
    stored = await store.get(None, LAMP)
    assert stored is not None and stored["attrs"][COUNT][0]["value"] == heard[-1]
