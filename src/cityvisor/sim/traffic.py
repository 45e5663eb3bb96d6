"""Traffic counting points (``TrafficFlowObserved``) with daily and weekly profiles.

Each counting point aggregates over fixed 6-minute periods aligned on the clock (the French
road-data convention, "débit 6 minutes") and reports at the end of each period: 150 points
/ 360 s ≈ 0.4 reports/s, in bursts at :00, :06, :12...

* **flow**: the point's peak hourly flow (``lanes`` × 350–750 veh/h) times a profile of the
  local hour: weekdays have the morning (8 h) and evening (17-18 h) rush hours; Saturday a broad
  late-morning/afternoon hump; Sunday a lower one. ``intensity`` is the Poisson count of
  vehicles in the period;
* **speed** falls as the flow nears capacity (BPR-like curve from the point's free-flow speed);
* **occupancy** = flow × effective vehicle length / speed; ``congested`` when the speed drops
  under 20 km/h or occupancy exceeds 35 %.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from cityvisor.ngsild.build import date_time, observed
from cityvisor.ngsild.time import format_utc_seconds
from cityvisor.sim.nimes import Batch, Entity
from cityvisor.sim.population import Population

PARIS = ZoneInfo("Europe/Paris")
AGGREGATION_S = 360.0
VEHICLE_LENGTH_KM = 0.0065  # vehicle + detector loop
# Hourly share of the peak flow, hours 0..23 (local time), from typical French urban counts.
WEEKDAY = np.array([0.08, 0.05, 0.04, 0.04, 0.07, 0.18, 0.45, 0.85, 1.00, 0.80, 0.66, 0.68,
                    0.72, 0.70, 0.68, 0.74, 0.88, 1.00, 0.95, 0.70, 0.45, 0.32, 0.22, 0.14])
SATURDAY = np.array([0.14, 0.10, 0.07, 0.05, 0.05, 0.08, 0.15, 0.28, 0.45, 0.62, 0.74, 0.80,
                     0.76, 0.70, 0.72, 0.78, 0.80, 0.78, 0.70, 0.55, 0.40, 0.32, 0.26, 0.20])
SUNDAY = np.array([0.18, 0.14, 0.10, 0.07, 0.05, 0.06, 0.09, 0.14, 0.24, 0.38, 0.50, 0.56,
                   0.54, 0.48, 0.48, 0.52, 0.58, 0.60, 0.56, 0.46, 0.36, 0.28, 0.20, 0.13])


def _hourly(local: datetime) -> float:
    table = (WEEKDAY, WEEKDAY, WEEKDAY, WEEKDAY, WEEKDAY, SATURDAY, SUNDAY)[local.weekday()]
    return float(table[local.hour])


def profile(t: datetime) -> float:
    """Share of the peak hourly flow at ``t`` (linear between hourly values, local time)."""
    local = t.astimezone(PARIS)
    hour = local.replace(minute=0, second=0, microsecond=0)
    frac = (local - hour).total_seconds() / 3600
    following = (hour.astimezone(UTC) + timedelta(hours=1)).astimezone(PARIS)
    return _hourly(hour) * (1 - frac) + _hourly(following) * frac


class TrafficSimulator(Population):
    """The counting points of a city description. Every point reports at the end of each
    ``aggregation_s`` period on the clock (the runner ticks it every ``period_s``)."""

    name = "traffic"

    def __init__(self, city: Sequence[Batch], *, seed: int = 1988, period_s: float = 60.0,
                 aggregation_s: float = AGGREGATION_S) -> None:
        super().__init__(city, "TrafficFlowObserved", seed=seed, stream=107, period_s=period_s,
                         report_interval_s=aggregation_s)
        self.aggregation_s = self.report_interval_s
        n = len(self.ids)
        lanes = np.array([int(e.get("laneId", {}).get("value", 1)) for e in self.entities])
        self.capacity = lanes * 1800.0  # veh/h at saturation
        self.peak = lanes * self._rng.uniform(350, 750, n)  # veh/h at the busiest hour
        self.free_speed = self._rng.uniform(35, 75, n)  # km/h

    def _period_end(self, t: float) -> float:
        """The end (epoch seconds) of the last aggregation period ended at ``t``."""
        return (t // self.aggregation_s) * self.aggregation_s

    def observe(self, end: datetime) -> list[Entity]:
        """Every point's observation for the period ending at ``end``."""
        start = end - timedelta(seconds=self.aggregation_s)
        share = profile(start + timedelta(seconds=self.aggregation_s / 2))
        flow = self.peak * share * self._rng.lognormal(0, 0.12, len(self.ids))  # veh/h
        count = self._rng.poisson(flow * self.aggregation_s / 3600)
        ratio = np.minimum(flow / self.capacity, 1.2)
        speed = np.clip(self.free_speed / (1 + 0.8 * ratio**4)
                        * self._rng.normal(1, 0.05, len(self.ids)), 5, 110)
        occupancy = np.clip(count * 3600 / self.aggregation_s * VEHICLE_LENGTH_KM
                            / speed / np.maximum(self.capacity / 1800, 1), 0, 1)
        at, begin = format_utc_seconds(end), format_utc_seconds(start)
        return [{
            "id": self.ids[i], "type": "TrafficFlowObserved",
            "intensity": observed(int(count[i]), at),
            "averageVehicleSpeed": observed(round(float(speed[i]), 1), at, unit="KMH"),
            "occupancy": observed(round(float(occupancy[i]), 3), at, unit="C62"),
            "congested": observed(bool(speed[i] < 20 or occupancy[i] > 0.35), at),
            "dateObserved": date_time(at), "dateObservedFrom": date_time(begin),
            "dateObservedTo": date_time(at),
        } for i in range(len(self.ids))]

    def initial(self, now: datetime) -> list[Batch]:
        """The points with the last complete period before ``now`` (full entities)."""
        self._prev = now
        end = datetime.fromtimestamp(self._period_end(now.timestamp()), UTC)
        return [(self.context, [{**entity, **fragment} for entity, fragment
                                in zip(self.entities, self.observe(end), strict=True)])]

    def tick(self, now: datetime) -> list[Batch]:
        last, current = (self._period_end(t) for t in self.window(now))
        if current <= last:
            return []
        # Only the latest period is reported if several ended (a counter sends its last one).
        return [(self.context, self.observe(datetime.fromtimestamp(current, UTC)))]


__all__ = ["TrafficSimulator", "profile"]
