"""The Occitanie weather simulator: entities, plausible values, gradients, cycles, ticks."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely

from cityvisor.broker.entities import QueryParams
from cityvisor.config import Settings
from cityvisor.data.geo.occitanie import commune_geometry, communes
from cityvisor.services import Services
from cityvisor.sim.weather import (
    WEATHER_CONTEXT,
    OccitanieWeather,
    forecast_id,
    issue_time,
    observed_id,
)

T0 = datetime(2026, 11, 27, 17, 0, tzinfo=UTC)  # 18:00 in Nîmes
COAST = ["34301", "34172", "66136", "11262", "34003"]  # Sète, Montpellier, Perpignan, Narbonne, Agde
MOUNTAINS = ["48095", "66124", "48116", "12119", "65481"]  # Mende, Font-Romeu, Pont-de-Montvert, Laguiole, Barèges
TOULOUSE = "31555"


@pytest.fixture(scope="module")
def weather() -> OccitanieWeather:
    return OccitanieWeather(seed=11)


@pytest.fixture(scope="module")
def initial(weather: OccitanieWeather) -> list[tuple[list[str], list[dict[str, Any]]]]:
    return weather.initial(T0)


def by_code(weather: OccitanieWeather) -> dict[str, int]:
    return {c.code: i for i, c in enumerate(weather.communes)}


def test_one_observation_per_commune_with_the_public_contract(initial: Any) -> None:
    (context, observed), (forecast_context, forecasts) = initial
    assert context == [WEATHER_CONTEXT] == forecast_context
    assert len(observed) == len(communes()) == 4485
    assert len({e["id"] for e in observed}) == 4485
    names = {c.code: c.name for c in communes()}
    for entity in observed:
        code = entity["inseeCode"]["value"]
        assert entity["id"] == observed_id(code) and entity["type"] == "WeatherObserved"
        assert entity["visibility"]["value"] == "public"
        assert entity["address"]["value"]["addressLocality"] == names[code]
        assert entity["address"]["value"]["addressCountry"] == "FR"
        assert entity["temperature"]["unitCode"] == "CEL"
        assert entity["temperature"]["observedAt"] == "2026-11-27T17:00:00Z"
        assert entity["dateObserved"]["value"]["@value"] == "2026-11-27T17:00:00Z"
    assert len(forecasts) == 3 * 4485
    assert {e["visibility"]["value"] for e in forecasts} == {"public"}


def test_stations_lie_in_their_commune(initial: Any) -> None:
    observed = initial[0][1]
    for entity in observed[::7]:
        lon, lat = entity["location"]["value"]["coordinates"]
        polygon = commune_geometry(entity["inseeCode"]["value"])
        # the label point is inside the original polygon; allow the simplification's ~250 m
        assert shapely.distance(polygon, shapely.Point(lon, lat)) < 0.005


def test_values_are_plausible(initial: Any) -> None:
    observed = initial[0][1]

    def values(name: str) -> np.ndarray:
        return np.array([e[name]["value"] for e in observed])

    def within(name: str, low: float, high: float) -> bool:
        column = values(name)
        return bool(low <= column.min() and column.max() <= high)

    assert within("temperature", -15, 25)
    assert within("relativeHumidity", 0.15, 1)
    assert within("windSpeed", 0, 30)
    assert set(values("windDirection").tolist()) <= set(range(0, 360, 10))
    assert within("precipitation", 0, 80)
    assert within("atmosphericPressure", 960, 1050)
    assert {"clearNight", "sunnyDay"} & set(values("weatherType").tolist())


def test_coast_is_warmer_and_mountains_cooler(weather: OccitanieWeather) -> None:
    index = by_code(weather)
    coast, mountains, toulouse = [], [], []
    for day in range(0, 360, 9):  # a whole year, at all hours
        fields = weather.fields(T0 + timedelta(days=day, hours=day % 24))
        coast.append(np.mean([fields.temperature[index[c]] for c in COAST]))
        mountains.append(np.mean([fields.temperature[index[c]] for c in MOUNTAINS]))
        toulouse.append(fields.temperature[index[TOULOUSE]])
    assert statistics.mean(coast) > statistics.mean(toulouse) + 0.8
    assert statistics.mean(toulouse) > statistics.mean(mountains) + 3
    assert 13 < statistics.mean(coast) < 18 and 4 < statistics.mean(mountains) < 11


def test_daily_and_seasonal_cycles(weather: OccitanieWeather) -> None:
    index = by_code(weather)[TOULOUSE]
    afternoon, dawn = [], []
    for day in range(20):
        date = datetime(2026, 6, 1, tzinfo=UTC) + timedelta(days=day)
        afternoon.append(weather.fields(date.replace(hour=14)).temperature[index])
        dawn.append(weather.fields(date.replace(hour=4)).temperature[index])
    assert statistics.mean(afternoon) > statistics.mean(dawn) + 5
    january = [weather.fields(datetime(2026, 1, d, 12, tzinfo=UTC)).temperature[index]
               for d in range(1, 29, 3)]
    july = [weather.fields(datetime(2026, 7, d, 12, tzinfo=UTC)).temperature[index]
            for d in range(1, 29, 3)]
    assert statistics.mean(july) > statistics.mean(january) + 12


def test_deterministic_from_the_seed() -> None:
    a = OccitanieWeather(seed=5, only=["30189", "31555"]).initial(T0)
    b = OccitanieWeather(seed=5, only=["30189", "31555"]).initial(T0)
    c = OccitanieWeather(seed=6, only=["30189", "31555"]).initial(T0)
    assert a == b and a != c


def test_tick_returns_only_what_changed() -> None:
    weather = OccitanieWeather(seed=5, only=["30189", "34172", "48095"])
    weather.initial(T0)
    assert weather.tick(T0) == []  # same instant, same forecast issue: nothing changed
    later = T0 + timedelta(minutes=10)
    (context, fragments), = weather.tick(later)
    assert context == [WEATHER_CONTEXT]
    fresh = {e["id"]: e for e in OccitanieWeather(seed=5, only=["30189", "34172", "48095"])
             .initial(later)[0][1]}
    previous = {e["id"]: e for e in OccitanieWeather(seed=5, only=["30189", "34172", "48095"])
                .initial(T0)[0][1]}
    assert fragments
    for fragment in fragments:
        assert fragment["dateObserved"]["value"]["@value"] == "2026-11-27T17:10:00Z"
        changed = set(fragment) - {"id", "type", "dateObserved"}
        assert changed
        for name in changed:
            assert fragment[name] == fresh[fragment["id"]][name]
            assert fragment[name]["value"] != previous[fragment["id"]][name]["value"]
        unchanged = set(fresh[fragment["id"]]) - set(fragment)
        for name in unchanged:
            if "observedAt" in fresh[fragment["id"]][name]:
                assert fresh[fragment["id"]][name]["value"] == previous[fragment["id"]][name]["value"]


def test_forecasts_are_issued_four_times_a_day() -> None:
    weather = OccitanieWeather(seed=5, only=["30189"])
    (_, _), (_, forecasts) = weather.initial(T0)
    assert [f["id"] for f in forecasts] == [forecast_id("30189", k) for k in (1, 2, 3)]
    first = forecasts[0]
    assert first["dateIssued"]["value"]["@value"] == "2026-11-27T16:00:00Z"
    assert first["validFrom"]["value"]["@value"] == "2026-11-27T23:00:00Z"  # Paris midnight
    assert first["validTo"]["value"]["@value"] == "2026-11-28T23:00:00Z"
    for f in forecasts:
        assert f["dayMinimum"]["value"]["temperature"] <= f["dayMaximum"]["value"]["temperature"]
        assert 0 <= f["precipitationProbability"]["value"] <= 1
    assert issue_time(datetime(2026, 11, 28, 3, 59, tzinfo=UTC)).hour == 22
    assert [len(b) for _, b in weather.tick(T0 + timedelta(hours=4, minutes=59))] == [1]
    batches = weather.tick(T0 + timedelta(hours=5))  # 22:00 UTC: a new issue
    assert len(batches) == 2 and len(batches[1][1]) == 3
    assert all(f["dateIssued"]["value"]["@value"] == "2026-11-27T22:00:00Z"
               for f in batches[1][1])


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="Unknown INSEE"):
        OccitanieWeather(only=["99999"])
    with pytest.raises(ValueError, match="forecast_days"):
        OccitanieWeather(forecast_days=-1)
    with pytest.raises(ValueError, match="timezone"):
        OccitanieWeather(only=["30189"]).fields(datetime(2026, 1, 1))


@pytest.mark.anyio
async def test_initial_and_ticks_are_accepted_by_the_broker(tmp_path: Path) -> None:
    services = Services.build(Settings(data_dir=tmp_path / "data", auth=False,
                                       allow_context_fetch=False))
    try:
        weather = OccitanieWeather(seed=5, only=["30189", "30007", "34172"])
        for context, entities in weather.initial(T0):
            result = await services.broker.batch_upsert("nimes", context, entities)
            assert not result.errors
        later = T0 + timedelta(hours=5)  # also re-issues the forecasts
        for context, fragments in weather.tick(later):
            result = await services.broker.batch_upsert("nimes", context, fragments,
                                                        mode="update")
            assert not result.errors
        stored, _ = await services.broker.query_entities(
            "nimes", [WEATHER_CONTEXT],
            QueryParams(type="WeatherObserved", q='inseeCode=="30189"'))
        assert len(stored) == 1
        assert stored[0]["dateObserved"]["value"]["@value"] == "2026-11-27T22:00:00Z"
        assert stored[0]["visibility"]["value"] == "public"  # untouched by the update
        forecasts, _ = await services.broker.query_entities(
            "nimes", [WEATHER_CONTEXT], QueryParams(type="WeatherForecast", limit=100))
        assert len(forecasts) == 9
        assert {f["dateIssued"]["value"]["@value"] for f in forecasts} == {"2026-11-27T22:00:00Z"}
    finally:
        await services.close()


@pytest.mark.anyio
async def test_runs_in_the_living_city(tmp_path: Path) -> None:
    from cityvisor.client import LocalContextClient
    from cityvisor.sim.live import FakeClock, LiveCity, Simulator

    services = Services.build(Settings(data_dir=tmp_path / "data", auth=False,
                                       allow_context_fetch=False))
    try:
        codes = [c.code for c in communes() if c.departement == "48"]  # Lozère: 158 communes
        weather = OccitanieWeather(seed=5, only=codes, forecast_days=1)
        assert isinstance(weather, Simulator)
        clock = FakeClock(T0)
        live = LiveCity(lambda context: LocalContextClient(
            services.broker, tenant="nimes", context=list(context)), [weather], clock)
        assert await live.write_initial(T0) == 2 * 158
        for k in range(1, 7):  # one simulated hour
            await live.advance_to(T0 + timedelta(minutes=10 * k))
        stats = live.rates()[0]
        assert stats["errors"] == 0 and stats["rejected"] == 0
        assert stats["reports"] >= 5 * 150  # nearly every station reports every 10 minutes
        expected = OccitanieWeather(seed=5, only=codes).fields(T0 + timedelta(hours=1))
        stored, _ = await services.broker.query_entities(
            "nimes", [WEATHER_CONTEXT],
            QueryParams(type="WeatherObserved", q='inseeCode=="48095"'))
        index = codes.index("48095")
        assert stored[0]["temperature"]["value"] == round(float(expected.temperature[index]), 1)
        assert stored[0]["temperature"]["observedAt"] == "2026-11-27T18:00:00Z"
    finally:
        await services.close()
