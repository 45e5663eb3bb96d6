"""EV charging stations (``EVChargingStation``): sessions starting and ending, status, power.

Each station has ``capacity`` charging points. Drivers arrive as a Poisson process whose rate
follows the hour of the day (peaks at 8-10 h, 12-14 h and 17-20 h; ~3 sessions per point and
day, i.e. public AC points busy 15-25 % of the time, as French operators report). A driver
who finds the station ``full`` leaves. Sessions last a log-normal time (median 2 h on AC
stations, 35 min on stations with a DC socket — CCS/CHAdeMO) and draw a power set by the car and
the socket (3.7/7.4/11/22 kW on AC, ~50 kW on DC, tapering near the end of a DC charge).

A station reports ``availableCapacity``, ``status`` (``working``, ``full``, ``outOfService``)
and ``chargingPower`` (kW, our addition: the total power delivered, see docs/data-contracts.md)
when a session starts or ends, and otherwise every 5 minutes (its own phase). Faults put a
station ``outOfService`` about once every 60 days for ~2 days (its sessions end).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from cityvisor.ngsild.build import observed
from cityvisor.ngsild.time import format_utc_seconds
from cityvisor.sim.nimes import Batch, Entity
from cityvisor.sim.population import Population

PARIS = ZoneInfo("Europe/Paris")
REPORT_INTERVAL_S = 300.0
SESSIONS_PER_POINT_DAY = 3.0
# Relative arrival rate per local hour (mean 1).
_ARRIVALS = np.array([0.15, 0.1, 0.08, 0.08, 0.1, 0.2, 0.5, 1.1, 1.7, 1.6, 1.3, 1.3,
                      1.6, 1.5, 1.2, 1.1, 1.3, 1.7, 1.8, 1.6, 1.1, 0.7, 0.4, 0.25])
ARRIVALS = _ARRIVALS / _ARRIVALS.mean()
AC_KW = [3.7, 7.4, 11.0, 22.0]
AC_WEIGHTS = [0.15, 0.5, 0.25, 0.1]
FAULTS_PER_DAY = 1 / 60
REPAIR_MEAN_S = 2 * 86400.0


class ChargingSimulator(Population):
    """The EV charging stations of a city description. It ticks every ``period_s`` simulated
    seconds; a station reports when a session starts or ends, and otherwise every
    ``report_interval_s`` seconds (its own phase)."""

    name = "ev-charging"

    def __init__(self, city: Sequence[Batch], *, seed: int = 1988, period_s: float = 15.0,
                 report_interval_s: float = REPORT_INTERVAL_S) -> None:
        super().__init__(city, "EVChargingStation", seed=seed, stream=103, period_s=period_s,
                         report_interval_s=report_interval_s)
        stations = self.entities
        self.capacity = [int(e.get("capacity", {}).get("value", 2)) for e in stations]
        self.dc = [any(s in ("CCS/SAE", "CHAdeMO") for s in e.get("socketType", {}).get("value", []))
                   for e in stations]
        n = len(stations)
        self.phases = self.draw_phases()
        #: per station: list of (end epoch s, start epoch s, kW) of the sessions in progress
        self.sessions: list[list[tuple[float, float, float]]] = [[] for _ in range(n)]
        self.out_until = [0.0] * n
        for i, e in enumerate(stations):
            if e.get("status", {}).get("value") == "outOfService":
                self.out_until[i] = float("inf")  # repaired at the first tick's draw
        self.started = self.ended = 0

    # ------------------------------------------------------------ model

    def _new_session(self, i: int, start: float) -> tuple[float, float, float]:
        rng = self._rng
        if self.dc[i] and rng.random() < 0.6:
            duration = rng.lognormal(np.log(35 * 60), 0.4)
            kw = float(rng.uniform(40, 60))
        else:
            duration = rng.lognormal(np.log(2 * 3600), 0.6)
            kw = float(AC_KW[int(rng.choice(4, p=AC_WEIGHTS))])
        return (start + float(duration), start, kw)

    def power(self, i: int, t: float) -> float:
        """kW delivered by station ``i`` at epoch ``t`` (DC charges taper in their last third)."""
        total = 0.0
        for end, start, kw in self.sessions[i]:
            if kw > 30:
                done = (t - start) / max(end - start, 1)
                kw = kw * (1.0 if done < 2 / 3 else max(0.3, 1 - (done - 2 / 3) * 2))
            total += kw
        return round(total, 1)

    def status(self, i: int, t: float) -> str:
        if self.out_until[i] > t:
            return "outOfService"
        return "full" if len(self.sessions[i]) >= self.capacity[i] else "working"

    def _fragment(self, i: int, t: float, at: str) -> Entity:
        return {"id": self.ids[i], "type": "EVChargingStation",
                "availableCapacity": observed(
                    0 if self.out_until[i] > t else self.capacity[i] - len(self.sessions[i]), at),
                "status": observed(self.status(i, t), at),
                "chargingPower": observed(self.power(i, t), at, unit="KWT")}

    def _simulate(self, i: int, a: float, b: float) -> bool:
        """Advance station ``i`` from epoch ``a`` to ``b``; True if its state changed."""
        rng = self._rng
        changed = False
        if self.out_until[i] == float("inf"):
            self.out_until[i] = a + float(rng.exponential(REPAIR_MEAN_S))
        if self.out_until[i] <= a and rng.random() < FAULTS_PER_DAY * (b - a) / 86400:
            self.out_until[i] = b + float(rng.exponential(REPAIR_MEAN_S))
            self.ended += len(self.sessions[i])
            self.sessions[i] = []
            return True
        if a < self.out_until[i] <= b:
            changed = True  # back in service
        before = len(self.sessions[i])
        self.sessions[i] = [s for s in self.sessions[i] if s[0] > b]
        self.ended += before - len(self.sessions[i])
        changed |= len(self.sessions[i]) != before
        if self.out_until[i] > b:
            return changed
        hour = datetime.fromtimestamp(b, PARIS).hour
        rate = SESSIONS_PER_POINT_DAY * self.capacity[i] * ARRIVALS[hour] / 86400
        for _ in range(int(rng.poisson(rate * (b - a)))):
            if len(self.sessions[i]) < self.capacity[i]:
                self.sessions[i].append(self._new_session(i, float(rng.uniform(a, b))))
                self.started += 1
                changed = True
        return changed

    # ------------------------------------------------------------ Simulator protocol

    def initial(self, now: datetime) -> list[Batch]:
        """The stations with the sessions a steady day would have in progress at ``now``."""
        t = now.timestamp()
        warm = 6 * 3600.0  # simulate the last hours so that sessions are in progress
        for step in np.arange(t - warm, t, 300.0):
            for i in range(len(self.ids)):
                self._simulate(i, float(step), float(step) + 300.0)
        self._prev = now
        at = format_utc_seconds(now)
        return [(self.context, [{**e, **self._fragment(i, t, at)}
                                for i, e in enumerate(self.entities)])]

    def tick(self, now: datetime) -> list[Batch]:
        a, b = self.window(now)
        if b <= a:
            return []
        at = format_utc_seconds(now)
        due = set(self.phases.due(a, b).tolist())
        out = [self._fragment(i, b, at) for i in range(len(self.ids))
               if self._simulate(i, a, b) or i in due]
        return [(self.context, out)] if out else []


__all__ = ["ChargingSimulator"]
