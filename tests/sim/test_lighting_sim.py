"""The streetlight simulator: astronomical schedule for Nîmes, dimming, faults, power, rates."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from math import cos, radians, sin
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from cityvisor.sim.lighting import DIM_LEVEL, LightingSimulator, sun_times
from cityvisor.sim.nimes import DemoCounts, build_city

PARIS = ZoneInfo("Europe/Paris")
SMALL = DemoCounts(streetlights=2000, cameras=5, rain_gauges=2, water_level_gauges=2,
                   weather_stations=1, seismometers=2, ev_stations=10, waste_containers=50,
                   traffic_counters=10)


def local(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=PARIS)


@pytest.fixture(scope="module")
def small_city():
    return build_city(SMALL)


@pytest.fixture(scope="module")
def full_city():
    return build_city()


def reference_sun(day: date, lat: float = 43.8383, lon: float = 4.3561) -> tuple[float, float]:
    """Sunrise and sunset (UTC epoch s) by the classic sunrise equation (Meeus-derived, as in
    the NOAA/Wikipedia "sunrise equation"), written independently of ``astral``."""
    jd = day.toordinal() + 1721424.5  # Julian day at 0 h UTC
    n = math.ceil(jd - 2451545.0 + 0.0008)
    j_star = n - lon / 360
    m = (357.5291 + 0.98560028 * j_star) % 360
    c = (1.9148 * sin(radians(m)) + 0.0200 * sin(radians(2 * m))
         + 0.0003 * sin(radians(3 * m)))
    lam = (m + c + 180 + 102.9372) % 360
    transit = 2451545.0 + j_star + 0.0053 * sin(radians(m)) - 0.0069 * sin(radians(2 * lam))
    decl = math.asin(sin(radians(lam)) * sin(radians(23.4397)))
    cos_w = ((sin(radians(-0.833)) - sin(radians(lat)) * sin(decl))
             / (cos(radians(lat)) * cos(decl)))
    w = math.degrees(math.acos(cos_w))
    to_epoch = lambda j: (j - 2440587.5) * 86400  # noqa: E731
    return to_epoch(transit - w / 360), to_epoch(transit + w / 360)


# Expected local clock times for Nîmes (43.84 N, 4.36 E), to the minute: the winter solstice
# (shortest day, ~8 h 57 min) and the summer solstice (~15 h 31 min).
ALMANAC = [
    (date(2025, 6, 21), "05:59", "21:30"),
    (date(2025, 12, 21), "08:12", "17:09"),
]


@pytest.mark.parametrize("day", [date(2025, m, d) for m in range(1, 13) for d in (1, 15)])
def test_sun_times_match_the_sunrise_equation(day: date) -> None:
    rise, set_ = sun_times(day)
    ref_rise, ref_set = reference_sun(day)
    assert abs(rise - ref_rise) <= 120 and abs(set_ - ref_set) <= 120, day


@pytest.mark.parametrize(("day", "rise", "set_"), ALMANAC)
def test_sun_times_for_nimes_on_given_dates(day: date, rise: str, set_: str) -> None:
    sunrise, sunset = sun_times(day)
    for computed, expected in ((sunrise, rise), (sunset, set_)):
        hh, mm = map(int, expected.split(":"))
        clock = datetime(day.year, day.month, day.day, hh, mm, tzinfo=PARIS).timestamp()
        assert abs(computed - clock) <= 120, (day, expected,
                                              datetime.fromtimestamp(computed, PARIS))


@pytest.mark.parametrize(("day", "rise", "set_"), ALMANAC)
def test_lights_on_after_sunset_and_off_after_sunrise(small_city, day, rise, set_) -> None:
    sim = LightingSimulator(small_city)
    ok = sim.fault == "ok"
    hh, mm = map(int, set_.split(":"))
    sunset = datetime(day.year, day.month, day.day, hh, mm, tzinfo=PARIS)
    hh, mm = map(int, rise.split(":"))
    sunrise = datetime(day.year, day.month, day.day, hh, mm, tzinfo=PARIS)
    assert (sim.state(sunset - timedelta(minutes=10)) == 0).all()  # still daylight: all off
    lit = sim.state(sunset + timedelta(minutes=25))
    assert (lit[ok] == 1).all() and (lit[~ok] == 0).all()  # all working lights on, full power
    night = sim.state(local(day.year, day.month, day.day, 1, 0) + timedelta(days=1))
    assert (night[ok] == 2).all()  # dimmed in the middle of the night
    morning = sunrise + timedelta(days=1)
    before = sim.state(morning - timedelta(minutes=25))
    after = sim.state(morning + timedelta(minutes=5))
    assert (before[ok] == 1).all()  # 05:00 undimmed, still dark
    assert (after == 0).all()  # off at dawn


def test_reports_follow_the_schedule_through_ticks(small_city) -> None:
    """Driving the simulator tick by tick: the lights' reported state follows the sun."""
    sim = LightingSimulator(small_city)
    start = local(2025, 11, 27, 15, 0)  # before sunset (17:07 local)
    (_, entities), = sim.initial(start)
    state = {e["id"]: e["powerState"]["value"] for e in entities if e["type"] == "Streetlight"}
    assert set(state.values()) == {"off"}
    groups: Counter[str] = Counter()
    t = start
    while t < local(2025, 11, 28, 9, 0):
        t += timedelta(seconds=5)
        for _, fragments in sim.tick(t):
            for f in fragments:
                if f["type"] == "StreetlightGroup":
                    groups[f["powerState"]["value"]] += 1
                    continue
                at = t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                assert f["powerConsumption"]["observedAt"] == at
                power = f["powerConsumption"]["value"]
                if "powerState" in f:  # a state change
                    assert f["powerState"]["observedAt"] == at
                    assert f["powerState"]["value"] != state[f["id"]] or "status" in f
                    state[f["id"]] = f["powerState"]["value"]
                    level = f["illuminanceLevel"]["value"]
                    assert level == {"on": 1.0, "low": DIM_LEVEL, "off": 0.0}[state[f["id"]]]
                level = {"on": 1.0, "low": DIM_LEVEL, "off": 0.0}[state[f["id"]]]
                # power consistent with the level: rated 36-150 W, ±2 % measurement noise
                assert (power == 0) == (level == 0)
                assert 36 * 0.9 * level <= power <= 150 * 1.1 * level
        if t == local(2025, 11, 27, 18, 0):
            assert Counter(state.values())["on"] > 0.95 * len(sim.ids)
        if t == local(2025, 11, 28, 2, 0):
            assert Counter(state.values())["low"] > 0.95 * len(sim.ids)
    assert Counter(state.values()) == {"off": len(sim.ids)}
    n_groups = len(sim._groups)
    assert groups == {"on": n_groups, "off": n_groups}  # each controller switched on and off


def test_about_forty_reports_per_second_for_35000_lights(full_city) -> None:
    sim = LightingSimulator(full_city)
    assert len(sim.ids) == 35000
    start = datetime(2025, 11, 27, 11, 0, tzinfo=UTC)  # midday: no switching events
    sim.initial(start)
    reports = 0
    hour = 3600
    for k in range(1, hour // 5 + 1):
        for _, fragments in sim.tick(start + timedelta(seconds=5 * k)):
            reports += sum(1 for f in fragments if f["type"] == "Streetlight")
    rate = reports / hour
    assert 37 <= rate <= 42, rate  # 35,000 lights / 900 s = 38.9 per s


def test_every_light_reports_once_per_interval(small_city) -> None:
    sim = LightingSimulator(small_city)
    start = datetime(2025, 11, 27, 11, 0, tzinfo=UTC)
    sim.initial(start)
    seen: Counter[str] = Counter()
    for k in range(1, 900 // 5 + 1):
        for _, fragments in sim.tick(start + timedelta(seconds=5 * k)):
            seen.update(f["id"] for f in fragments if f["type"] == "Streetlight")
    assert set(seen) == set(sim.ids) and set(seen.values()) == {1}


def test_faults_occur_and_are_repaired(small_city) -> None:
    sim = LightingSimulator(small_city, period_s=300, report_interval_s=3600)
    start = datetime(2025, 11, 24, 0, 0, tzinfo=UTC)  # a Monday
    sim.initial(start)
    days = 8
    faults, repairs, repair_hours = Counter(), 0, set()
    for k in range(1, days * 24 * 12 + 1):  # one tick every 5 min
        now = start + timedelta(minutes=5 * k)
        for _, fragments in sim.tick(now):
            for f in fragments:
                if "status" not in f:
                    continue
                if f["status"]["value"] == "ok":
                    repairs += 1
                    repair_hours.add(now.astimezone(PARIS).hour)
                    assert "dateLastLampChange" in f
                else:
                    faults[f["status"]["value"]] += 1
                    assert f["powerState"]["value"] == "off"
                    assert f["powerConsumption"]["value"] == 0
    per_light_day = sum(faults.values()) / days / len(sim.ids)
    assert 0.0025 <= per_light_day <= 0.0065, per_light_day  # ~150 a day over 35,000 lights
    assert faults["defectiveLamp"] > faults["columnIssue"]
    assert repairs > 20
    assert repair_hours <= set(range(8, 17))  # crews work 8-17 h
    assert float(np.mean(sim.fault != "ok")) < 0.05


def test_same_seed_same_run(small_city) -> None:
    runs = []
    for _ in range(2):
        sim = LightingSimulator(small_city, seed=7)
        t = datetime(2025, 11, 27, 16, 0, tzinfo=UTC)
        sim.initial(t)
        runs.append([sim.tick(t + timedelta(seconds=5 * k)) for k in range(1, 100)])
    assert runs[0] == runs[1]


def test_a_city_without_streetlights_is_refused() -> None:
    with pytest.raises(ValueError, match="no Streetlight"):
        LightingSimulator([])
