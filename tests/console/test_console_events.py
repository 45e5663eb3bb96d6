"""Live events: the hub costs nothing until a console listens, then reports each committed
change (once, and never one that was refused or failed to commit)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from pathlib import Path

import pytest
from console_seed import ALERTS, LIGHTS, alert, streetlights
from support.backends import BACKENDS, services_on

from cityvisor.config import Settings
from cityvisor.console import layers
from cityvisor.console.events import EventHub
from cityvisor.services import Services
from cityvisor.store.base import StaleWrite, WriteOp

pytestmark = pytest.mark.anyio

LAMP = "urn:ngsi-ld:Streetlight:test:1"


async def _constant(value: bool) -> bool:
    return value


async def test_changes_reach_listeners_of_the_tenant_only(tmp_path: Path) -> None:
    services = Services.build(Settings(data_dir=tmp_path, auth=False, allow_context_fetch=False))
    await services.start()
    try:
        hub = EventHub(services)
        before = list(services.broker.listeners)
        await services.broker.batch_upsert("nimes", [LIGHTS], streetlights())
        assert not services.broker.observers  # nobody listens: nothing installed
        listener = hub.subscribe("nimes")
        other = hub.subscribe("ales")
        # the hub observes committed batches; it is no listener (those see staged batches)
        assert services.broker.observers == [hub.on_committed]
        assert services.broker.listeners == before
        await services.broker.update_attribute(
            "nimes", [LIGHTS], "urn:ngsi-ld:Streetlight:test:1", "status",
            {"type": "Property", "value": "columnIssue"})
        events = await asyncio.wait_for(listener.queue.get(), 5)
        assert events == [{"type": "Streetlight", "kind": "streetlights",
                           "id": "urn:ngsi-ld:Streetlight:test:1", "lon": 4.36, "lat": 43.84,
                           "state": "faulty", "value": 1.0}]
        assert other.queue.empty()
        await services.broker.batch_upsert("nimes", [ALERTS], [alert("c", "critical", "2026-11-27T08:00:00Z")])
        (created,) = await asyncio.wait_for(listener.queue.get(), 5)
        assert created["alert"] is True and created["critical"] is True
        await services.broker.update_attribute(
            "nimes", [ALERTS], "urn:ngsi-ld:Alert:test:c", "description",
            {"type": "Property", "value": "mise à jour"})
        (updated,) = await asyncio.wait_for(listener.queue.get(), 5)
        assert updated["critical"] is False  # still the same critical alert: no new signal
        await services.broker.delete_entity("nimes", "urn:ngsi-ld:Streetlight:test:2")
        (deleted,) = await asyncio.wait_for(listener.queue.get(), 5)
        assert deleted == {"id": "urn:ngsi-ld:Streetlight:test:2", "type": "Streetlight",
                           "deleted": True, "kinds": ["streetlights"]}
        hub.unsubscribe(listener)
        hub.unsubscribe(other)
    finally:
        await services.close()


async def test_stream_sends_batches_and_resyncs_a_slow_console(tmp_path: Path) -> None:
    services = Services.build(Settings(data_dir=tmp_path, auth=False, allow_context_fetch=False))
    hub = EventHub(services)
    listener = hub.subscribe(None)
    stream = hub.stream(listener, heartbeat_s=0.05)
    assert (await anext(stream)).startswith(b"retry:")
    assert await anext(stream) == b": keep-alive\n\n"
    hub.publish(None, [{"id": "a"}])
    hub.publish(None, [{"id": "b"}])
    assert await anext(stream) == b'data: [{"id":"a"},{"id":"b"}]\n\n'
    listener.overflowed = True
    assert (await anext(stream)).startswith(b"event: resync")
    await stream.aclose()
    assert listener not in hub.listeners
    # a revoked token ends the stream at the next heartbeat
    allowed = [True]
    revocable = hub.stream(hub.subscribe(None), heartbeat_s=0.02, still_allowed=lambda: _constant(allowed[0]))
    await anext(revocable)
    assert await anext(revocable) == b": keep-alive\n\n"
    allowed[0] = False
    assert (await anext(revocable)).startswith(b"event: signedout")
    with pytest.raises(StopAsyncIteration):
        await anext(revocable)
    assert not hub.listeners
    await services.close()


async def test_layers_stay_live_in_memory_while_consoles_watch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    services = Services.build(Settings(data_dir=tmp_path, auth=False, allow_context_fetch=False))
    await services.start()
    try:
        await services.broker.batch_upsert("nimes", [LIGHTS], streetlights())
        hub = EventHub(services)
        kind = layers.KINDS["streetlights"]
        builds: list[int] = []
        real_build = layers.build_layer

        async def counted_build(*args: object) -> dict[str, object]:
            builds.append(1)
            snapshot = await real_build(*args)  # type: ignore[arg-type]
            if len(builds) == 1:  # a change lands while the layer is being built
                await services.broker.update_attribute(
                    "nimes", [LIGHTS], "urn:ngsi-ld:Streetlight:test:1", "powerState",
                    {"type": "Property", "value": "off"})
            return snapshot

        monkeypatch.setattr(layers, "build_layer", counted_build)
        listener = hub.subscribe("nimes")
        first, second = await asyncio.gather(hub.cache.get("nimes", kind),
                                             hub.cache.get("nimes", kind))
        assert len(builds) == 1  # concurrent requests share one build
        states = dict(zip(first["ids"], first["state"], strict=True))
        assert states["urn:ngsi-ld:Streetlight:test:1"] == "off"  # replayed on the snapshot
        await services.broker.delete_entity("nimes", "urn:ngsi-ld:Streetlight:test:2")
        await services.broker.batch_upsert("nimes", [LIGHTS], [{
            "id": "urn:ngsi-ld:Streetlight:test:9", "type": "Streetlight",
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [4.4, 43.9]}},
            "status": {"type": "Property", "value": "brokenLantern"}}])
        cached = await hub.cache.get("nimes", kind)
        assert len(builds) == 1  # served from memory
        states = dict(zip(cached["ids"], cached["state"], strict=True))
        assert "urn:ngsi-ld:Streetlight:test:2" not in states
        assert states["urn:ngsi-ld:Streetlight:test:9"] == "faulty"
        assert cached["count"] == 4 and len(cached["lon"]) == 4
        hub.unsubscribe(listener)  # nobody watches: the layers are dropped
        assert not hub.cache.layers
        await hub.cache.get("nimes", kind)
        assert len(builds) == 2 and not hub.cache.layers
    finally:
        await services.close()


async def test_a_failing_shelving_sweep_is_logged_counted_and_spares_the_others(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    services = Services.build(Settings(data_dir=tmp_path, auth=False, allow_context_fetch=False))
    try:
        hub = EventHub(services)
        swept: list[str | None] = []

        async def expire_shelving(services: Services, tenant: str | None) -> int:
            swept.append(tenant)
            if tenant == "broken":
                raise RuntimeError("alert store unreadable")
            return 0

        monkeypatch.setattr("cityvisor.console.alarms.expire_shelving", expire_shelving)
        with caplog.at_level("WARNING", logger="cityvisor.console.events"):
            await hub.sweep_tenant("broken")
            await hub.sweep_tenant("nimes")
        assert swept == ["broken", "nimes"] and hub.sweep_errors == 1
        (record,) = [r for r in caplog.records if "shelving sweep" in r.getMessage()]
        assert "broken" in record.getMessage() and record.exc_info is not None
    finally:
        await services.close()


@pytest.fixture(params=BACKENDS)
async def services(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Services]:
    settings = Settings(data_dir=tmp_path, auth=False, allow_context_fetch=False)
    async with services_on(request.param, settings, start=True) as built:
        await built.broker.batch_upsert("nimes", [LIGHTS], streetlights())
        yield built


async def _set_status(services: Services, status: str) -> None:
    await services.broker.update_attribute("nimes", [LIGHTS], LAMP, "status",
                                           {"type": "Property", "value": status})


async def _quiet(queue: asyncio.Queue[list[dict[str, object]] | None]) -> bool:
    """Whether nothing more reaches ``queue`` within a few loop turns and a short while."""
    await asyncio.sleep(0.05)
    return queue.empty()


async def test_a_refused_batch_retried_reaches_the_console_once(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = EventHub(services)
    listener = hub.subscribe("nimes")
    store = services.broker.store
    real_stage = store.stage
    refused: list[str | None] = []

    async def stage_refused_once(tenant: str | None, ops: list[WriteOp],
                                 records: Sequence[object] = ()) -> Awaitable[None]:
        if ops and not refused:  # another worker changed the lamp meanwhile: nothing written
            refused.append(tenant)
            raise StaleWrite("Entity changed since it was read")
        return await real_stage(tenant, ops, records)

    monkeypatch.setattr(store, "stage", stage_refused_once)
    await _set_status(services, "columnIssue")
    assert refused == ["nimes"]  # the operation ran twice
    (event,) = await asyncio.wait_for(listener.queue.get(), 5)
    assert event["id"] == LAMP and event["state"] == "faulty"
    assert await _quiet(listener.queue)  # the refused run showed nothing
    hub.unsubscribe(listener)


async def test_a_batch_whose_commit_fails_reaches_no_console(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = EventHub(services)
    listener = hub.subscribe("nimes")
    kind = layers.KINDS["streetlights"]
    await hub.cache.get("nimes", kind)  # the live layer, patched by committed changes only
    store = services.broker.store
    real_stage = store.stage

    async def stage_failing_commit(tenant: str | None, ops: list[WriteOp],
                                   records: Sequence[object] = ()) -> Awaitable[None]:
        durable = await real_stage(tenant, ops, records)
        if not ops:
            return durable

        async def commit() -> None:
            await durable
            raise OSError("disk I/O error")  # the store's contract: the awaitable raises

        return commit()

    monkeypatch.setattr(store, "stage", stage_failing_commit)
    with pytest.raises(OSError, match="disk"):
        await _set_status(services, "columnIssue")
    assert await _quiet(listener.queue)
    states = dict(zip(*(hub.cache.layers["nimes", kind.name].data()[column]
                        for column in ("ids", "state")), strict=True))
    assert states[LAMP] == "on"  # the layer was not patched either
    monkeypatch.undo()
    await _set_status(services, "brokenLantern")  # the next committed change is shown
    (event,) = await asyncio.wait_for(listener.queue.get(), 5)
    assert event["id"] == LAMP and event["state"] == "faulty"
    hub.unsubscribe(listener)
