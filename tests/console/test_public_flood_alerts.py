"""The flood app's real output (docs/data-contracts.md) reaches the portal, and only while active."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cityvisor.apps.flood.app import FloodApp
from cityvisor.apps.flood.config import parse_config
from cityvisor.client import LocalContextClient
from cityvisor.config import Settings
from cityvisor.console.public import PublicReader
from cityvisor.data.geo.occitanie import communes_by_code
from cityvisor.ngsild.context import sdm_context
from cityvisor.services import Services

pytestmark = pytest.mark.anyio
SDM_WEATHER = sdm_context("Weather")
SDM_ENVIRONMENT = sdm_context("Environment")
T0 = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)


def config() -> Any:
    return parse_config({
        "tenant": "t", "hysteresis": {"margin": 0.2, "cycles": 2},
        "quality": {"max_age_minutes": 90, "stuck_after_hours": 3, "stuck_rain_mm": 10},
        "catchments": [{"id": "a", "name": "Cadereau test", "area_km2": 10.0,
                        "gr4h": [200.0, 0.0, 50.0, 1.5], "rating": {"a": 2.0, "b": 1.6},
                        "course": [[4.34, 43.87], [4.34, 43.83]],
                        "rain_gauges": ["urn:ngsi-ld:WeatherObserved:t:1"],
                        "level_gauges": ["urn:ngsi-ld:FloodMonitoring:t:1"]}],
        "points": [{"slug": "a", "name": "Pont du cadereau", "catchment": "a", "lon": 4.34,
                    "lat": 43.83, "insee_code": "30189", "commune": "Nîmes",
                    "postal_code": "30000",
                    "thresholds": {"yellow_m3s": 3.0, "orange_m3s": 6.0, "red_m3s": 10.0}}]})


async def observe(client: LocalContextClient, when: datetime, rain: float, level: float) -> None:
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    await client.with_context(SDM_WEATHER).upsert_entities([{
        "id": "urn:ngsi-ld:WeatherObserved:t:1", "type": "WeatherObserved",
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [4.34, 43.85]}},
        "precipitation": {"type": "Property", "value": rain, "unitCode": "MMT", "observedAt": stamp}}])
    await client.with_context(SDM_ENVIRONMENT).upsert_entities([{
        "id": "urn:ngsi-ld:FloodMonitoring:t:1", "type": "FloodMonitoring",
        "currentLevel": {"type": "Property", "value": level, "unitCode": "MTR",
                         "observedAt": stamp}}])


async def test_flood_app_alert_shows_on_the_portal_until_it_ends(tmp_path: Path) -> None:
    services = Services.build(Settings(data_dir=tmp_path / "db", auth=False,
                                       allow_context_fetch=False))
    try:
        client = LocalContextClient(services.broker, tenant="t")
        app = FloodApp(client, config(), None, data_dir=tmp_path / "flood")
        portal = PublicReader(services.broker, "t")
        nimes = communes_by_code()["30189"]
        await observe(client, T0, 0.0, 0.3)
        await app.run_cycle(T0 + timedelta(minutes=2))
        view = await portal.commune_view(nimes, T0 + timedelta(minutes=3))
        assert view["alerts"] == []  # green: no alert
        assert [p["vigilanceLevel"]["value"] for p in view["flood"]] == ["green"]

        storm = T0 + timedelta(hours=1)
        await observe(client, storm, 55.0, 1.5)
        report = await app.run_cycle(storm + timedelta(minutes=2))
        level = report.points["a"].level
        assert level in ("orange", "red")
        view = await portal.commune_view(nimes, storm + timedelta(minutes=3))
        (alert,) = view["alerts"]
        assert alert["vigilanceLevel"]["value"] == level
        assert alert["severity"]["value"] == {"orange": "high", "red": "critical"}[level]
        assert "Vigilance" in alert["description"]["value"]
        assert "workflowState" not in alert  # operator workflow stays in the console
        (point,) = view["flood"]
        assert point["vigilanceLevel"]["value"] == level and "forecastPeak" in point
        assert "confidenceIssues" not in point and "forecastFlow" not in point
        assert [a["commune"]["code"] for a in await portal.active_alerts(storm)] == ["30189"]

        for k in range(2, 12):  # recession: back to green, the alert ends (validTo)
            when = T0 + timedelta(hours=k)
            await observe(client, when, 0.0, 0.2)
            report = await app.run_cycle(when + timedelta(minutes=2))
        assert report.points["a"].level == "green"
        later = T0 + timedelta(hours=12)
        assert (await portal.commune_view(nimes, later))["alerts"] == []
        assert await portal.active_alerts(later) == []
    finally:
        await services.close()
