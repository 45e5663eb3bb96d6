"""The flood crisis view: every flood warning point, most urgent first.

Warning points are ``FloodMonitoring`` entities carrying ``vigilanceLevel`` (written by the
flood app, ``docs/data-contracts.md``). Urgency: vigilance level (red, orange, yellow, green),
then the time to the forecast peak (soonest first; no forecast last), then the name.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cityvisor.client import LocalContextClient

from .alarms import _value
from .layers import KINDS
from .session import ConsoleServices, Operator, json_response, services_of

FLOOD_CONTEXT = KINDS["waterLevels"].context
VIGILANCE_RANK = {"red": 0, "orange": 1, "yellow": 2, "green": 3}
PAGE = 1000


def _sub_value(attr: Any, name: str) -> Any:
    if isinstance(attr, list):
        attr = next((a for a in attr if "datasetId" not in a), attr[0] if attr else None)
    if not isinstance(attr, dict) or not isinstance(attr.get(name), dict):
        return None
    return _value({name: attr[name]}, name)


def warning_point(entity: dict[str, Any]) -> dict[str, Any]:
    address = _value(entity, "address") or {}
    peak = entity.get("forecastPeak")
    forecast = entity.get("forecastFlow")
    leads = forecast if isinstance(forecast, list) else [forecast] if forecast else []
    location = _value(entity, "location")
    return {
        "id": entity["id"],
        "name": _value(entity, "name"),
        "commune": address.get("addressLocality") if isinstance(address, dict) else None,
        "inseeCode": _value(entity, "inseeCode"),
        "vigilanceLevel": _value(entity, "vigilanceLevel"),
        "issuedAt": (entity.get("vigilanceLevel") or {}).get("observedAt")
        if isinstance(entity.get("vigilanceLevel"), dict) else None,
        "currentLevel": _value(entity, "currentLevel"),
        "flow": _value(entity, "flow"),
        "observedAt": (entity.get("flow") or entity.get("currentLevel") or {}).get("observedAt")
        if isinstance(entity.get("flow") or entity.get("currentLevel"), dict) else None,
        "trend": _value(entity, "trend"),
        "forecastPeak": None if peak is None else {
            "value": _value(entity, "forecastPeak"),
            "peakTime": _sub_value(peak, "peakTime"),
            "leadMinutes": _sub_value(peak, "leadMinutes"),
        },
        "forecast": sorted(({"lead": i.get("datasetId", "").rsplit(":", 1)[-1],
                             "validAt": i.get("observedAt"), "value": i.get("value")}
                            for i in leads if isinstance(i, dict)),
                           key=lambda f: f["validAt"] or ""),
        "confidence": _value(entity, "confidence"),
        "confidenceIssues": _value(entity, "confidenceIssues") or [],
        "alertLevel": _value(entity, "alertLevel"),
        "dangerLevel": _value(entity, "dangerLevel"),
        "location": location.get("coordinates") if isinstance(location, dict)
        and location.get("type") == "Point" else None,
    }


def urgency(point: dict[str, Any]) -> tuple[int, int, str, str]:
    peak = point["forecastPeak"] or {}
    peak_time = peak.get("peakTime")
    return (VIGILANCE_RANK.get(point["vigilanceLevel"], 4), 0 if peak_time else 1,
            peak_time or "", point["name"] or point["id"])


async def warning_points(services: ConsoleServices, tenant: str | None) -> list[dict[str, Any]]:
    if not await services.broker.has_tenant(tenant):
        return []
    client = LocalContextClient(services.broker, tenant=tenant, context=FLOOD_CONTEXT)
    points: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = await client.query_entities(type="FloodMonitoring", attrs=None,
                                           q="vigilanceLevel", limit=PAGE, offset=offset)
        points.extend(warning_point(entity) for entity in page)
        if len(page) < PAGE:
            break
        offset += PAGE
    points.sort(key=urgency)
    return points


async def flood_view(request: Request, operator: Operator) -> Response:
    """GET /console/api/flood: the warning points ordered by urgency."""
    points = await warning_points(services_of(request), operator.tenant)
    return json_response({"points": points, "count": len(points)})
