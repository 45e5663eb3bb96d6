"""Streetlights of Nîmes Métropole on an astronomical schedule, with dimming and faults.

Sunrise and sunset for Nîmes come from ``astral`` (Apache-2.0, pure Python, no dependency:
NOAA solar equations, within a minute of the almanacs), the same computation a lighting
controller's astronomical clock does. Over the metropole (~30 km wide) they differ by less than
a minute, so one location serves every commune.

Behaviour, per commune controller (``StreetlightGroup``) and per light (``Streetlight``):

* **on** at sunset + 10 min (controller setting, ±5 min per commune) plus 0–4 min per light
  (photocell and network latency); **off** at sunrise − 10 min, same spreads;
* **dimmed** to 50 % (``powerState`` ``low``) from 23:00 to 05:00 local time, each light
  within 10 min of the hour as the network sequences the commands;
* **faults**: ~150 a day over 35,000 lights (``defectiveLamp``, ``brokenLantern``,
  ``columnIssue``), repaired after ~7 days on average during working hours (weekdays 8-17 h);
  a faulty light is dark and draws nothing;
* **reports**: every light reports its measured ``powerConsumption`` (rated power × level,
  ±2 %) every 15 min (its own phase), and its ``powerState``, ``illuminanceLevel`` and
  ``powerConsumption`` at once when its state changes (``status`` too after a fault or a
  repair): 35,000 / 900 s ≈ 39 reports/s, plus ~1.6/s of switching events on average (bursts
  at dusk, 23:00, 05:00 and dawn). The state attributes' ``observedAt`` is thus the time of the
  last change; the temporal API holds one power series per light and the state changes.

All randomness comes from a seeded generator: a run is reproducible for a given seed and
sequence of tick times.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
from astral import Observer
from astral.sun import sunrise, sunset

from cityvisor.ngsild.build import date_time, observed
from cityvisor.ngsild.time import format_utc_seconds
from cityvisor.sim.live import entities_of
from cityvisor.sim.nimes import Batch, Entity
from cityvisor.sim.population import Population

PARIS = ZoneInfo("Europe/Paris")
#: Nîmes (Maison Carrée); the metropole spans ~0.3° of longitude, i.e. ~1 min of sun time
NIMES = Observer(latitude=43.8383, longitude=4.3561, elevation=0.0)  # almanac convention

ON_DELAY_S = 600.0  # switch on 10 min after sunset
OFF_ADVANCE_S = 600.0  # switch off 10 min before sunrise
COMMUNE_SPREAD_S = 300.0  # ± per commune controller
LIGHT_SPREAD_S = 240.0  # 0..4 min per light
DIM_START = 23 * 3600  # local seconds of day
DIM_END = 5 * 3600
DIM_SPREAD_S = 600.0
DIM_LEVEL = 0.5
REPORT_INTERVAL_S = 900.0
FAULTS_PER_LIGHT_DAY = 150 / 35000
REPAIR_MEAN_DAYS = 7.0
FAULT_KINDS = ["defectiveLamp", "brokenLantern", "columnIssue"]
FAULT_WEIGHTS = [0.67, 0.165, 0.165]
RATED_W = [36, 54, 70, 100, 150]

# state codes
OFF, ON, LOW = 0, 1, 2
POWER_STATE = {OFF: "off", ON: "on", LOW: "low"}
LEVEL = np.array([0.0, 1.0, DIM_LEVEL])


@lru_cache(maxsize=64)
def sun_times(day: date) -> tuple[float, float]:
    """(sunrise, sunset) of ``day`` at Nîmes, as UTC epoch seconds."""
    return (sunrise(NIMES, day, tzinfo=UTC).timestamp(),
            sunset(NIMES, day, tzinfo=UTC).timestamp())


def _local_midnight(t: datetime) -> tuple[date, float]:
    local = t.astimezone(PARIS)
    midnight = datetime.combine(local.date(), time(0), PARIS)
    return local.date(), midnight.timestamp()


class LightingSimulator(Population):
    """The streetlights and their commune controllers of a city description."""

    name = "lighting"

    def __init__(self, city: Sequence[Batch], *, seed: int = 1988,
                 period_s: float = 5.0, report_interval_s: float = REPORT_INTERVAL_S) -> None:
        super().__init__(city, "Streetlight", seed=seed, stream=101, period_s=period_s,
                         report_interval_s=report_interval_s)
        _, groups = entities_of(city, "StreetlightGroup")
        lights = self.entities
        self._groups = groups
        n = len(lights)
        rng = self._rng
        group_ids = [g["id"] for g in groups]
        group_index = {g: i for i, g in enumerate(group_ids)}
        self.group_of = np.array([group_index.get(
            e.get("refStreetlightGroup", {}).get("object"), 0) for e in lights])
        spread = rng.uniform(-COMMUNE_SPREAD_S, COMMUNE_SPREAD_S, (max(len(groups), 1), 2))
        self.group_on = ON_DELAY_S + spread[:, 0]
        self.group_off = -OFF_ADVANCE_S + spread[:, 1]
        self.on_offset = self.group_on[self.group_of] + rng.uniform(0, LIGHT_SPREAD_S, n)
        self.off_offset = self.group_off[self.group_of] + rng.uniform(0, LIGHT_SPREAD_S, n)
        self.dim_offset = rng.uniform(0, DIM_SPREAD_S, n)
        self.phases = self.draw_phases()
        # Rated power: what the city reports when lit, else a plausible LED/HPS rating.
        self.rated = rng.choice(RATED_W, size=n).astype(float)
        for i, e in enumerate(lights):
            level = e.get("illuminanceLevel", {}).get("value") or 0
            power = e.get("powerConsumption", {}).get("value") or 0
            if level and power:
                self.rated[i] = round(power / level)
        self.fault = np.array([e.get("status", {}).get("value", "ok") for e in lights],
                              dtype=object)
        state = {"on": ON, "low": LOW, "bootingUp": ON}
        self.last_state = np.array([state.get(e.get("powerState", {}).get("value"), OFF)
                                    for e in lights], dtype=np.int8)
        self.group_state = np.array([g.get("powerState", {}).get("value") == "on"
                                     for g in groups], dtype=bool)
        self._repairs: set[int] = set()

    # ------------------------------------------------------------ schedule

    def scheduled(self, t: datetime) -> np.ndarray:
        """The state code (OFF/ON/LOW) every light's schedule asks for at ``t``, faults aside."""
        day, midnight = _local_midnight(t)
        rise, set_ = sun_times(day)
        now = t.timestamp()
        night = (now < rise + self.off_offset) | (now >= set_ + self.on_offset)
        tod = now - midnight
        dim = (tod >= DIM_START + self.dim_offset) | (tod < DIM_END + self.dim_offset)
        return np.where(night, np.where(dim, LOW, ON), OFF).astype(np.int8)

    def state(self, t: datetime) -> np.ndarray:
        """The state code every light is in at ``t`` (a faulty light is off)."""
        return np.where(self.fault == "ok", self.scheduled(t), OFF).astype(np.int8)

    def group_lit(self, t: datetime) -> np.ndarray:
        day, _ = _local_midnight(t)
        rise, set_ = sun_times(day)
        now = t.timestamp()
        return (now < rise + self.group_off) | (now >= set_ + self.group_on)

    # ------------------------------------------------------------ Simulator protocol

    def initial(self, now: datetime) -> list[Batch]:
        """The streetlights and their controllers in the state of ``now`` (full entities)."""
        at = format_utc_seconds(now)
        state = self.state(now)
        self.last_state = state.copy()
        self._prev = now
        out: list[Entity] = []
        lit = self.group_lit(now)
        self.group_state = lit.copy()
        for g, entity in enumerate(self._groups):
            new = dict(entity)
            new["powerState"] = observed("on" if lit[g] else "off", at)
            out.append(new)
        power = self._power(np.arange(len(self.ids)), state)
        for i, entity in enumerate(self.entities):
            new = dict(entity)
            new.update(self._report(i, int(state[i]), float(power[i]), at))
            new["status"] = observed(self.fault[i], at)
            out.append(new)
        return [(self.context, out)]

    def tick(self, now: datetime) -> list[Batch]:
        at = format_utc_seconds(now)
        due = self.phases.due(*self.window(now))
        status_changed = self._faults_and_repairs(due, now)
        state = self.state(now)
        changed = np.flatnonzero(state != self.last_state)
        self.last_state = state
        report = np.union1d(np.union1d(due, changed), status_changed)
        power = self._power(report, state[report])
        fragments: list[Entity] = []
        status_set = set(status_changed.tolist())
        state_set = set(changed.tolist()) | status_set
        for k, i in enumerate(report.tolist()):
            if i in state_set:
                fragment = {"id": self.ids[i], "type": "Streetlight",
                            **self._report(i, int(state[i]), float(power[k]), at)}
                if i in status_set:
                    fragment["status"] = observed(self.fault[i], at)
            else:  # periodic metering report: the state is unchanged
                fragment = {"id": self.ids[i], "type": "Streetlight",
                            "powerConsumption": observed(float(power[k]), at, unit="WTT")}
            fragments.append(fragment)
        fragments.extend(self._group_fragments(now, at))
        return [(self.context, fragments)] if fragments else []

    # ------------------------------------------------------------ internals

    def _faults_and_repairs(self, due: np.ndarray, now: datetime) -> np.ndarray:
        """Draw faults and repairs for the lights reporting now; returns those that changed."""
        if not len(due):
            return np.empty(0, dtype=np.int64)
        rng = self._rng
        interval_days = self.report_interval_s / 86400
        ok = self.fault[due] == "ok"
        fails = due[ok & (rng.random(len(due)) < FAULTS_PER_LIGHT_DAY * interval_days)]
        local = now.astimezone(PARIS)
        working = local.weekday() < 5 and 8 <= local.hour < 17
        # Repairs happen in working hours only: 45 of the 168 hours of a week.
        repair_p = interval_days / REPAIR_MEAN_DAYS * (168 / 45)
        repaired = due[~ok & (rng.random(len(due)) < repair_p)] if working else due[:0]
        for i in fails.tolist():
            self.fault[i] = FAULT_KINDS[int(rng.choice(3, p=FAULT_WEIGHTS))]
        self._repairs = set(repaired.tolist())
        for i in self._repairs:
            self.fault[i] = "ok"
        return np.union1d(fails, repaired)

    def _power(self, lights: np.ndarray, state: np.ndarray) -> np.ndarray:
        noise = 1 + self._rng.normal(0, 0.02, len(lights))
        return np.round(self.rated[lights] * LEVEL[state] * noise, 1)

    def _report(self, i: int, state: int, power: float, at: str) -> Entity:
        fragment: Entity = {
            "powerState": observed(POWER_STATE[state], at),
            "illuminanceLevel": observed(float(LEVEL[state]), at, unit="C62"),
            "powerConsumption": observed(power, at, unit="WTT"),
        }
        if i in self._repairs:
            fragment["dateLastLampChange"] = date_time(at)
        return fragment

    def _group_fragments(self, now: datetime, at: str) -> list[Entity]:
        if not self._groups:
            return []
        lit = self.group_lit(now)
        out: list[Entity] = []
        for g in np.flatnonzero(lit != self.group_state).tolist():
            on = bool(lit[g])
            out.append({"id": self._groups[g]["id"], "type": "StreetlightGroup",
                        "powerState": observed("on" if on else "off", at),
                        "dateLastSwitchingOn" if on else "dateLastSwitchingOff": date_time(at)})
        self.group_state = lit
        return out


__all__ = ["LightingSimulator", "NIMES", "sun_times"]
