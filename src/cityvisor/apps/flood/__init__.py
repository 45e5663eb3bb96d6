"""Flood early warning for the cadereaux of Nîmes: discharge forecasts 1–6 h ahead every
5 minutes, vigilance levels and alerts, from the city's rain and water-level gauges and radar.

The app (``manifest.toml``; ``README.md`` says what it reads and writes):

* ``config.py`` (+ the bundled ``nimes.toml``): catchments, warning points, thresholds;
* ``const.py``, ``models.py``: its names and its data;
* ``coordinator.py``: one cycle (read and check the gauges and the radar, run the models,
  decide, write); ``entities.py``: the entities it writes (pure builders); ``state.py``: what a
  restart resumes; ``app.py``: the run loop;
* the science, pure functions on arrays: ``algorithms.py`` (GR4H, scores), ``calibration.py``
  (GR4H parameters), ``forecaster.py`` (the live forecaster), ``nowcast.py`` (radar
  extrapolation), ``rainfall.py``, ``vigilance.py``; its measurement: ``backtest.py`` and
  ``evaluation.py`` (``cityvisor flood evaluate``; ``docs/flood-models.md``);
* ``storm_2014.py``: the demo's scenario, the October 2014 storm replayed over Nîmes.

A host starts it with :func:`setup` (``cityvisor serve`` with ``apps = ["flood"]``);
``cityvisor flood run`` runs it as its own process against any NGSI-LD broker.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cityvisor.apps.contract import AppContext

if TYPE_CHECKING:
    from cityvisor.apps.flood.app import FloodApp

__all__ = ["setup"]


async def setup(context: AppContext) -> FloodApp:
    """Start the app for a host: its config from the setting ``flood_config`` (None: the
    bundled Nîmes one), radar GeoTIFFs from ``flood_radar_dir`` (None: gauges only), its state
    in ``context.data_dir`` (None: in memory only), on the config's tenant.

    Raises :class:`~cityvisor.apps.flood.config.FloodConfigError` for a bad configuration.
    """
    # Imported here: ``cityvisor --help`` imports this package (the flood commands), and the
    # models' imports are not needed for that.
    from cityvisor.apps.flood.app import FloodApp
    from cityvisor.apps.flood.config import load_config
    from cityvisor.apps.flood.sources import FileRadarSource

    config = load_config(_path(context.settings.get("flood_config")))
    radar_dir = _path(context.settings.get("flood_radar_dir"))
    radar = FileRadarSource(radar_dir) if radar_dir is not None else None
    app = FloodApp(context.client(config.tenant), config, radar, data_dir=context.data_dir)
    app.start()
    return app


def _path(value: object) -> Path | None:
    if value is None:
        return None
    if isinstance(value, str | Path):
        return Path(value)
    raise TypeError(f"flood setting: expected a path, got {value!r}")
