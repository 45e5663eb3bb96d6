"""Subscriptions and notification delivery, wired into ``Services``.

``install(services)`` registers the subscription and outbox tables, adds the subscription
matcher to the broker's change listeners and returns a ``Notifications`` object whose
``start()`` launches the delivery workers and the periodic scheduler (``close()`` stops them).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from cityvisor.broker.subscriptions import SubscriptionManager
from cityvisor.notify.http import HttpSender
from cityvisor.notify.mqtt import MqttSender
from cityvisor.notify.outbox import Outbox, RetryPolicy
from cityvisor.store import sqlite_subscriptions


class Notifications:
    def __init__(self, store: Any, broker: Any, *, clock: Callable[[], float] = time.time,
                 retry_base_s: float = 0.5, retry_cap_s: float = 30.0,
                 timeout_s: float = 5.0, concurrency: int = 8, periodic_s: float = 0.5,
                 poll_s: float = 0.1, batch_max: int = 100) -> None:
        sqlite_subscriptions.register(store)
        self.http = HttpSender(timeout_s)
        self.mqtt = MqttSender(timeout_s)
        self.manager = SubscriptionManager(broker, clock=clock)
        self.outbox = Outbox(store, {"http": self.http.send, "mqtt": self.mqtt.send},
                             self.manager.delivered, clock=clock,
                             policy=RetryPolicy(retry_base_s, retry_cap_s),
                             concurrency=concurrency, poll_s=poll_s, batch_max=batch_max)
        self.manager.wake = self.outbox.wake
        broker.listeners.append(self.manager.on_change)
        self.periodic_s = periodic_s
        self._scheduler: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.manager.load_all()
        await self.outbox.start(self.manager.tenants())
        self._scheduler = asyncio.create_task(self._periodic())

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(self.periodic_s)
            with contextlib.suppress(Exception):
                await self.manager.periodic_tick()

    async def close(self) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler
        await self.outbox.close()
        await self.http.close()
        await self.mqtt.close()


def install(services: Any) -> Notifications:
    settings = services.settings
    return Notifications(services.store, services.broker,
                         retry_base_s=settings.notification_retry_base_s,
                         retry_cap_s=settings.notification_retry_cap_s,
                         timeout_s=settings.notification_timeout_s,
                         concurrency=settings.notification_concurrency,
                         batch_max=settings.notification_batch_max)
