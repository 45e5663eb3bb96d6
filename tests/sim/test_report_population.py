"""The shared start of the device simulators: their population and report phases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from cityvisor.sim.nimes import DemoCounts, build_city
from cityvisor.sim.population import Population, ReportPhases
from cityvisor.sim.seismometers import SeismometerSimulator

SMALL = DemoCounts(streetlights=30, cameras=1, rain_gauges=1, water_level_gauges=1,
                   weather_stations=1, seismometers=3, ev_stations=4, waste_containers=5,
                   traffic_counters=2)


def brute_force(phase: np.ndarray, interval: float, a: float, b: float) -> list[int]:
    """Devices with a report time phase + k * interval in (a, b], by enumeration."""
    out = []
    for i, p in enumerate(phase):
        k = np.ceil((a - p) / interval)
        first = p + k * interval
        if first <= a:
            first += interval
        if first <= b:
            out.append(i)
    return out


def test_due_devices_are_those_with_a_report_time_in_the_window() -> None:
    rng = np.random.default_rng(7)
    phase = rng.uniform(0, 900, 500)
    phases = ReportPhases(phase, 900)
    t = datetime(2025, 11, 27, 12, tzinfo=UTC).timestamp() + 0.25
    for step in rng.uniform(0, 1200, 400):
        due = phases.due(t, t + step)
        assert due.tolist() == brute_force(phase, 900, t, t + step)
        t += step


def test_every_device_reports_once_per_interval_when_ticked_regularly() -> None:
    phases = ReportPhases(np.random.default_rng(1).uniform(0, 60, 50), 60)
    t0 = 1_700_000_000.0
    counts = np.zeros(50, int)
    for k in range(60):  # one hour, a tick every minute... at an odd offset
        counts[phases.due(t0 + 7 + 60 * k, t0 + 7 + 60 * (k + 1) - 1e-6)] += 1
        counts[phases.due(t0 + 7 + 60 * (k + 1) - 1e-6, t0 + 7 + 60 * (k + 1))] += 1
    assert counts.tolist() == [60] * 50


def test_an_empty_or_backward_window_has_no_report_and_a_long_one_has_all() -> None:
    phases = ReportPhases(np.array([10.0, 20.0, 30.0]), 60)
    assert phases.due(100.0, 100.0).tolist() == []
    assert phases.due(100.0, 50.0).tolist() == []
    assert phases.due(0.0, 60.0).tolist() == [0, 1, 2]
    assert phases.due(65.0, 79.0).tolist() == [0]  # 70 in (65, 79]
    assert phases.due(70.0, 80.0).tolist() == [1]  # open on the left, closed on the right
    assert phases.due(85.0, 135.0).tolist() == [0, 2]  # wraps: 90 and 130


class Counters(Population):
    name = "counters"


def test_population_takes_its_entities_ids_rate_and_a_seeded_stream() -> None:
    city = build_city(SMALL)
    one = Counters(city, "EVChargingStation", seed=3, stream=5, period_s=15,
                   report_interval_s=300)
    two = Counters(city, "EVChargingStation", seed=3, stream=5, period_s=15,
                   report_interval_s=300)
    assert one.ids == [e["id"] for e in one.entities] and len(one.ids) == 4
    assert all(e["type"] == "EVChargingStation" for e in one.entities)
    assert one.context and all(isinstance(url, str) for url in one.context)
    assert one.nominal_rate == pytest.approx(4 / 300)
    assert one._rng.random() == two._rng.random()


def test_population_window_covers_the_time_since_the_previous_tick() -> None:
    sim = Counters(build_city(SMALL), "WasteContainer", seed=1, stream=1, period_s=30,
                   report_interval_s=3600)
    now = datetime(2025, 11, 27, 12, tzinfo=UTC)
    assert sim.window(now) == ((now - timedelta(seconds=30)).timestamp(), now.timestamp())
    later = now + timedelta(seconds=95)
    assert sim.window(later) == (now.timestamp(), later.timestamp())


def test_a_city_without_the_population_is_a_clear_error() -> None:
    city = build_city(SMALL)
    with pytest.raises(ValueError, match="no Bridge entity"):
        Counters(city, "Bridge", seed=1, stream=1, period_s=1, report_interval_s=1)
    no_seismometers = [(ctx, [e for e in entities if e["type"] != "Device"])
                       for ctx, entities in city]
    with pytest.raises(ValueError, match="no seismometer"):
        SeismometerSimulator(no_seismometers)
