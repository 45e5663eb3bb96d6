"""The flood app while it runs: a cycle every ``cycle_minutes`` until it is closed.

:class:`FloodApp` wraps a :class:`~cityvisor.apps.flood.coordinator.FloodCoordinator` (which
runs one cycle) in the run loop: ``start()`` starts the loop as a task of the running event
loop, ``close()`` stops it; it is the :class:`~cityvisor.apps.contract.RunningApp` that
:func:`cityvisor.apps.flood.setup` gives the host. ``cityvisor flood run`` drives the same
object from its own process (``run_cycle`` once, or ``run_forever``).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from pathlib import Path

from cityvisor.apps.flood.config import FloodConfig
from cityvisor.apps.flood.const import LIVE_PROVIDER, LOG
from cityvisor.apps.flood.coordinator import FloodCoordinator
from cityvisor.apps.flood.models import Clock, CycleReport
from cityvisor.apps.flood.sources import RadarSource
from cityvisor.apps.flood.state import FloodState
from cityvisor.client import ContextClient
from cityvisor.ngsild.time import format_utc_seconds, utc_now

__all__ = ["FloodApp"]


class FloodApp:
    """The flood early-warning app on one tenant (the cycle: :mod:`.coordinator`).

    The arguments are the coordinator's (``client``, ``config``, ``radar``, ``clock``,
    ``data_dir``, ``data_provider``) and ``cycle_interval_s``: seconds between cycles
    (default: the config's ``cycle_minutes``; the storm scenario runs faster).
    """

    def __init__(self, client: ContextClient, config: FloodConfig,
                 radar: RadarSource | None = None, clock: Clock = utc_now, *,
                 data_dir: str | Path | None = None, data_provider: str = LIVE_PROVIDER,
                 cycle_interval_s: float | None = None) -> None:
        self.config = config
        self.coordinator = FloodCoordinator(client, config, radar, clock, data_dir=data_dir,
                                            data_provider=data_provider)
        self.cycle_interval_s = cycle_interval_s or config.cycle_seconds
        #: set after each cycle of run_forever (tests and supervisors await it)
        self.cycle_done = asyncio.Event()
        self.last_report: CycleReport | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def state(self) -> FloodState:
        """Forecasters, vigilance, alert levels and gauge histories (saved after each cycle)."""
        return self.coordinator.state

    @property
    def state_path(self) -> Path | None:
        """The state file (None: the state is kept in memory only)."""
        return self.coordinator.state_path

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The run loop's task once :meth:`start` was called."""
        return self._task

    async def run_cycle(self, now: datetime | None = None) -> CycleReport:
        """Run one cycle at ``now`` (default: the clock), write its results, keep its report."""
        report = self.last_report = await self.coordinator.run_cycle(now)
        return report

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Cycle every ``cycle_interval_s`` until ``stop`` is set.

        A cycle that fails as a whole (each source's failure is already reported inside the
        cycle, so this is a bug) is logged with its traceback, and the next one runs on time:
        a warning service must not stop on one bad cycle.
        """
        while not stop.is_set():
            try:
                report = await self.run_cycle()
                LOG.info("flood cycle %s: %s", format_utc_seconds(report.issued_at),
                         {s: p.level for s, p in report.points.items()})
            except Exception:
                LOG.exception("flood cycle failed")
            self.cycle_done.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.cycle_interval_s)

    def start(self) -> None:
        """Run the loop as a task of the running event loop (until :meth:`close`)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self.run_forever(self._stop), name="cityvisor-flood")

    async def close(self) -> None:
        """Stop the loop (the cycle in progress finishes first)."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
