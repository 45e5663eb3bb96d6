"""Delivery through the outbox: a local HTTP receiver that fails then recovers, backoff,
status reporting, endpoint isolation, and MQTT through the real Mosquitto at 127.0.0.1:1883
(CI starts it; these tests fail, never skip, when it is not running)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest
from support.backends import BACKENDS, services_on
from support.receiver import Receiver

from cityvisor.config import Settings
from cityvisor.services import Services

pytestmark = pytest.mark.anyio
MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883




@pytest.fixture(params=BACKENDS)
async def services(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    async with services_on(request.param, Settings(
            data_dir=tmp_path / "d", auth=False, allow_context_fetch=False,
            notification_retry_base_s=0.05, notification_retry_cap_s=0.2),
            start=True) as built:
        yield built


def subscription(uri: str, **notification: Any) -> dict[str, Any]:
    return {"type": "Subscription", "entities": [{"type": "Lamp"}],
            "notification": {"endpoint": {"uri": uri, **notification.pop("endpoint", {})},
                             **notification}}


async def lamp(services: Services, n: int, value: Any, tenant: str | None = None) -> None:
    await services.broker.create_entity(tenant, None, {
        "id": f"urn:ngsi-ld:Lamp:{n}", "type": "Lamp", "level": {"value": value}})


async def test_http_delivery_headers_and_status(services: Services) -> None:
    receiver = Receiver()
    try:
        manager = services.subscriptions.manager
        sub_id = await manager.create("city", None, subscription(receiver.url, endpoint={
            "receiverInfo": [{"key": "X-Token", "value": "s3cret"}]}))
        await lamp(services, 1, 5, "city")
        await receiver.wait_for(1)
        headers, body, _ = receiver.received[0]
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Token"] == "s3cret" and headers["NGSILD-Tenant"] == "city"
        assert "ngsi-ld-core-context" in headers["Link"]
        assert body["subscriptionId"] == sub_id and body["data"][0]["level"]["value"] == 5
        # counted as sent once it went out, before its outcome is known
        assert (await manager.retrieve("city", sub_id))["notification"]["timesSent"] == 1
        for _ in range(100):  # the status is recorded right after the delivery
            status = (await manager.retrieve("city", sub_id))["notification"]
            if status.get("status") == "ok":
                break
            await asyncio.sleep(0.01)
        assert status["status"] == "ok" and status["timesSent"] == 1
        assert "lastSuccess" in status and "lastFailure" not in status
        assert "timesFailed" not in status
    finally:
        receiver.close()


async def test_failing_receiver_recovers_with_backoff(services: Services) -> None:
    receiver = Receiver(fail=3)
    services.subscriptions.outbox.concurrency = 1  # one attempt at a time: visible backoff
    try:
        manager = services.subscriptions.manager
        sub_id = await manager.create(None, None, subscription(receiver.url))
        for n in range(20):
            await lamp(services, n, n)
        await receiver.wait_for(20)
        values = sorted(entity["level"]["value"] for entity in receiver.entities())
        assert values == list(range(20))  # every change, after three failures
        # three failures then a success (the queued changes may then go in one notification)
        assert len(receiver.attempts) >= 4
        gaps = [b - a for a, b in zip(receiver.attempts[:3], receiver.attempts[1:4],
                                      strict=True)]
        assert all(gap >= 0.045 for gap in gaps[:3]), gaps  # base 0.05 s, doubling
        assert gaps[1] >= 0.09 and gaps[2] >= 0.18
        for _ in range(100):
            status = (await manager.retrieve(None, sub_id))["notification"]
            if status["status"] == "ok" and status["timesSent"] == 3 + len(receiver.received):
                break
            await asyncio.sleep(0.01)
        # three failed attempts, then the queued changes (batched once the endpoint is back)
        assert status["status"] == "ok" and status["timesSent"] == 3 + len(receiver.received)
        assert status["timesFailed"] == 3  # each failed attempt (clause 5.2.14)
        assert "lastFailure" in status and "lastSuccess" in status
        outbox = await services.store.outbox_reader(None)
        for _ in range(100):
            if await outbox.pending() == 0:
                break
            await asyncio.sleep(0.01)
        assert await outbox.pending() == 0
        await outbox.close()
    finally:
        receiver.close()


async def test_failed_status_reported_and_down_endpoint_is_isolated(services: Services) -> None:
    receiver = Receiver()
    try:
        manager = services.subscriptions.manager
        dead = await manager.create(None, None, subscription("http://127.0.0.1:9/down"))
        await manager.create(None, None, subscription(receiver.url))
        started = time.monotonic()
        for n in range(50):
            await lamp(services, n, n)
        writes_s = time.monotonic() - started
        await receiver.wait_for(50)
        assert writes_s < 5
        for _ in range(200):
            status = (await manager.retrieve(None, dead))["notification"]
            if status.get("status") == "failed":
                break
            await asyncio.sleep(0.01)
        assert status["status"] == "failed" and "lastFailure" in status
        assert "lastSuccess" not in status
        # deleting the subscription drops its pending notifications
        await manager.delete(None, dead)
        outbox = await services.store.outbox_reader(None)
        waiting = await outbox.fresh(0, 10_000) + await outbox.due(float("inf"), 10_000)
        assert [row for row in waiting if row.subscription == dead] == []
        await outbox.close()
    finally:
        receiver.close()


async def test_paused_subscription_sends_nothing(services: Services) -> None:
    receiver = Receiver()
    try:
        manager = services.subscriptions.manager
        sub_id = await manager.create(None, None, subscription(receiver.url))
        await manager.update(None, sub_id, {"isActive": False})
        await lamp(services, 1, 1)
        await manager.update(None, sub_id, {"isActive": True})
        await lamp(services, 2, 2)
        await receiver.wait_for(1)
        await asyncio.sleep(0.2)
        assert [b["data"][0]["id"] for _, b, _ in receiver.received] == ["urn:ngsi-ld:Lamp:2"]
    finally:
        receiver.close()


async def _mqtt_roundtrip(services: Services, version: str, qos: str) -> None:
    topic = f"cityvisor-test/{uuid.uuid4().hex}"
    protocol = (aiomqtt.ProtocolVersion.V5 if version == "mqtt5.0"
                else aiomqtt.ProtocolVersion.V311)
    async with aiomqtt.Client(MQTT_HOST, MQTT_PORT, protocol=protocol) as client:
        await client.subscribe(topic, qos=1)
        await services.subscriptions.manager.create(None, None, subscription(
            f"mqtt://{MQTT_HOST}:{MQTT_PORT}/{topic}", endpoint={
                "receiverInfo": [{"key": "X-Site", "value": "nimes"}],
                "notifierInfo": [{"key": "MQTT-QoS", "value": qos},
                                 {"key": "MQTT-Version", "value": version}]}))
        await lamp(services, 1, 42)
        async with asyncio.timeout(10):
            message = await anext(aiter(client.messages))
    payload = orjson.loads(message.payload)
    assert set(payload) == {"metadata", "body"}
    assert payload["metadata"]["Content-Type"] == "application/json"
    assert payload["metadata"]["X-Site"] == "nimes" and "Link" in payload["metadata"]
    assert payload["body"]["type"] == "Notification"
    assert payload["body"]["data"][0]["level"]["value"] == 42
    if version == "mqtt5.0":
        assert ("X-Site", "nimes") in message.properties.UserProperty


async def test_mqtt_delivery_v311(services: Services) -> None:
    await _mqtt_roundtrip(services, "mqtt3.1.1", "1")


async def test_mqtt_delivery_v5(services: Services) -> None:
    await _mqtt_roundtrip(services, "mqtt5.0", "0")


async def test_changes_queued_behind_a_slow_endpoint_are_batched_in_order(
        services: Services) -> None:
    """Deliveries that fall behind carry several changes per notification, in order, with no
    change lost or repeated; ``notification_batch_max`` bounds the batch."""
    receiver = Receiver(fail=1)  # the first attempt fails: the next changes queue up
    services.subscriptions.outbox.concurrency = 1
    for dispatcher in services.subscriptions.outbox.dispatchers.values():
        dispatcher.batch_max = 4
    services.subscriptions.outbox.batch_max = 4
    try:
        await services.subscriptions.manager.create(None, None, subscription(receiver.url))
        for n in range(10):
            await lamp(services, n, n)
        await receiver.wait_for(10)
        values = [entity["level"]["value"] for entity in receiver.entities()]
        assert sorted(values) == list(range(10)) and len(values) == 10
        assert max(len(body["data"]) for _, body, _ in receiver.received) > 1
        assert all(len(body["data"]) <= 4 for _, body, _ in receiver.received)
        for _, body, _ in receiver.received:  # within a notification, in the changes' order
            levels = [entity["level"]["value"] for entity in body["data"]]
            assert levels == sorted(levels)
    finally:
        receiver.close()


async def test_notification_held_back_by_a_failing_endpoint_is_reported_failed(
        tmp_path: Path) -> None:
    """While an endpoint is blocked after a failure, a notification for it is not attempted,
    yet its subscription tells at once that it could not be sent (clause 5.2.14 status,
    lastFailure), without counting a sending (timesSent) nor a failure (timesFailed)."""
    services = Services.build(Settings(
        data_dir=tmp_path / "d", auth=False, allow_context_fetch=False,
        notification_retry_base_s=30, notification_retry_cap_s=30))
    await services.start()
    try:
        manager = services.subscriptions.manager
        first = await manager.create(None, None, subscription("http://127.0.0.1:9/down"))
        await lamp(services, 1, 1)
        for _ in range(300):
            if (await manager.retrieve(None, first))["notification"].get("status") == "failed":
                break
            await asyncio.sleep(0.01)
        second = await manager.create(None, None, subscription("http://127.0.0.1:9/down"))
        await services.broker.create_entity(None, None, {
            "id": "urn:ngsi-ld:Lamp:2", "type": "Lamp", "level": {"value": 2}})
        for _ in range(300):
            status = (await manager.retrieve(None, second))["notification"]
            if status.get("status") == "failed":
                break
            await asyncio.sleep(0.01)
        assert status["status"] == "failed" and "lastFailure" in status
        assert "timesSent" not in status and "lastNotification" not in status
        assert "timesFailed" not in status
        assert (await manager.retrieve(None, first))["notification"]["timesFailed"] == 1
    finally:
        await services.close()
