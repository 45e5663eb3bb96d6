"""Waste containers (``WasteContainer``): fill levels rising by kind, emptied on collection rounds.

* **filling**: each kind fills at its own pace, for an average container (``fillingLevel``
  per day): household waste (``inorganic``, underground bins) 0.30, packaging (``plastic``)
  0.11, ``paper`` 0.08, ``glass`` 0.05 — times a per-container factor (log-normal, σ 0.35:
  busy squares vs quiet lanes) and the hour of the day (people drop waste between 7 h and 22 h).
  Levels stop at 1.0 (full; the console shows overflowing containers);
* **collection rounds**: household waste three times a week (Monday/Wednesday/Friday, or
  Tuesday/Thursday/Saturday depending on the commune), packaging and paper weekly, glass every
  week, on a commune-specific weekday; trucks work from 6:00 to 12:00 and pass each container at
  its place in the route; the container is emptied (level back to 0-3 %) and reports at once,
  with ``dateLastEmptying``;
* **reports**: fill sensors report every hour (own phase): 2,500 / 3,600 s ≈ 0.7 reports/s;
* **incidents**: now and then a lid is left open (``status`` ``lidOpen``) until a later report.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from cityvisor.ngsild.build import date_time, observed
from cityvisor.ngsild.time import format_utc_seconds
from cityvisor.sim.nimes import Batch, Entity
from cityvisor.sim.population import Population

PARIS = ZoneInfo("Europe/Paris")
REPORT_INTERVAL_S = 3600.0
FILL_PER_DAY = {"inorganic": 0.30, "plastic": 0.11, "paper": 0.08, "glass": 0.05}
ROUND_START_H, ROUND_END_H = 6, 12
LID_OPEN_PER_REPORT = 0.0008
# Share of the day's deposits per local hour (sums to 1): nothing at night.
_HOURS = np.array([0, 0, 0, 0, 0, 0, 0, 2, 5, 7, 8, 8, 8, 7, 6, 6, 7, 8, 9, 8, 6, 3, 2, 0], float)
HOURLY = _HOURS / _HOURS.sum()


def _cumulative_day(seconds_of_day: np.ndarray) -> np.ndarray:
    """Share of a day's deposits made between midnight and ``seconds_of_day``."""
    cum = np.concatenate([[0.0], np.cumsum(HOURLY)])
    hour = np.clip(seconds_of_day / 3600, 0, 24)
    h = np.minimum(hour.astype(int), 23)
    return cum[h] + HOURLY[h] * (hour - h)


class WasteSimulator(Population):
    """The waste containers of a city description, ticking every ``period_s`` simulated
    seconds: fill sensors report every ``report_interval_s`` (own phase) and on emptying."""

    name = "waste"

    def __init__(self, city: Sequence[Batch], *, seed: int = 1988, period_s: float = 30.0,
                 report_interval_s: float = REPORT_INTERVAL_S) -> None:
        super().__init__(city, "WasteContainer", seed=seed, stream=109, period_s=period_s,
                         report_interval_s=report_interval_s)
        n = len(self.ids)
        rng = self._rng
        containers = self.entities
        self.kind = [e.get("storedWasteKind", {}).get("value", "inorganic") for e in containers]
        per_day = np.array([FILL_PER_DAY.get(k, 0.1) for k in self.kind])
        self.rate = per_day * rng.lognormal(0, 0.35, n)  # fill per day
        commune = [e.get("address", {}).get("value", {}).get("postalCode", "") + "|"
                   + e.get("address", {}).get("value", {}).get("addressLocality", "")
                   for e in containers]
        sectors = {c: k for k, c in enumerate(sorted(set(commune)))}
        sector = np.array([sectors[c] for c in commune])
        # Weekdays (0 = Monday) of each container's rounds.
        self.round_days: list[tuple[int, ...]] = []
        for i in range(n):
            s = int(sector[i])
            if self.kind[i] == "inorganic":
                self.round_days.append((0, 2, 4) if s % 2 == 0 else (1, 3, 5))
            else:
                offset = {"plastic": 1, "paper": 3, "glass": 2}.get(self.kind[i], 0)
                self.round_days.append(((s + offset) % 5,))
        self._by_weekday = [np.array([i for i in range(n) if d in self.round_days[i]], dtype=int)
                            for d in range(7)]
        #: seconds after ROUND_START at which the truck reaches the container
        self.route_s = rng.uniform(0, (ROUND_END_H - ROUND_START_H) * 3600, n)
        self.phases = self.draw_phases()
        self.level = np.array([float(e.get("fillingLevel", {}).get("value", 0.0))
                               for e in containers])
        self.status = [e.get("status", {}).get("value", "ok") for e in containers]

    # ------------------------------------------------------------ model

    def _emptying_time(self, i: int, day: date) -> float | None:
        if day.weekday() not in self.round_days[i]:
            return None
        start = datetime.combine(day, time(ROUND_START_H), PARIS).timestamp()
        return start + float(self.route_s[i])

    def _emptyings(self, a: float, b: float) -> dict[int, float]:
        """Containers emptied in (a, b]: index -> epoch time."""
        out: dict[int, float] = {}
        day = datetime.fromtimestamp(a, PARIS).date()
        last = datetime.fromtimestamp(b, PARIS).date()
        while day <= last:
            start = datetime.combine(day, time(ROUND_START_H), PARIS).timestamp()
            if start < b and start + (ROUND_END_H - ROUND_START_H) * 3600 > a:
                rounds = self._by_weekday[day.weekday()]
                when = start + self.route_s[rounds]
                hit = (when > a) & (when <= b)
                out.update(zip(rounds[hit].tolist(), when[hit].tolist(), strict=True))
            day += timedelta(days=1)
        return out

    def _fill(self, a: float, b: float) -> np.ndarray:
        """Fill added to every container between epochs a and b (daily profile)."""
        if b <= a:
            return np.zeros(len(self.ids))
        share = self._deposit_share(b) - self._deposit_share(a)
        return self.rate * share

    @staticmethod
    def _deposit_share(t: float) -> float:
        """Cumulative share of deposits since an epoch origin (days count whole)."""
        local = datetime.fromtimestamp(t, PARIS)
        midnight = datetime.combine(local.date(), time(0), PARIS)
        days = midnight.toordinal()
        return float(days + _cumulative_day(np.array([t - midnight.timestamp()]))[0])

    def _last_round(self, i: int, t: float) -> float:
        day = datetime.fromtimestamp(t, PARIS).date()
        for back in range(0, 15):
            when = self._emptying_time(i, day - timedelta(days=back))
            if when is not None and when <= t:
                return when
        return t - 7 * 86400

    # ------------------------------------------------------------ Simulator protocol

    def initial(self, now: datetime) -> list[Batch]:
        """Containers filled since their last round (full entities)."""
        t = now.timestamp()
        at = format_utc_seconds(now)
        out = []
        noise = self._rng.normal(0, 0.03, len(self.ids))
        share_now = self._deposit_share(t)
        for i, entity in enumerate(self.entities):
            emptied = self._last_round(i, t)
            level = self.rate[i] * (share_now - self._deposit_share(emptied))
            self.level[i] = float(np.clip(level + 0.02 + noise[i], 0.0, 1.0))
            out.append({**entity, **self._fragment(i, at), "status": observed("ok", at),
                        "dateLastEmptying": date_time(datetime.fromtimestamp(emptied, UTC))})
            self.status[i] = "ok"
        self._prev = now
        return [(self.context, out)]

    def _fragment(self, i: int, at: str) -> Entity:
        return {"id": self.ids[i], "type": "WasteContainer",
                "fillingLevel": observed(round(float(self.level[i]), 2), at, unit="C62")}

    def tick(self, now: datetime) -> list[Batch]:
        a, b = self.window(now)
        if b <= a:
            return []
        self.level = np.minimum(self.level + self._fill(a, b), 1.0)
        at = format_utc_seconds(now)
        out: dict[int, Entity] = {}
        for i, when in self._emptyings(a, b).items():
            self.level[i] = float(self._rng.uniform(0, 0.03))
            fragment = self._fragment(i, at)
            fragment["dateLastEmptying"] = date_time(datetime.fromtimestamp(when, UTC))
            out[i] = fragment
        due = self.phases.due(a, b)
        lid = self._rng.random(len(due)) < LID_OPEN_PER_REPORT
        for k, i in enumerate(due.tolist()):
            fragment = out.get(i) or self._fragment(i, at)
            new_status = "lidOpen" if lid[k] else "ok"
            if new_status != self.status[i]:
                self.status[i] = new_status
                fragment["status"] = observed(new_status, at)
            out[i] = fragment
        return [(self.context, list(out.values()))] if out else []


__all__ = ["WasteSimulator"]
