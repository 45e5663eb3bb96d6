"""Subscriptions and notification delivery, wired into ``Services``.

``Notifications`` holds the subscription manager (whose ``on_change`` the composition root
adds to the broker's change listeners) and the delivery workers; ``start()`` launches them and
the periodic scheduler, ``close()`` stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from cityvisor.broker.entities import EntityBroker
from cityvisor.broker.subscriptions import SubscriptionManager, delivery_status
from cityvisor.notify.http import HttpSender
from cityvisor.notify.mqtt import MqttSender
from cityvisor.notify.outbox import Outbox, RetryPolicy
from cityvisor.store.base import Store

LOG = logging.getLogger("cityvisor.notify")


class Notifications:
    """Subscriptions and their delivery for every tenant."""

    def __init__(self, store: Store, broker: EntityBroker, *,
                 clock: Callable[[], float] = time.time,
                 retry_base_s: float = 0.5, retry_cap_s: float = 30.0,
                 timeout_s: float = 5.0, concurrency: int = 8, periodic_s: float = 0.5,
                 poll_s: float = 0.1, batch_max: int = 100) -> None:
        self.store = store
        self.http = HttpSender(timeout_s)
        self.mqtt = MqttSender(timeout_s)
        self.manager = SubscriptionManager(broker, clock=clock)
        self.outbox = Outbox(store, {"http": self.http.send, "mqtt": self.mqtt.send},
                             delivery_status, clock=clock,
                             policy=RetryPolicy(retry_base_s, retry_cap_s),
                             concurrency=concurrency, poll_s=poll_s, batch_max=batch_max)
        self.manager.wake = self.outbox.wake
        self.manager.settle = self.outbox.settled
        self.periodic_s = periodic_s
        #: periodic ticks that failed (each logged)
        self.failed_ticks = 0
        self._scheduler: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.manager.load_all()
        await self.outbox.start(self.manager.tenants())
        self._scheduler = asyncio.create_task(self._periodic())

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(self.periodic_s)
            try:
                if await self.store.leader("periodic-notifications"):  # one worker for all
                    await self.manager.periodic_tick()
            except Exception:  # keep the schedule: the next tick retries
                self.failed_ticks += 1
                LOG.exception("periodic notifications failed")

    async def close(self) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler
        await self.outbox.close()
        await self.http.close()
        await self.mqtt.close()
