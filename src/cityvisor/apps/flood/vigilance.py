"""Vigilance levels with hysteresis, and the trend of a warning point (pure functions).

Levels are ``green < yellow < orange < red``. A level is **raised at once** as soon as the
observed discharge or any forecast within the horizon reaches a threshold; it is **lowered only
after** the highest of those values has stayed below ``threshold × (1 − margin)`` of the current
level for ``cycles`` consecutive cycles. It then drops to the highest level whose lowered
threshold is still reached (possibly several steps at once), so a slowly receding flood steps
down through the levels instead of flickering between two of them.

>>> from cityvisor.apps.flood.config import Hysteresis, Thresholds
>>> t = Thresholds(yellow_m3s=10, orange_m3s=20, red_m3s=40)
>>> h = Hysteresis(margin=0.2, cycles=2)
>>> s = update(None, 5.0, [8.0, 21.0], t, h)   # orange forecast within the horizon: raised
>>> s.level, s.changed
('orange', True)
>>> s = update(s, 18.0, [17.0], t, h)          # below 20 but above 16: no countdown
>>> s.level, s.calm_cycles
('orange', 0)
>>> s = update(s, 12.0, [11.0], t, h); s = update(s, 12.0, [11.0], t, h)
>>> s.level                                    # 2 calm cycles below 16: back to yellow
'yellow'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cityvisor.apps.flood.config import Hysteresis, Thresholds

__all__ = ["LEVELS", "SEVERITY", "VigilanceState", "level_for", "rank", "trend", "update"]

LEVELS = ("green", "yellow", "orange", "red")
#: Smart Data Models Alert ``severity`` of each level (docs/data-contracts.md)
SEVERITY = {"green": "informational", "yellow": "medium", "orange": "high", "red": "critical"}
#: French names for descriptions
LEVEL_FR = {"green": "vert", "yellow": "jaune", "orange": "orange", "red": "rouge"}


def rank(level: str) -> int:
    """0 for green … 3 for red (ValueError on an unknown level)."""
    try:
        return LEVELS.index(level)
    except ValueError:
        raise ValueError(f"unknown vigilance level {level!r} (expected one of {LEVELS})") from None


def level_for(value_m3s: float | None, thresholds: Thresholds, factor: float = 1.0) -> str:
    """The highest level whose threshold × ``factor`` is reached by ``value_m3s``."""
    if value_m3s is None or not math.isfinite(value_m3s):
        return "green"
    reached = "green"
    for level, threshold in thresholds.by_level().items():
        if value_m3s >= threshold * factor:
            reached = level
    return reached


@dataclass(frozen=True, slots=True)
class VigilanceState:
    """The level of one warning point and how many calm cycles have passed below it.

    ``changed`` tells whether the last :func:`update` changed the level; ``raised`` whether it
    raised it.
    """

    level: str = "green"
    calm_cycles: int = 0
    changed: bool = False
    raised: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "calm_cycles": self.calm_cycles}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VigilanceState:
        level = str(data.get("level", "green"))
        rank(level)
        return cls(level=level, calm_cycles=max(int(data.get("calm_cycles", 0)), 0))


def _peak(observed_m3s: float | None, forecast_m3s: Sequence[float]) -> float | None:
    values = [v for v in (observed_m3s, *forecast_m3s)
              if v is not None and math.isfinite(v)]
    return max(values) if values else None


def update(previous: VigilanceState | None, observed_m3s: float | None,
           forecast_m3s: Sequence[float], thresholds: Thresholds,
           hysteresis: Hysteresis) -> VigilanceState:
    """The new state after one cycle.

    ``observed_m3s``: the discharge now (None if unknown); ``forecast_m3s``: the forecasts
    within the horizon (NaN ignored). With nothing known at all the level is kept (an outage is
    not an all-clear) and the calm countdown does not advance.
    """
    previous = previous or VigilanceState()
    peak = _peak(observed_m3s, forecast_m3s)
    if peak is None:
        return VigilanceState(previous.level, previous.calm_cycles)
    target = level_for(peak, thresholds)
    current = rank(previous.level)
    if rank(target) > current:
        return VigilanceState(target, 0, changed=True, raised=True)
    if rank(target) == current:
        return VigilanceState(previous.level, 0)
    # Below the current level's threshold: lower only when clearly below, for long enough.
    lowered = level_for(peak, thresholds, 1.0 - hysteresis.margin)
    if rank(lowered) >= current:
        return VigilanceState(previous.level, 0)  # inside the margin: the countdown restarts
    calm = previous.calm_cycles + 1
    if calm < hysteresis.cycles:
        return VigilanceState(previous.level, calm)
    return VigilanceState(lowered, 0, changed=True)


def trend(observed_m3s: float | None, forecast_m3s: Sequence[float],
          hysteresis: Hysteresis) -> str:
    """``rising`` / ``steady`` / ``falling``: the discharge now vs. the forecast ~3 h ahead.

    The change must exceed both ``trend_relative`` × the current flow and
    ``trend_absolute_m3s``; with no observation the first forecast is the reference.
    """
    values = [v for v in forecast_m3s if v is not None and math.isfinite(v)]
    base = observed_m3s if observed_m3s is not None and math.isfinite(observed_m3s) else None
    if base is None:
        if len(values) < 2:
            return "steady"
        base, values = values[0], values[1:]
    if not values:
        return "steady"
    ahead = values[min(2, len(values) - 1)]
    change = ahead - base
    tolerance = max(hysteresis.trend_relative * abs(base), hysteresis.trend_absolute_m3s)
    if change > tolerance:
        return "rising"
    if change < -tolerance:
        return "falling"
    return "steady"
