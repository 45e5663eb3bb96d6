"""A real server notifies through the real Mosquitto at 127.0.0.1:1883 (CI starts it; this
test fails, never skips, when it is not running)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import orjson


def test_server_publishes_notifications_to_mqtt(e2e: Any, tmp_path: Path) -> None:
    server = e2e.start_server(tmp_path / "data")
    topic = f"cityvisor-e2e/{uuid.uuid4().hex}"

    async def scenario() -> list[dict[str, Any]]:
        received: list[dict[str, Any]] = []
        async with aiomqtt.Client("127.0.0.1", 1883) as client:
            await client.subscribe(topic, qos=1)
            async with httpx.AsyncClient(base_url=server.api, timeout=10) as http:
                created = await http.post("/subscriptions", json={
                    "type": "Subscription", "entities": [{"type": "Gauge"}],
                    "notification": {"format": "keyValues", "endpoint": {
                        "uri": f"mqtt://127.0.0.1:1883/{topic}",
                        "notifierInfo": [{"key": "MQTT-QoS", "value": "1"}]}}})
                assert created.status_code == 201, created.text
                for n in range(5):
                    response = await http.post("/entities", json={
                        "id": f"urn:ngsi-ld:Gauge:{n}", "type": "Gauge", "level": {"value": n}})
                    assert response.status_code == 201
            async with asyncio.timeout(15):
                async for message in client.messages:
                    received.append(orjson.loads(message.payload))
                    if sum(len(m["body"]["data"]) for m in received) == 5:
                        break
        return received

    received = asyncio.run(scenario())
    assert sorted(e["level"] for m in received for e in m["body"]["data"]) == list(range(5))
    assert all(m["metadata"]["Content-Type"] == "application/json" for m in received)
