"""Traffic counters, EV charging stations and seismometers of the living demo city."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from cityvisor.sim.mobility import ChargingSimulator
from cityvisor.sim.nimes import build_city
from cityvisor.sim.seismometers import SeismometerSimulator
from cityvisor.sim.traffic import TrafficSimulator, profile

PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture(scope="module")
def city():
    return build_city()


def hourly_totals(sim: TrafficSimulator, day: datetime) -> dict[int, int]:
    """Vehicles counted by all points per local hour of ``day`` (ticks every minute)."""
    sim.initial(day)
    totals: Counter[int] = Counter()
    for k in range(1, 24 * 60 + 1):
        now = day + timedelta(minutes=k)
        for _, fragments in sim.tick(now):
            for f in fragments:
                start = datetime.fromisoformat(f["dateObservedFrom"]["value"]["@value"])
                totals[start.astimezone(PARIS).hour] += f["intensity"]["value"]
    return totals


def test_traffic_has_rush_hours_on_weekdays_and_not_on_sundays(city) -> None:
    sim = TrafficSimulator(city)
    weekday = hourly_totals(sim, datetime(2025, 11, 26, 0, 0, tzinfo=PARIS))  # Wednesday
    sunday = hourly_totals(sim, datetime(2025, 11, 30, 0, 0, tzinfo=PARIS))
    assert weekday[8] > 4 * weekday[3] and weekday[17] > 4 * weekday[3]
    assert weekday[8] > 1.25 * weekday[11]  # a morning peak, not a plateau
    assert sunday[8] < 0.5 * weekday[8]
    assert sum(sunday.values()) < 0.8 * sum(weekday.values())


def test_traffic_reports_every_six_minutes_on_the_clock(city) -> None:
    sim = TrafficSimulator(city)
    start = datetime(2025, 11, 26, 7, 0, 30, tzinfo=UTC)
    sim.initial(start)
    reports = []
    for k in range(1, 61):
        for _, fragments in sim.tick(start + timedelta(minutes=k)):
            reports.extend(fragments)
    assert len(reports) == 10 * len(sim.ids)  # 10 periods in an hour
    for f in reports:
        begin = datetime.fromisoformat(f["dateObservedFrom"]["value"]["@value"])
        end = datetime.fromisoformat(f["dateObservedTo"]["value"]["@value"])
        assert end - begin == timedelta(minutes=6) and end.minute % 6 == 0 and end.second == 0
        speed, occ = f["averageVehicleSpeed"]["value"], f["occupancy"]["value"]
        assert 5 <= speed <= 110 and 0 <= occ <= 1
        assert f["congested"]["value"] == (speed < 20 or occ > 0.35)


def test_profile_is_continuous_across_midnight() -> None:
    before = profile(datetime(2025, 11, 28, 23, 59, tzinfo=PARIS))  # Friday
    after = profile(datetime(2025, 11, 29, 0, 1, tzinfo=PARIS))  # Saturday
    assert abs(before - after) < 0.01


def test_charging_sessions_start_end_and_stay_consistent(city) -> None:
    sim = ChargingSimulator(city)
    start = datetime(2025, 11, 26, 0, 0, tzinfo=PARIS)
    (_, stations), = sim.initial(start)
    assert len(stations) == len(sim.ids)
    started0, ended0 = sim.started, sim.ended
    statuses: Counter[str] = Counter()
    busy_by_hour: Counter[int] = Counter()
    for k in range(1, 24 * 60 * 4 + 1):  # a day, every 15 s
        now = start + timedelta(seconds=15 * k)
        for _, fragments in sim.tick(now):
            for f in fragments:
                i = sim.ids.index(f["id"])
                available = f["availableCapacity"]["value"]
                status = f["status"]["value"]
                statuses[status] += 1
                assert 0 <= available <= sim.capacity[i]
                assert (status == "full") == (available == 0 and status != "outOfService")
                power = f["chargingPower"]["value"]
                assert f["chargingPower"]["unitCode"] == "KWT"
                assert (power > 0) == (len(sim.sessions[i]) > 0)
                busy_by_hour[now.astimezone(PARIS).hour] += sim.capacity[i] - available
    started, ended = sim.started - started0, sim.ended - ended0
    points = sum(sim.capacity)
    assert 1.5 * points <= started <= 4 * points  # ~3 sessions per point and day
    assert ended > 0.8 * started
    assert statuses["working"] > statuses["full"] > 0
    assert busy_by_hour[18] > busy_by_hour[4]


def test_charging_reports_every_five_minutes(city) -> None:
    sim = ChargingSimulator(city)
    start = datetime(2025, 11, 26, 3, 0, tzinfo=PARIS)
    sim.initial(start)
    seen: Counter[str] = Counter()
    for k in range(1, 21):  # 5 minutes
        for _, fragments in sim.tick(start + timedelta(seconds=15 * k)):
            seen.update(f["id"] for f in fragments)
    assert set(seen) == set(sim.ids)


def test_seismometers_report_a_quiet_background_every_minute(city) -> None:
    sim = SeismometerSimulator(city)
    assert len(sim.ids) == 10
    start = datetime(2025, 11, 26, 0, 0, tzinfo=PARIS)
    sim.initial(start)
    night, day = [], []
    count = Counter()
    for k in range(1, 24 * 360 + 1):  # a day, every 10 s
        now = start + timedelta(seconds=10 * k)
        for _, fragments in sim.tick(now):
            for f in fragments:
                count[f["id"]] += 1
                pga = f["peakGroundAcceleration"]["value"]
                assert 0 < pga < 0.01  # far below a felt earthquake (~0.1 m/s²)
                (day if 9 <= now.astimezone(PARIS).hour < 18 else night).append(pga)
    assert set(count.values()) == {1440}
    assert np.median(day) > 1.5 * np.median(night)  # cultural noise in the day
