"""What a flood cycle works with: checked gauge readings, per-catchment results, per-point
decisions and the cycle's report. Plain data, no I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cityvisor.ngsild.time import format_utc_seconds

__all__ = ["CatchmentResult", "Clock", "CycleReport", "Entity", "PointReport", "Reading"]

#: returns the current time (aware, UTC); the storm scenario passes its scenario clock
Clock = Callable[[], datetime]
#: an NGSI-LD entity or fragment in normalized form, as the ContextClient takes it
Entity = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reading:
    """One gauge reading after quality control: ``value`` is None when it is not usable, and
    ``issue`` then says why (in French: it is shown in ``confidenceIssues``)."""

    gauge_id: str
    value: float | None
    observed_at: datetime | None
    issue: str | None = None
    location: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class CatchmentResult:
    """What one catchment's model gave this cycle (discharges in m³/s at its outlet)."""

    observed_m3s: float | None
    observed_at: datetime | None
    observed_level_m: float | None
    forecast_m3s: list[float]
    valid_from: datetime  # the last stepped hour: forecasts are for +1..+6 h
    confidence: float
    issues: list[str]


@dataclass
class PointReport:
    """What a cycle decided for one warning point."""

    slug: str
    level: str
    previous_level: str
    observed_m3s: float | None
    forecast_m3s: list[float]
    trend: str
    confidence: float
    issues: list[str]
    error: str | None = None
    written: bool = False


@dataclass
class CycleReport:
    """One cycle: issue time, last whole hour, per-point results, errors, timings."""

    issued_at: datetime
    hour: datetime
    points: dict[str, PointReport] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    radar_frames: int = 0
    bias: float = 1.0
    duration_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        """A JSON-able digest (``cityvisor flood run --once`` prints it)."""
        return {
            "issuedAt": format_utc_seconds(self.issued_at),
            "hour": format_utc_seconds(self.hour),
            "durationS": round(self.duration_s, 3), "radarFrames": self.radar_frames,
            "bias": round(self.bias, 3), "errors": self.errors,
            "points": {s: {"level": p.level, "confidence": p.confidence, "trend": p.trend,
                           "peakM3s": round(max(p.forecast_m3s), 2) if p.forecast_m3s else None,
                           "issues": p.issues, "error": p.error}
                       for s, p in self.points.items()},
        }
