"""One watchdog check (:meth:`Watchdog.check`), and the loop that repeats it.

A check reads every watched entity, and for each one whose last report is older than
``max_silence_minutes`` raises its Alert (once per episode); when an alerted entity reports
again, it closes the Alert. Which alerts are open is read back from the broker at the first
check, so a restart neither repeats nor forgets them. A broker failure is one
:class:`WatchdogUpdateFailed`: the check stops there and the next one runs on time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from cityvisor.apps.watchdog.config import WatchdogConfig
from cityvisor.apps.watchdog.const import ALERT_CONTEXT, LOG, PAGE, SUBCATEGORY
from cityvisor.apps.watchdog.entities import Entity, cleared_alert, last_report, silent_alert
from cityvisor.client import ContextClient
from cityvisor.ngsild.context import sdm_context
from cityvisor.ngsild.errors import NgsiLdError, NonexistentTenant, ResourceNotFound
from cityvisor.ngsild.model import NULL
from cityvisor.ngsild.time import utc_now


class WatchdogUpdateFailed(Exception):
    """The broker refused a request or could not be reached (``__cause__`` says how)."""


@dataclass
class CheckReport:
    raised: list[str] = field(default_factory=list)  # ids of the devices that went silent
    cleared: list[str] = field(default_factory=list)  # ... and of those that came back


class Watchdog:
    """The watchdog on one tenant; a :class:`~cityvisor.apps.contract.RunningApp` once
    :meth:`start` ran."""

    def __init__(self, client: ContextClient, config: WatchdogConfig,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.config = config
        self.clock = clock
        self.alerts = client.with_context(ALERT_CONTEXT)
        self.sources = [(w.type, client.with_context(sdm_context(w.domain))) for w in config.watch]
        self.open: set[str] | None = None  # alert sources with an open alert (None: not read)
        self.checked = asyncio.Event()  # set after each check of the loop
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def check(self, now: datetime | None = None) -> CheckReport:
        now = now or self.clock()
        try:
            if self.open is None:
                alerts = await self._all(self.alerts, "Alert", f'subCategory=="{SUBCATEGORY}"')
                self.open = {a["alertSource"]["object"] for a in alerts if "validTo" not in a}
            report = CheckReport()
            for type_name, client in self.sources:
                for device in await self._all(client, type_name):
                    last = last_report(device)
                    if last is None:
                        continue  # says nothing about when it reported: not judged
                    silent = now - last > self.config.max_silence
                    if silent and device["id"] not in self.open:
                        await self._upsert(silent_alert(device, last, now,
                                                        self.config.max_silence))
                        self.open.add(device["id"])
                        report.raised.append(device["id"])
                    elif not silent and device["id"] in self.open:
                        await self._upsert(cleared_alert(device, now))
                        self.open.discard(device["id"])
                        report.cleared.append(device["id"])
        except (NgsiLdError, OSError) as error:
            raise WatchdogUpdateFailed(str(error)) from error
        return report

    async def _all(self, client: ContextClient, type_name: str, q: str | None = None
                   ) -> list[Entity]:
        found: list[Entity] = []
        with contextlib.suppress(NonexistentTenant):  # an empty tenant holds nothing
            while True:
                page = await client.query_entities(type=type_name, q=q, limit=PAGE,
                                                   offset=len(found))
                found += page
                if len(page) < PAGE:
                    break
        return found

    async def _upsert(self, alert: Entity) -> None:
        try:
            await self.alerts.merge_entity(alert["id"], {k: v for k, v in alert.items()
                                                         if k not in ("id", "type")})
        except ResourceNotFound:  # its first alert
            await self.alerts.create_entity({k: v for k, v in alert.items() if v != NULL})

    async def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                report = await self.check()
                if report.raised or report.cleared:
                    LOG.info("watchdog: silent %s, back %s", report.raised, report.cleared)
            except WatchdogUpdateFailed as error:
                LOG.warning("watchdog check failed: %s", error)
            self.checked.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.config.interval_seconds)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run_forever(),
                                                            name="cityvisor-watchdog")

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
