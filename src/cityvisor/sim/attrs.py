"""NGSI-LD attribute builders shared by the city description and the simulators."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def iso(t: datetime) -> str:
    """``t`` as an ISO 8601 UTC timestamp with seconds (``2025-11-27T17:30:00Z``)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def date_time(at: str) -> dict[str, Any]:
    """A DateTime Property (``{"@type": "DateTime", "@value": at}``)."""
    return {"type": "Property", "value": {"@type": "DateTime", "@value": at}}


def prop(value: Any, unit: str | None = None, at: str | None = None) -> dict[str, Any]:
    """A Property with, when given, its UN/CEFACT ``unitCode`` and ``observedAt``."""
    attr: dict[str, Any] = {"type": "Property", "value": value}
    if unit:
        attr["unitCode"] = unit
    if at:
        attr["observedAt"] = at
    return attr


def observed(value: Any, at: str, unit: str | None = None) -> dict[str, Any]:
    """A Property observed at ``at`` (with its UN/CEFACT ``unit``: a fragment sent alone in a
    merge keeps the attribute's other members, but the unit is restated for other brokers)."""
    return prop(value, unit, at)


__all__ = ["date_time", "iso", "observed", "prop"]
