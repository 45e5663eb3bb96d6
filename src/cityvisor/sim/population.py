"""A population of simulated devices of one entity type, and when each of them reports.

:class:`Population` is the common start of a device simulator (streetlights, traffic counters,
EV chargers, waste containers, seismometers): it finds its entities in the city description,
keeps their ``@context`` and ids, its tick period, the report interval and the nominal rate
(reports per simulated second, for the demo banner), its seeded random stream, and the
simulated time of its previous tick (:meth:`Population.window`).

:class:`ReportPhases` answers "which devices report in (a, b]?" for devices that each report
every ``interval_s`` seconds at their own phase, in O(log n + reports) per tick.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import numpy as np

from cityvisor.sim.live import entities_of
from cityvisor.sim.nimes import Batch, Entity


class ReportPhases:
    """Devices reporting every ``interval_s`` seconds, device ``i`` at epoch times
    ``phase[i] + k * interval_s``."""

    def __init__(self, phase: np.ndarray, interval_s: float) -> None:
        self.phase = np.asarray(phase, dtype=float)
        self.interval_s = float(interval_s)
        self._by_phase = np.argsort(self.phase)
        self._sorted = self.phase[self._by_phase]

    def due(self, a: float, b: float) -> np.ndarray:
        """Indexes (ascending) of the devices with a report in the epoch interval (a, b]."""
        span = b - a
        if span <= 0:
            return np.empty(0, dtype=np.int64)
        if span >= self.interval_s:
            return np.arange(len(self.phase))
        lo = np.searchsorted(self._sorted, a % self.interval_s, side="right")
        hi = np.searchsorted(self._sorted, b % self.interval_s, side="right")
        if a % self.interval_s < b % self.interval_s:
            picked = self._by_phase[lo:hi]
        else:  # the window wraps around the interval
            picked = np.concatenate([self._by_phase[lo:], self._by_phase[:hi]])
        return np.sort(picked)


class Population:
    """Base of a simulator of the ``entity_type`` entities of a city description (those for
    which ``where`` is true, if given). Raises ``ValueError`` (``missing``, or "the city has
    no <type> entity") when there is none.

    ``seed`` and ``stream`` seed :attr:`rng` (``default_rng([seed, stream])``: one stream per
    simulator, so adding draws to one never changes another's)."""

    name: str

    def __init__(self, city: Sequence[Batch], entity_type: str, *, seed: int, stream: int,
                 period_s: float, report_interval_s: float,
                 where: Callable[[Entity], bool] | None = None, missing: str = "") -> None:
        self.context, entities = entities_of(city, entity_type)
        if where is not None:
            entities = [e for e in entities if where(e)]
        if not entities:
            raise ValueError(missing or f"the city has no {entity_type} entity")
        self.entities = entities
        self.ids = [e["id"] for e in entities]
        self.period_s = float(period_s)
        self.report_interval_s = float(report_interval_s)
        self.nominal_rate = len(entities) / self.report_interval_s
        self._rng = np.random.default_rng([seed, stream])
        self._prev: datetime | None = None

    def draw_phases(self) -> ReportPhases:
        """Each device's own report phase, drawn uniformly in the report interval (the next
        draw of :attr:`_rng`: call it where the simulator's draws are reproducible)."""
        return ReportPhases(self._rng.uniform(0, self.report_interval_s, len(self.ids)),
                            self.report_interval_s)

    def window(self, now: datetime) -> tuple[float, float]:
        """The epoch seconds (previous tick, ``now``) this tick covers (one period back for a
        first tick without ``initial``), and remember ``now`` as the previous tick."""
        prev = self._prev or now - timedelta(seconds=self.period_s)
        self._prev = now
        return prev.timestamp(), now.timestamp()


__all__ = ["Population", "ReportPhases"]
