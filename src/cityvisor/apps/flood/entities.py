"""The entities the flood app writes, built from a cycle's decisions: pure functions, no I/O.

* :func:`monitoring_entity`: a warning point, ``FloodMonitoring``
  ``urn:ngsi-ld:FloodMonitoring:nimes:point:<slug>``, with its vigilance, confidence, the
  observed flow and level, and the forecasts, one instance per lead (``datasetId``
  ``urn:ngsi-ld:Dataset:lead:PT1H``..``PT6H``, ``observedAt`` = valid time), so that the
  temporal API keeps one series per lead.
* :func:`alert_entity`: its Smart Data Models ``Alert`` ``urn:ngsi-ld:Alert:flood:<slug>``
  from the first non-green level on: ``workflowState`` ``new`` only when the alert is raised,
  ``validTo`` when it falls back to green, NGSI-LD null on ``validTo`` when a new episode opens.

``docs/data-contracts.md`` is the contract these follow.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from cityvisor.apps.flood.config import Catchment, WarningPoint
from cityvisor.apps.flood.const import TREND_FR
from cityvisor.apps.flood.hours import HOUR
from cityvisor.apps.flood.models import CatchmentResult, Entity, PointReport
from cityvisor.apps.flood.vigilance import LEVEL_FR, SEVERITY, rank
from cityvisor.ngsild.build import date_time, geo_point, prop, relationship
from cityvisor.ngsild.model import NULL

__all__ = ["alert_entity", "monitoring_entity", "point_attributes"]


def point_attributes(point: WarningPoint, data_provider: str) -> dict[str, Any]:
    """What a warning point and its alert share: place, commune, visibility, provider."""
    return {
        "location": geo_point(point.lon, point.lat),
        "address": prop({"addressCountry": "FR", "addressRegion": "Occitanie",
                         "addressLocality": point.commune, "postalCode": point.postal_code}),
        "inseeCode": prop(point.insee_code),
        "visibility": prop("public"),
        "dataProvider": prop(data_provider),
    }


def monitoring_entity(point: WarningPoint, catchment: Catchment, report: PointReport,
                      result: CatchmentResult | None, now: datetime,
                      data_provider: str) -> Entity:
    """The warning point's ``FloodMonitoring`` for the cycle issued at ``now``.

    ``result``: its catchment's model result (None, or ``report.error`` set: the model failed,
    only the vigilance and confidence are written).
    """
    entity: Entity = {
        "id": point.entity_id, "type": "FloodMonitoring",
        "name": prop(point.name), **point_attributes(point, data_provider),
        "vigilanceLevel": prop(report.level, at=now),
        "confidence": prop(report.confidence, unit="C62", at=now),
        "confidenceIssues": prop(report.issues, at=now),
        "trend": prop(report.trend, at=now),
    }
    if point.alert_level_m is not None:
        entity["alertLevel"] = prop(point.alert_level_m, unit="MTR")
    if point.danger_level_m is not None:
        entity["dangerLevel"] = prop(point.danger_level_m, unit="MTR")
    if result is None or report.error is not None:
        return entity
    if report.observed_m3s is not None and result.observed_at is not None:
        entity["flow"] = prop(round(report.observed_m3s, 3), unit="MQS", at=result.observed_at)
        entity["currentLevel"] = prop(round(catchment.rating.level(report.observed_m3s), 3),
                                      unit="MTR", at=result.observed_at)
    if report.forecast_m3s:
        issued = date_time(now)
        flows, stages = [], []
        for lead, q in enumerate(report.forecast_m3s, start=1):
            valid = result.valid_from + lead * HOUR
            dataset = f"urn:ngsi-ld:Dataset:lead:PT{lead}H"
            flows.append(prop(round(q, 3), unit="MQS", at=valid, dataset_id=dataset,
                              issuedAt=issued))
            stages.append(prop(round(catchment.rating.level(q), 3), unit="MTR", at=valid,
                               dataset_id=dataset, issuedAt=issued))
        entity["forecastFlow"] = flows
        entity["forecastLevel"] = stages
        peak_index = int(np.argmax(report.forecast_m3s))
        peak_time = result.valid_from + (peak_index + 1) * HOUR
        entity["forecastPeak"] = prop(
            round(report.forecast_m3s[peak_index], 3), unit="MQS", at=now,
            peakTime=date_time(peak_time),
            leadMinutes=prop(max(0, round((peak_time - now).total_seconds() / 60))))
    return entity


def alert_entity(point: WarningPoint, report: PointReport, now: datetime,
                 written_level: str | None, data_provider: str) -> Entity | None:
    """The warning point's ``Alert`` for the cycle issued at ``now``, or None when there is
    nothing to write: the level is the one already written (``written_level``; None: no alert
    written yet), or the point has never left green."""
    level = report.level
    if level == "green" and written_level in (None, "green"):
        return None  # never alerted, or already closed
    if level == written_level:
        return None
    opening = written_level in (None, "green")
    raised = opening or rank(level) > rank(written_level or "green")
    known = [q for q in (report.observed_m3s, *report.forecast_m3s) if q is not None]
    peak = max(known) if known else None
    if level == "green":
        description = (f"Fin de vigilance crue — {point.name} ({point.commune}) : "
                       f"le débit est revenu sous les seuils.")
    else:
        threshold = point.thresholds.by_level()[level]
        peak_text = f"{peak:.1f} m³/s" if peak is not None else "inconnu"
        description = (
            f"Vigilance {LEVEL_FR[level]} crue — {point.name} ({point.commune}) : débit "
            f"observé ou prévu jusqu'à {peak_text} (seuil {LEVEL_FR[level]} {threshold:g} m³/s), "
            f"tendance {TREND_FR[report.trend]}, confiance {report.confidence:.0%}.")
    alert: Entity = {
        "id": point.alert_id, "type": "Alert",
        "name": prop(f"Crue — {point.name}"),
        "category": prop("weather"), "subCategory": prop("flood"),
        "severity": prop(SEVERITY[level]), "vigilanceLevel": prop(level, at=now),
        "alertSource": relationship(point.entity_id),
        "description": prop(description), "dateIssued": date_time(now),
        "domain": prop("flood"), **point_attributes(point, data_provider),
    }
    if level == "green":
        alert["validTo"] = date_time(now)
    elif opening:  # a new episode: starts now, no end yet
        alert["validFrom"] = date_time(now)
        alert["validTo"] = NULL
    if raised and level != "green":
        alert["workflowState"] = prop("new", at=now)
    return alert
