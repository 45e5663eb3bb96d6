"""The flood app's entity builders (docs/data-contracts.md): pure functions of a cycle's
decisions, checked without a broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from cityvisor.apps.flood.config import FloodConfig, parse_config
from cityvisor.apps.flood.entities import alert_entity, monitoring_entity
from cityvisor.apps.flood.models import CatchmentResult, PointReport
from cityvisor.ngsild.model import NULL

NOW = datetime(2026, 11, 27, 6, 2, tzinfo=UTC)
HOUR = timedelta(hours=1)
PROVIDER = "cityvisor — test"


@pytest.fixture(scope="module")
def config() -> FloodConfig:
    return parse_config({
        "tenant": "t",
        "catchments": [{"id": "a", "name": "Bassin a", "area_km2": 10.0,
                        "gr4h": [200.0, 0.0, 50.0, 1.5], "rating": {"a": 2.0, "b": 1.6},
                        "course": [[4.34, 43.87], [4.34, 43.83]]}],
        "points": [{"slug": "a", "name": "Pont a", "catchment": "a", "lon": 4.34, "lat": 43.83,
                    "insee_code": "30189", "commune": "Nîmes", "postal_code": "30000",
                    "alert_level_m": 1.2,
                    "thresholds": {"yellow_m3s": 3.0, "orange_m3s": 6.0, "red_m3s": 10.0}}]})


def report(level: str = "green", forecast: list[float] | None = None,
           error: str | None = None) -> PointReport:
    return PointReport("a", level, "green", 2.0, forecast if forecast is not None else
                       [2.0, 3.0, 7.5, 5.0, 4.0, 3.0], "rising", 0.9, ["radar gap"], error=error)


def result() -> CatchmentResult:
    return CatchmentResult(observed_m3s=2.0, observed_at=NOW - timedelta(minutes=5),
                           observed_level_m=0.8, forecast_m3s=[2.0, 3.0, 7.5, 5.0, 4.0, 3.0],
                           valid_from=NOW.replace(minute=0), confidence=0.9,
                           issues=["radar gap"])


def test_a_warning_point_carries_one_forecast_instance_per_lead(config: FloodConfig) -> None:
    point, catchment = config.points[0], config.catchments[0]
    entity = monitoring_entity(point, catchment, report(), result(), NOW, PROVIDER)
    assert entity["id"] == "urn:ngsi-ld:FloodMonitoring:nimes:point:a"
    assert entity["type"] == "FloodMonitoring"
    assert entity["location"] == {"type": "GeoProperty",
                                  "value": {"type": "Point", "coordinates": [4.34, 43.83]}}
    assert entity["dataProvider"]["value"] == PROVIDER
    assert entity["alertLevel"] == {"type": "Property", "value": 1.2, "unitCode": "MTR"}
    assert entity["vigilanceLevel"] == {"type": "Property", "value": "green",
                                        "observedAt": "2026-11-27T06:02:00Z"}
    assert entity["confidence"]["unitCode"] == "C62"
    assert entity["flow"]["observedAt"] == "2026-11-27T05:57:00Z"
    assert entity["currentLevel"]["value"] == pytest.approx(catchment.rating.level(2.0), abs=1e-3)
    flows = entity["forecastFlow"]
    assert [f["datasetId"] for f in flows] == [f"urn:ngsi-ld:Dataset:lead:PT{k}H"
                                               for k in range(1, 7)]
    assert [f["observedAt"] for f in flows] == [
        f"2026-11-27T{6 + k:02d}:00:00Z" for k in range(1, 7)]
    assert {f["issuedAt"]["value"]["@value"] for f in flows} == {"2026-11-27T06:02:00Z"}
    assert [f["unitCode"] for f in entity["forecastLevel"]] == ["MTR"] * 6
    peak = entity["forecastPeak"]
    assert peak["value"] == 7.5 and peak["peakTime"]["value"]["@value"] == "2026-11-27T09:00:00Z"
    assert peak["leadMinutes"]["value"] == 178
    json.dumps(entity)  # plain data


def test_a_failed_model_writes_vigilance_and_confidence_only(config: FloodConfig) -> None:
    point, catchment = config.points[0], config.catchments[0]
    entity = monitoring_entity(point, catchment, report(error="ValueError('x')"), result(), NOW,
                               PROVIDER)
    assert "forecastFlow" not in entity and "flow" not in entity
    assert entity["confidenceIssues"]["value"] == ["radar gap"]
    assert monitoring_entity(point, catchment, report(), None, NOW, PROVIDER).keys() == \
        entity.keys()


def test_no_alert_while_a_point_stays_green_or_keeps_its_level(config: FloodConfig) -> None:
    point = config.points[0]
    assert alert_entity(point, report("green"), NOW, None, PROVIDER) is None
    assert alert_entity(point, report("green"), NOW, "green", PROVIDER) is None
    assert alert_entity(point, report("orange"), NOW, "orange", PROVIDER) is None


def test_an_episode_opens_is_raised_lowered_and_closed(config: FloodConfig) -> None:
    point = config.points[0]
    opened = alert_entity(point, report("yellow"), NOW, None, PROVIDER)
    assert opened is not None
    assert opened["id"] == "urn:ngsi-ld:Alert:flood:a" and opened["type"] == "Alert"
    assert opened["category"]["value"] == "weather" and opened["subCategory"]["value"] == "flood"
    assert opened["severity"]["value"] == "medium"
    assert opened["alertSource"] == {"type": "Relationship",
                                     "object": "urn:ngsi-ld:FloodMonitoring:nimes:point:a"}
    assert opened["validFrom"]["value"]["@value"] == "2026-11-27T06:02:00Z"
    assert opened["validTo"] == NULL  # a reopened alert loses the end of its last episode
    assert opened["workflowState"]["value"] == "new"
    assert "Vigilance jaune crue — Pont a (Nîmes)" in opened["description"]["value"]
    assert "7.5 m³/s" in opened["description"]["value"]

    raised = alert_entity(point, report("orange"), NOW, "yellow", PROVIDER)
    assert raised is not None and raised["workflowState"]["value"] == "new"
    assert "validFrom" not in raised and "validTo" not in raised

    lowered = alert_entity(point, report("yellow"), NOW, "orange", PROVIDER)
    assert lowered is not None and "workflowState" not in lowered  # the operator's state stays

    closed = alert_entity(point, report("green"), NOW, "yellow", PROVIDER)
    assert closed is not None and closed["severity"]["value"] == "informational"
    assert closed["validTo"]["value"]["@value"] == "2026-11-27T06:02:00Z"
    assert closed["description"]["value"].startswith("Fin de vigilance crue")
