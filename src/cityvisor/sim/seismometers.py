"""Seismometers (``Device`` with ``controlledProperty`` ``vibration``): a quiet background.

Each station reports once a minute (own phase) the peak ground acceleration of the last minute
(``peakGroundAcceleration``, m/s², our addition, see docs/data-contracts.md): ambient noise of a
few 10⁻⁴ m/s², about twice as high in the day (traffic, "cultural noise") as at night, plus
``dateLastValueReported`` and a ``batteryLevel`` drifting slowly (solar-buffered). Earthquakes
are not simulated here: the seismic app (later) injects and detects events.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from cityvisor.ngsild.build import date_time, observed
from cityvisor.ngsild.time import format_utc_seconds
from cityvisor.sim.nimes import Batch, Entity
from cityvisor.sim.population import Population

PARIS = ZoneInfo("Europe/Paris")
REPORT_INTERVAL_S = 60.0
NIGHT_PGA = 1.5e-4  # m/s²


class SeismometerSimulator(Population):
    """The seismometers of a city description (``Device`` entities sensing ``vibration``)."""

    name = "seismometers"

    def __init__(self, city: Sequence[Batch], *, seed: int = 1988, period_s: float = 10.0,
                 report_interval_s: float = REPORT_INTERVAL_S) -> None:
        super().__init__(
            city, "Device", seed=seed, stream=113, period_s=period_s,
            report_interval_s=report_interval_s,
            where=lambda d: "vibration" in (d.get("controlledProperty", {}).get("value") or []),
            missing="the city has no seismometer (Device sensing vibration)")
        n = len(self.ids)
        self.site = self._rng.lognormal(0, 0.4, n)  # site amplification / local noise
        self.phases = self.draw_phases()
        self.battery = np.array([float(d.get("batteryLevel", {}).get("value", 0.9))
                                 for d in self.entities])

    def _reports(self, indexes: list[int], now: datetime) -> list[Entity]:
        hour = now.astimezone(PARIS).hour
        day_factor = 2.0 if 7 <= hour < 21 else 1.0
        at = format_utc_seconds(now)
        out = []
        for i in indexes:
            pga = NIGHT_PGA * day_factor * self.site[i] * float(self._rng.lognormal(0, 0.25))
            sun = 6 <= hour < 19
            drift = 0.00002 if sun else -0.00001
            self.battery[i] = float(np.clip(self.battery[i] + drift, 0.2, 1.0))
            out.append({"id": self.ids[i], "type": "Device",
                        "peakGroundAcceleration": observed(float(f"{pga:.3g}"), at, unit="MSK"),
                        "batteryLevel": observed(round(float(self.battery[i]), 3), at, unit="C62"),
                        "dateLastValueReported": date_time(at)})
        return out

    def initial(self, now: datetime) -> list[Batch]:
        self._prev = now
        reports = self._reports(list(range(len(self.ids))), now)
        return [(self.context, [{**d, **r} for d, r in zip(self.entities, reports, strict=True)])]

    def tick(self, now: datetime) -> list[Batch]:
        a, b = self.window(now)
        due = self.phases.due(a, b).tolist()
        return [(self.context, self._reports(due, now))] if due else []


__all__ = ["SeismometerSimulator"]
