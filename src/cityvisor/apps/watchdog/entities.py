"""What the watchdog reads in an entity and the Alert it writes: pure functions, no I/O."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from cityvisor.apps.watchdog.const import CATEGORY, SUBCATEGORY
from cityvisor.ngsild.build import date_time, prop, relationship
from cityvisor.ngsild.model import NULL
from cityvisor.ngsild.time import parse_utc_or_none

Entity = dict[str, Any]


def alert_id(device_id: str) -> str:
    """The id of a device's alert (one per device, reused): ``urn:ngsi-ld:Alert:watchdog:...``."""
    return "urn:ngsi-ld:Alert:watchdog:" + device_id.removeprefix("urn:ngsi-ld:")


def last_report(entity: Entity) -> datetime | None:
    """When the entity last reported: the latest of its ``dateLastValueReported`` and of its
    attributes' ``observedAt`` (None: it never says)."""
    times: list[datetime | None] = []
    for name, attr in entity.items():
        for instance in attr if isinstance(attr, list) else [attr]:
            if not isinstance(instance, dict):
                continue
            times.append(parse_utc_or_none(instance.get("observedAt")))
            if name == "dateLastValueReported":  # a DateTime: {"@type", "@value"} or a text
                value = instance.get("value")
                times.append(parse_utc_or_none(
                    value.get("@value") if isinstance(value, dict) else value))
    return max((t for t in times if t is not None), default=None)


def _label(device: Entity) -> str:
    name = device.get("name")
    return str(name["value"]) if isinstance(name, dict) and "value" in name else device["id"]


def silent_alert(device: Entity, last: datetime, now: datetime, limit: timedelta) -> Entity:
    """The alert raised for a device silent since ``last`` (a new episode)."""
    minutes = round((now - last).total_seconds() / 60)
    alert: Entity = {
        "id": alert_id(device["id"]), "type": "Alert",
        "category": prop(CATEGORY), "subCategory": prop(SUBCATEGORY), "domain": prop(CATEGORY),
        "severity": prop("medium"), "alertSource": relationship(device["id"]),
        "name": prop(f"Équipement silencieux — {_label(device)}"),
        "description": prop(f"Aucune donnée de {_label(device)} depuis {minutes} min "
                            f"(seuil {limit.total_seconds() / 60:g} min)."),
        "dateIssued": date_time(now), "validFrom": date_time(now), "validTo": NULL,
        "workflowState": prop("new", at=now),
    }
    if isinstance(device.get("location"), dict):
        alert["location"] = device["location"]
    return alert


def cleared_alert(device: Entity, now: datetime) -> Entity:
    """The merge that closes a device's alert once it reports again."""
    return {
        "id": alert_id(device["id"]), "type": "Alert", "severity": prop("informational"),
        "description": prop(f"{_label(device)} transmet de nouveau."), "validTo": date_time(now),
    }
