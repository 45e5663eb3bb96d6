"""The flood app's state between cycles, and its JSON file.

The state is what a restart must not lose: each catchment's forecaster (GR4H stores, the
rain in transit, the last error), each warning point's vigilance (with its hysteresis count),
the level last written on each Alert, and each gauge's value history (for stuck-sensor
detection). It is saved after every cycle to ``<data_dir>/flood-state.json``, atomically; an
unreadable file means a fresh start, logged, never a crash.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cityvisor.apps.flood.config import Catchment, FloodConfig
from cityvisor.apps.flood.const import LOG
from cityvisor.apps.flood.forecaster import CatchmentForecaster
from cityvisor.apps.flood.vigilance import VigilanceState

__all__ = ["STATE_FILE", "STATE_VERSION", "FloodState", "GaugeHistory", "load_state",
           "save_state"]

STATE_FILE = "flood-state.json"
STATE_VERSION = 1

#: one gauge's history: ``value`` (the last one), ``since`` (when it took that value, UTC
#: text) and ``rain_mm`` (basin rain fallen since then)
GaugeHistory = dict[str, Any]


def new_forecaster(catchment: Catchment) -> CatchmentForecaster:
    """A catchment's forecaster in its initial state."""
    return CatchmentForecaster(params=catchment.params, area_km2=catchment.area_km2,
                               gains=catchment.gains, model_weights=catchment.model_weights)


@dataclass
class FloodState:
    """What the app carries from one cycle to the next (see the module docstring)."""

    forecasters: dict[str, CatchmentForecaster] = field(default_factory=dict)
    vigilance: dict[str, VigilanceState] = field(default_factory=dict)
    alert_levels: dict[str, str] = field(default_factory=dict)  # level last written on each Alert
    gauges: dict[str, GaugeHistory] = field(default_factory=dict)

    @classmethod
    def fresh(cls, config: FloodConfig) -> FloodState:
        """The state of a first start."""
        return cls.from_snapshot({}, config)

    @classmethod
    def from_snapshot(cls, data: dict[str, Any], config: FloodConfig) -> FloodState:
        """The state saved in ``data`` (what :meth:`snapshot` gave), for ``config``.

        A catchment whose GR4H parameters or area changed restarts its model; new correction
        settings (gains, model weights) keep it. Unreadable parts are dropped, logged.
        """
        state = cls()
        saved = data.get("forecasters", {})
        for catchment in config.catchments:
            forecaster = None
            if catchment.id in saved:
                try:
                    forecaster = CatchmentForecaster.from_dict(saved[catchment.id])
                except ValueError as error:
                    LOG.warning("flood state of %s unreadable: %s", catchment.id, error)
                if forecaster is not None and (
                        forecaster.params != catchment.params
                        or forecaster.area_km2 != catchment.area_km2):
                    LOG.info("catchment %s reconfigured: its model restarts", catchment.id)
                    forecaster = None
                if forecaster is not None:  # new correction settings: the state stays valid
                    forecaster.gains = catchment.gains
                    forecaster.model_weights = catchment.model_weights
            state.forecasters[catchment.id] = forecaster or new_forecaster(catchment)
        for slug, raw in data.get("vigilance", {}).items():
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                state.vigilance[slug] = VigilanceState.from_dict(raw)
        state.alert_levels = {k: v for k, v in data.get("alerts", {}).items()
                              if isinstance(v, str)}
        state.gauges = {k: v for k, v in data.get("gauges", {}).items() if isinstance(v, dict)}
        return state

    def snapshot(self) -> dict[str, Any]:
        """The state as JSON-able data (what the state file holds)."""
        return {
            "version": STATE_VERSION,
            "forecasters": {cid: f.to_dict() for cid, f in self.forecasters.items()},
            "vigilance": {slug: v.to_dict() for slug, v in self.vigilance.items()},
            "alerts": self.alert_levels,
            "gauges": self.gauges,
        }


def load_state(path: Path | None, config: FloodConfig) -> FloodState:
    """The state saved at ``path`` (None, missing or unreadable: a fresh one)."""
    data: dict[str, Any] = {}
    if path is not None and path.exists():
        try:
            data = json.loads(path.read_text("utf-8"))
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"unknown state version {data.get('version')!r}")
        except (OSError, ValueError) as error:
            LOG.warning("flood state %s unreadable (%s): starting afresh", path, error)
            data = {}
    return FloodState.from_snapshot(data, config)


def save_state(path: Path, state: FloodState) -> None:
    """Write the state to ``path`` atomically (temp file + rename); OSError if it cannot."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state.snapshot()), "utf-8")
    os.replace(tmp, path)
