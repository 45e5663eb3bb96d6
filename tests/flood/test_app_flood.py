"""The flood app end to end against the broker: observations in, warning points and alerts out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from cityvisor.api.app import create_app
from cityvisor.apps.flood.app import FloodApp
from cityvisor.apps.flood.config import FloodConfig, parse_config
from cityvisor.apps.flood.const import SDM_ALERT, SDM_ENVIRONMENT, SDM_WEATHER
from cityvisor.apps.flood.dataset import GridTransform
from cityvisor.apps.flood.models import CycleReport
from cityvisor.apps.flood.sources import RadarFrame, lambert93
from cityvisor.client import LocalContextClient
from cityvisor.config import Settings
from cityvisor.services import Services

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)


def make_config(forecast_settings: dict[str, dict[str, Any]] | None = None) -> FloodConfig:
    """Two 10 km² catchments ``a`` and ``b``; ``forecast_settings[id]`` adds catchment keys."""
    def catchment(cid: str, lon: float, n: int) -> dict[str, Any]:
        return {"id": cid, "name": f"Bassin {cid}", "area_km2": 10.0,
                "gr4h": [200.0, 0.0, 50.0, 1.5], "rating": {"a": 2.0, "b": 1.6},
                "course": [[lon, 43.87], [lon, 43.83]],
                "rain_gauges": [f"urn:ngsi-ld:WeatherObserved:t:{n}",
                                f"urn:ngsi-ld:WeatherObserved:t:{n + 1}"],
                "level_gauges": [f"urn:ngsi-ld:FloodMonitoring:t:{n}"],
                **(forecast_settings or {}).get(cid, {})}

    def point(slug: str, lon: float) -> dict[str, Any]:
        return {"slug": slug, "name": f"Point {slug}", "catchment": slug, "lon": lon,
                "lat": 43.83, "insee_code": "30189", "commune": "Nîmes", "postal_code": "30000",
                "thresholds": {"yellow_m3s": 3.0, "orange_m3s": 6.0, "red_m3s": 10.0}}

    return parse_config({
        "tenant": "t", "hysteresis": {"margin": 0.2, "cycles": 2},
        "quality": {"max_age_minutes": 90, "stuck_after_hours": 3, "stuck_rain_mm": 10},
        "catchments": [catchment("a", 4.34, 1), catchment("b", 4.37, 3)],
        "points": [point("a", 4.34), point("b", 4.37)]})


@dataclass
class City:
    services: Services
    client: LocalContextClient
    config: FloodConfig
    data_dir: Path

    async def observe(self, when: datetime, rain: dict[int, Any], levels: dict[int, Any]) -> None:
        weather = self.client.with_context(SDM_WEATHER)
        env = self.client.with_context(SDM_ENVIRONMENT)
        stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        await weather.upsert_entities([{
            "id": f"urn:ngsi-ld:WeatherObserved:t:{n}", "type": "WeatherObserved",
            "location": {"type": "GeoProperty", "value": {
                "type": "Point", "coordinates": [4.34 if n < 3 else 4.37, 43.85]}},
            "precipitation": {"type": "Property", "value": v, "unitCode": "MMT",
                              "observedAt": stamp}} for n, v in rain.items()])
        await env.upsert_entities([{
            "id": f"urn:ngsi-ld:FloodMonitoring:t:{n}", "type": "FloodMonitoring",
            "stationID": {"type": "Property", "value": f"LIM-{n}"},
            "currentLevel": {"type": "Property", "value": v, "unitCode": "MTR",
                             "observedAt": stamp}} for n, v in levels.items()])

    def app(self, radar: Any = None) -> FloodApp:
        return FloodApp(self.client, self.config, radar, data_dir=self.data_dir)

    async def steady_rain(self, app: FloodApp) -> CycleReport:
        """Three hourly cycles under 12 mm/h on every gauge (levels 0.6 m); the last report."""
        for k in range(3):
            when = T0 + timedelta(hours=k)
            await self.observe(when, {1: 12.0, 2: 12.0, 3: 12.0, 4: 12.0}, {1: 0.6, 3: 0.6})
            report = await app.run_cycle(when + timedelta(minutes=2))
        return report

    async def point(self, slug: str) -> dict[str, Any]:
        env = self.client.with_context(SDM_ENVIRONMENT)
        return await env.get_entity(f"urn:ngsi-ld:FloodMonitoring:nimes:point:{slug}")

    async def alert(self, slug: str) -> dict[str, Any]:
        return await self.client.with_context(SDM_ALERT).get_entity(
            f"urn:ngsi-ld:Alert:flood:{slug}", options="keyValues")


@pytest.fixture
async def city(tmp_path: Path) -> AsyncIterator[City]:
    services = Services.build(Settings(data_dir=tmp_path / "db", auth=False,
                                       allow_context_fetch=False))
    client = LocalContextClient(services.broker, tenant="t")
    yield City(services, client, make_config(), tmp_path / "flood")
    await services.close()


async def test_observations_in_forecasts_and_alerts_out(city: City) -> None:
    app = city.app()
    await city.observe(T0, {1: 0.0, 2: 0.0, 3: 0.0, 4: 0.0}, {1: 0.3, 3: 0.3})
    report = await app.run_cycle(T0 + timedelta(minutes=2))
    assert report.errors == [] and {p.level for p in report.points.values()} == {"green"}
    point = await city.point("a")
    forecasts = point["forecastFlow"]
    assert sorted(f["datasetId"] for f in forecasts) == [
        f"urn:ngsi-ld:Dataset:lead:PT{k}H" for k in range(1, 7)]
    assert {f["observedAt"] for f in forecasts} == {
        (T0 + timedelta(hours=k)).strftime("%Y-%m-%dT%H:%M:%SZ") for k in range(1, 7)}
    assert point["vigilanceLevel"]["value"] == "green" and point["confidence"]["value"] == 1.0
    assert point["confidenceIssues"]["value"] == []
    assert point["inseeCode"]["value"] == "30189" and point["visibility"]["value"] == "public"
    assert point["flow"]["value"] == pytest.approx(2.0 * 0.3**1.6, abs=1e-3)

    # A storm on catchment a: heavy rain and a rising level → alert raised at once.
    hour = T0 + timedelta(hours=1)
    await city.observe(hour, {1: 45.0, 2: 55.0, 3: 0.0, 4: 0.0}, {1: 1.5, 3: 0.3})
    report = await app.run_cycle(hour + timedelta(minutes=2))
    level_a = report.points["a"].level
    assert level_a in ("orange", "red") and report.points["b"].level == "green"
    alert = await city.alert("a")
    assert alert["type"] == "Alert" and alert["category"] == "weather"
    assert alert["subCategory"] == "flood" and alert["domain"] == "flood"
    assert alert["severity"] == {"orange": "high", "red": "critical"}[level_a]
    assert alert["vigilanceLevel"] == level_a and alert["workflowState"] == "new"
    assert alert["alertSource"] == "urn:ngsi-ld:FloodMonitoring:nimes:point:a"
    assert "validTo" not in alert and "Vigilance" in alert["description"]
    # the console acknowledges; the app must not touch the workflow afterwards
    await city.client.with_context(SDM_ALERT).merge_entity(
        "urn:ngsi-ld:Alert:flood:a", {"workflowState": {"type": "Property",
                                                        "value": "acknowledged"}})

    # Recession: the level goes down, the vigilance only after 2 calm cycles.
    levels = []
    for k in range(2, 12):
        when = T0 + timedelta(hours=k)
        await city.observe(when, {1: 0.0, 2: 0.0, 3: 0.0, 4: 0.0}, {1: 0.2, 3: 0.3})
        report = await app.run_cycle(when + timedelta(minutes=2))
        levels.append(report.points["a"].level)
    assert levels[-1] == "green"
    assert levels[0] != "green", levels  # hysteresis: not on the first calm cycle (cycles=2)
    alert = await city.alert("a")
    assert alert["vigilanceLevel"] == "green" and alert["severity"] == "informational"
    assert "validTo" in alert and alert["workflowState"] == "acknowledged"
    with pytest.raises(Exception, match="does not exist"):
        await city.alert("b")  # never alerted

    # A new episode reuses the alert: validTo removed, workflow back to new.
    when = T0 + timedelta(hours=12)
    await city.observe(when, {1: 0.0, 2: 0.0, 3: 0.0, 4: 0.0}, {1: 2.2, 3: 0.3})
    report = await app.run_cycle(when + timedelta(minutes=2))
    assert report.points["a"].level in ("orange", "red")
    alert = await city.alert("a")
    assert "validTo" not in alert and alert["workflowState"] == "new"
    assert alert["validFrom"]["@value"] == (when + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_forecast_series_reach_the_temporal_api(city: City) -> None:
    app = city.app()
    for k in range(3):
        when = T0 + timedelta(hours=k)
        await city.observe(when, {1: 5.0 * k, 2: 5.0 * k, 3: 0.0, 4: 0.0}, {1: 0.3, 3: 0.3})
        await app.run_cycle(when + timedelta(minutes=1))
    transport = httpx.ASGITransport(app=create_app(city.services.settings, city.services))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:1026") as http:
        response = await http.get(
            "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:FloodMonitoring:nimes:point:a",
            params={"attrs": "forecastFlow", "options": "temporalValues"},
            headers={"NGSILD-Tenant": "t", "Link": f'<{SDM_ENVIRONMENT}>; rel="http://www.w3'
                     '.org/ns/json-ld#context"; type="application/ld+json"'})
    assert response.status_code == 200, response.text
    series = response.json()["forecastFlow"]
    by_lead = {s["datasetId"]: s["values"] for s in series}
    assert len(by_lead) == 6 and all(len(v) == 3 for v in by_lead.values())


async def test_bad_gauges_lower_confidence_but_never_silence_other_points(city: City) -> None:
    app = city.app()
    # gauge 2 never reports, gauge 1 sends "NaN", level gauge 3 is missing entirely
    await city.observe(T0, {1: "NaN", 3: 1.0, 4: 1.0}, {1: 0.3})
    report = await app.run_cycle(T0 + timedelta(minutes=2))
    a, b = report.points["a"], report.points["b"]
    assert any("valeur invalide" in i for i in a.issues)
    assert any("absent" in i for i in a.issues)
    assert "aucune pluie mesurée sur le bassin" in a.issues
    assert any("LIM-3" in i or "t:3" in i for i in b.issues)
    assert a.confidence < 1 and b.confidence < 1 and report.errors == []
    point = await city.point("b")
    assert point["confidence"]["value"] == b.confidence
    assert point["confidenceIssues"]["value"] == b.issues


async def test_stuck_sensor_is_detected(city: City) -> None:
    app = city.app()
    for k in range(6):  # 6 hours of heavy rain, level gauge 1 frozen at 0.30 m
        when = T0 + timedelta(hours=k)
        rain = 8.0 + 0.5 * k  # a rain gauge stuck at a non-zero value would be flagged too
        await city.observe(when, {1: rain, 2: rain, 3: rain, 4: rain},
                           {1: 0.3, 3: 0.3 + 0.2 * k})
        report = await app.run_cycle(when + timedelta(minutes=1))
    assert any("LIM-1 bloqué" in i for i in report.points["a"].issues)
    assert not any("bloqué" in i for i in report.points["b"].issues)
    assert report.points["a"].confidence < report.points["b"].confidence


async def test_stale_observation(city: City) -> None:
    app = city.app()
    await city.observe(T0, {1: 0.0, 2: 0.0, 3: 0.0, 4: 0.0}, {1: 0.3, 3: 0.3})
    report = await app.run_cycle(T0 + timedelta(hours=3))
    assert any("pas de mesure depuis" in i for i in report.points["a"].issues)


class GappyRadar:
    """A uniform 10 mm/h field over Nîmes, whose frame at ``gap`` is missing."""

    def __init__(self, gap: datetime) -> None:
        x, y = lambert93(4.355, 43.85)
        self.transform = GridTransform(float(x) - 20_000, float(y) + 20_000, 1000.0, 1000.0)
        self.gap = gap

    def frames(self, until: datetime, count: int) -> list[RadarFrame]:
        last = until.replace(minute=0, second=0, microsecond=0)
        hours = [last - timedelta(hours=k) for k in range(count - 1, -1, -1)]
        return [RadarFrame(h, None if h == self.gap else np.full((40, 40), 10.0),
                           self.transform) for h in hours]


async def test_radar_gap_and_radar_rain(city: City) -> None:
    app = city.app(GappyRadar(gap=T0 + timedelta(hours=1)))
    await city.observe(T0, {1: 10.0, 2: 10.0, 3: 10.0, 4: 10.0}, {1: 0.3, 3: 0.3})
    report = await app.run_cycle(T0 + timedelta(minutes=1))
    assert report.radar_frames > 0 and report.points["a"].confidence == 1.0
    assert report.bias == pytest.approx(1.0)
    when = T0 + timedelta(hours=1)
    await city.observe(when, {1: 10.0, 2: 10.0, 3: 10.0, 4: 10.0}, {1: 0.4, 3: 0.4})
    report = await app.run_cycle(when + timedelta(minutes=1))
    assert all(any("lacune radar" in i for i in p.issues) for p in report.points.values())
    assert all(p.confidence < 1 for p in report.points.values())
    assert report.errors == [] and all(p.written for p in report.points.values())


async def test_one_failing_catchment_does_not_stop_the_others(city: City) -> None:
    app = city.app()
    await city.observe(T0, {1: 0.0, 2: 0.0, 3: 0.0, 4: 0.0}, {1: 0.3, 3: 0.3})

    def broken(*args: Any, **kwargs: Any) -> None:
        raise ValueError("model exploded")

    app.state.forecasters["a"].step = broken  # type: ignore[method-assign]
    report = await app.run_cycle(T0 + timedelta(minutes=1))
    assert any("model exploded" in e for e in report.errors)
    assert report.points["a"].confidence == 0.0 and report.points["a"].written
    assert report.points["b"].error is None and report.points["b"].written
    point_a = await city.point("a")
    assert point_a["confidence"]["value"] == 0.0
    assert "calcul impossible" in point_a["confidenceIssues"]["value"][0]


async def test_restart_resumes_the_state(city: City) -> None:
    app = city.app()
    for k in range(3):
        when = T0 + timedelta(hours=k)
        await city.observe(when, {1: 30.0, 2: 30.0, 3: 0.0, 4: 0.0}, {1: 1.5 + k, 3: 0.3})
        await app.run_cycle(when + timedelta(minutes=1))
    before = {cid: f.to_dict() for cid, f in app.state.forecasters.items()}
    level = app.state.vigilance["a"].level
    assert level != "green"
    restarted = city.app()
    assert {cid: f.to_dict() for cid, f in restarted.state.forecasters.items()} == before
    assert restarted.state.vigilance["a"].level == level
    assert restarted.state.alert_levels == app.state.alert_levels
    # the next cycle steps exactly one more hour, and does not re-raise the alert
    when = T0 + timedelta(hours=3)
    await city.observe(when, {1: 30.0, 2: 30.0, 3: 0.0, 4: 0.0}, {1: 4.5, 3: 0.3})
    await restarted.run_cycle(when + timedelta(minutes=1))
    assert restarted.state.forecasters["a"].last_hour == when
    # a corrupt state file: a fresh start, not a crash
    (city.data_dir / "flood-state.json").write_text("{not json", "utf-8")
    fresh = city.app()
    assert fresh.state.forecasters["a"].last_hour is None


async def test_a_radar_that_does_not_cover_the_catchment_is_reported(city: City) -> None:
    radar = GappyRadar(gap=T0 - timedelta(days=1))
    radar.transform = GridTransform(0.0, 1000.0, 1000.0, 1000.0)  # far from Nîmes
    app = city.app(radar)
    await city.observe(T0, {1: 4.0, 2: 4.0, 3: 4.0, 4: 4.0}, {1: 0.3, 3: 0.3})
    report = await app.run_cycle(T0 + timedelta(minutes=1))
    assert all("bassin hors de la couverture radar" in p.issues for p in report.points.values())
    assert report.errors == []


async def test_each_catchment_uses_its_configured_gains_and_future_rain(city: City) -> None:
    # Same catchments, same observations; a assumes no more rain, b twice the last hour's.
    city.config = make_config({
        "a": {"future_rain": "zero", "gains": [0.5, 0.4, 0.3, 0.2, 0.1, 0.0]},
        "b": {"future_rain": "persistence*2"}})
    app = city.app()
    assert app.state.forecasters["a"].gains == (0.5, 0.4, 0.3, 0.2, 0.1, 0.0)
    assert app.state.forecasters["b"].gains == (0.3, 0.3, 0.0, 0.0, 0.0, 0.0)  # the default
    report = await city.steady_rain(app)
    a, b = report.points["a"].forecast_m3s, report.points["b"].forecast_m3s
    # the rain already fallen is in transit in both; only b adds 24 mm/h to come
    assert b[5] > a[5] * 1.5 and b[5] > b[0]
    # a new setting in the configuration takes effect at restart without losing the state
    city.config = make_config({"a": {"gains": [0.0] * 6}})
    restarted = city.app()
    assert restarted.state.forecasters["a"].gains == (0.0,) * 6
    assert restarted.state.forecasters["a"].last_hour == T0 + timedelta(hours=2)


async def test_a_per_lead_future_rain_runs_in_the_app(city: City) -> None:
    # a: no more rain for leads 1-3, twice the last hour's for 4-6; b: twice at every lead.
    city.config = make_config({
        "a": {"future_rain": ["zero", "zero", "zero", "persistence*2", "persistence*2",
                              "persistence*2"]},
        "b": {"future_rain": "persistence*2"}})
    app = city.app()
    report = await city.steady_rain(app)
    assert report.errors == []
    a, b = report.points["a"].forecast_m3s, report.points["b"].forecast_m3s
    assert a[3:] == pytest.approx(b[3:], rel=1e-9)
    assert a[2] < b[2]


async def test_the_ensemble_future_rain_runs_in_the_app(city: City) -> None:
    # a: the mean of the forecasts under the ensemble members' rains; b: no more rain.
    city.config = make_config({"a": {"future_rain": "ensemble"}, "b": {"future_rain": "zero"}})
    app = city.app()
    report = await city.steady_rain(app)
    assert report.errors == []
    a, b = report.points["a"].forecast_m3s, report.points["b"].forecast_m3s
    assert len(a) == 6 and all(x >= y for x, y in zip(a, b, strict=True))
    assert a[5] > b[5]  # three of its four members expect more rain
