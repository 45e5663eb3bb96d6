"""Seismometers (``Device`` with ``controlledProperty`` ``vibration``): a quiet background.

Each station reports once a minute (own phase) the peak ground acceleration of the last minute
(``peakGroundAcceleration``, m/s², our addition, see docs/data-contracts.md): ambient noise of a
few 10⁻⁴ m/s², about twice as high in the day (traffic, "cultural noise") as at night, plus
``dateLastValueReported`` and a ``batteryLevel`` drifting slowly (solar-buffered). Earthquakes
are not simulated here: the seismic app (later) injects and detects events.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from cityvisor.sim.live import date_time, entities_of, iso, observed
from cityvisor.sim.nimes import Batch, Entity

PARIS = ZoneInfo("Europe/Paris")
REPORT_INTERVAL_S = 60.0
NIGHT_PGA = 1.5e-4  # m/s²


class SeismometerSimulator:
    """The seismometers of a city description (``Device`` entities sensing ``vibration``)."""

    name = "seismometers"

    def __init__(self, city: Sequence[Batch], *, seed: int = 1988, period_s: float = 10.0,
                 report_interval_s: float = REPORT_INTERVAL_S) -> None:
        self.context, devices = entities_of(city, "Device")
        devices = [d for d in devices
                   if "vibration" in (d.get("controlledProperty", {}).get("value") or [])]
        if not devices:
            raise ValueError("the city has no seismometer (Device sensing vibration)")
        self._devices = devices
        self.period_s = float(period_s)
        self.report_interval_s = float(report_interval_s)
        self.ids = [d["id"] for d in devices]
        n = len(devices)
        self.nominal_rate = n / self.report_interval_s
        self._rng = np.random.default_rng([seed, 113])
        self.site = self._rng.lognormal(0, 0.4, n)  # site amplification / local noise
        self.phase = self._rng.uniform(0, self.report_interval_s, n)
        self.battery = np.array([float(d.get("batteryLevel", {}).get("value", 0.9))
                                 for d in devices])
        self._prev: datetime | None = None

    def _reports(self, indexes: list[int], now: datetime) -> list[Entity]:
        hour = now.astimezone(PARIS).hour
        day_factor = 2.0 if 7 <= hour < 21 else 1.0
        at = iso(now)
        out = []
        for i in indexes:
            pga = NIGHT_PGA * day_factor * self.site[i] * float(self._rng.lognormal(0, 0.25))
            sun = 6 <= hour < 19
            drift = 0.00002 if sun else -0.00001
            self.battery[i] = float(np.clip(self.battery[i] + drift, 0.2, 1.0))
            out.append({"id": self.ids[i], "type": "Device",
                        "peakGroundAcceleration": observed(float(f"{pga:.3g}"), at, "MSK"),
                        "batteryLevel": observed(round(float(self.battery[i]), 3), at, "C62"),
                        "dateLastValueReported": date_time(at)})
        return out

    def initial(self, now: datetime) -> list[Batch]:
        self._prev = now
        reports = self._reports(list(range(len(self.ids))), now)
        return [(self.context, [{**d, **r} for d, r in zip(self._devices, reports, strict=True)])]

    def tick(self, now: datetime) -> list[Batch]:
        prev = self._prev or now - timedelta(seconds=self.period_s)
        self._prev = now
        a, b = prev.timestamp(), now.timestamp()
        if b <= a:
            return []
        pa = (a - self.phase) % self.report_interval_s
        pb = (b - self.phase) % self.report_interval_s
        due = np.flatnonzero((pb < pa) | (b - a >= self.report_interval_s)).tolist()
        return [(self.context, self._reports(due, now))] if due else []


__all__ = ["SeismometerSimulator"]
