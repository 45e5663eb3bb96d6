"""MQTT notification binding (GS CIM 009, MQTT binding annex).

The endpoint ``mqtt[s]://[user:password@]host[:port]/topic`` names the broker and the topic.
The MQTT message payload is a JSON object ``{"metadata": {...}, "body": Notification}``:
``metadata`` carries ``Content-Type``, ``Link`` (application/json) and the receiverInfo
key/values (with MQTT 5 they are also sent as user properties). ``notifierInfo`` selects
``MQTT-QoS`` (0, 1, 2; default 0) and ``MQTT-Version`` (``mqtt3.1.1`` default, ``mqtt5.0``).
One connection per (broker, credentials, version) is kept open and reopened after an error.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt
import orjson
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cityvisor.notify.http import notification_headers


def _info(target: dict[str, Any], key: str, default: str) -> str:
    for item in target.get("notifierInfo", ()):
        if item["key"] == key:
            return str(item["value"])
    return default


def mqtt_message(target: dict[str, Any], payload: bytes, tenant: str | None
                 ) -> tuple[bytes, dict[str, str]]:
    """The MQTT payload (metadata + body) and the metadata."""
    metadata = notification_headers(target, tenant)
    return b'{"metadata":' + orjson.dumps(metadata) + b',"body":' + payload + b"}", metadata

LOG = logging.getLogger("cityvisor.notify")


class _Connection:
    def __init__(self, key: tuple[Any, ...]) -> None:
        self.key = key
        self.client: aiomqtt.Client | None = None
        self.lock = asyncio.Lock()

    async def get(self, timeout_s: float) -> aiomqtt.Client:
        async with self.lock:
            if self.client is None:
                scheme, host, port, user, password, version = self.key
                client = aiomqtt.Client(
                    host, port, username=user, password=password,
                    identifier=f"cityvisor-{uuid.uuid4().hex[:12]}",
                    protocol=(aiomqtt.ProtocolVersion.V5 if version == "mqtt5.0"
                              else aiomqtt.ProtocolVersion.V311),
                    tls_context=ssl.create_default_context() if scheme == "mqtts" else None,
                    timeout=timeout_s, keepalive=30)
                await asyncio.wait_for(client.__aenter__(), timeout_s)
                self.client = client
            return self.client

    async def drop(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                await asyncio.wait_for(client.__aexit__(None, None, None), 2.0)
            except Exception as error:  # the connection is dropped anyway
                LOG.warning("closing an MQTT connection failed: %r", error)


class MqttSender:
    def __init__(self, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s
        self._connections: dict[tuple[Any, ...], _Connection] = {}

    async def send(self, target: dict[str, Any], payload: bytes, tenant: str | None) -> None:
        parts = urlsplit(target["uri"])
        version = _info(target, "MQTT-Version", "mqtt3.1.1")
        key = (parts.scheme, parts.hostname, parts.port or (8883 if parts.scheme == "mqtts"
                                                            else 1883),
               unquote(parts.username) if parts.username else None,
               unquote(parts.password) if parts.password else None, version)
        connection = self._connections.get(key)
        if connection is None:
            connection = self._connections[key] = _Connection(key)
        message, metadata = mqtt_message(target, payload, tenant)
        properties = None
        if version == "mqtt5.0":
            properties = Properties(PacketTypes.PUBLISH)
            properties.UserProperty = list(metadata.items())
            properties.ContentType = metadata["Content-Type"]
        try:
            client = await connection.get(self.timeout_s)
            await client.publish(parts.path.lstrip("/"), message,
                                 qos=int(_info(target, "MQTT-QoS", "0")),
                                 properties=properties, timeout=self.timeout_s)
        except Exception:
            await connection.drop()
            raise

    async def close(self) -> None:
        for connection in self._connections.values():
            await connection.drop()
        self._connections.clear()
