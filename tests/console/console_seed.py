"""Small seed data for console tests (no demo city: these tests must stay fast)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from links import SDM
from starlette.testclient import TestClient

from cityvisor.config import Settings
from cityvisor.services import Services
from cityvisor.web import create_web_app

LIGHTS = SDM.format("Streetlighting")
ALERTS = SDM.format("Alert")
ENVIRONMENT = SDM.format("Environment")


def _p(value: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **extra}


def _loc(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


def streetlights() -> list[dict[str, Any]]:
    rows = [("on", "ok", 1.0), ("low", "ok", 0.5), ("off", "ok", 0.0), ("off", "defectiveLamp", 0.0)]
    return [{"id": f"urn:ngsi-ld:Streetlight:test:{i + 1}", "type": "Streetlight",
             "location": _loc(4.36 + i / 1000, 43.84), "powerState": _p(power),
             "status": _p(status), "illuminanceLevel": _p(level, unitCode="C62")}
            for i, (power, status, level) in enumerate(rows)]


def alert(slug: str, severity: str, issued: str, *, domain: str = "flood",
          commune: str = "Nîmes", insee: str | None = "30189",
          state: str | None = "new") -> dict[str, Any]:
    entity: dict[str, Any] = {
        "id": f"urn:ngsi-ld:Alert:test:{slug}", "type": "Alert",
        "category": _p("weather"), "subCategory": _p("flood"), "severity": _p(severity),
        "description": _p(f"Alerte {slug}"), "dateIssued": _p({"@type": "DateTime", "@value": issued}),
        "location": _loc(4.36, 43.84), "domain": _p(domain), "inseeCode": _p(insee),
        "address": _p({"addressLocality": commune, "addressCountry": "FR"}),
    }
    if state is not None:
        entity["workflowState"] = _p(state)
    if insee is None:
        del entity["inseeCode"]
    return entity


def warning_point(slug: str, vigilance: str, peak_time: str | None, flow: float) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "id": f"urn:ngsi-ld:FloodMonitoring:nimes:point:{slug}", "type": "FloodMonitoring",
        "name": _p(f"Point {slug}"), "location": _loc(4.35, 43.83),
        "vigilanceLevel": _p(vigilance, observedAt="2026-11-27T10:00:00Z"),
        "flow": _p(flow, unitCode="MQS", observedAt="2026-11-27T10:00:00Z"),
        "trend": _p("rising"), "inseeCode": _p("30189"),
        "forecastFlow": [_p(flow + lead, unitCode="MQS", observedAt=f"2026-11-27T1{lead}:00:00Z",
                            datasetId=f"urn:ngsi-ld:Dataset:lead:PT{lead}H") for lead in (1, 2)],
    }
    if peak_time is not None:
        entity["forecastPeak"] = _p(flow * 2, unitCode="MQS", peakTime=_p(peak_time),
                                    leadMinutes=_p(120))
    return entity


@contextmanager
def console_server(data_dir: Path, *, auth: bool) -> Iterator[tuple[TestClient, Services]]:
    """A TestClient of the whole web app (API, console, portal) on ``data_dir``, and its
    services (to create tokens)."""
    settings = Settings(data_dir=data_dir, auth=auth, allow_context_fetch=False)
    services = Services.build(settings)
    with TestClient(create_web_app(settings, services), base_url="http://127.0.0.1:1026") as client:
        yield client, services
