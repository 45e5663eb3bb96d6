"""The demo's storm scenario: the real storm of 9–13 October 2014 (Cance, Ardèche) replayed
over Nîmes.

**A scenario, clearly labelled.** Every entity it writes carries ``dataProvider`` and ``source``
= :data:`~cityvisor.apps.flood.const.STORM_2014_LABEL`. The data are real: hourly radar grids
and gauged discharge of the Cance (``../shared/data/flood/cance``, GPL-3.0 data from the smash
project, read by path, never copied into the package). They are moved as follows:

* **Space.** The radar grid (Lambert-93, 1 km) is translated so that the rain-weighted centre of
  the storm's total lands on the centre of the cadereaux (clamped so that Nîmes stays well inside
  the 40 × 40 km grid), and multiplied by ``intensity`` (default 2: the October 2014 storm peaked
  at 12 mm/h over the Cance basin; 3 October 1988 brought 420 mm over Nîmes in a few hours).
* **Time.** ``start`` (the first ``now`` given) corresponds to ``storm_start``; scenario time
  then runs ``acceleration`` times faster than the ``now`` it is given
  (:meth:`scenario_time`), so a 4-day storm plays in ~1.5 h at ×60. Entities are stamped with
  scenario time.
* **Gauges.** Each rain gauge of a catchment reports (``WeatherObserved.precipitation``, mm over
  the last hour) the moved radar rain at one of the catchment's cells (gauge k on cell k of the
  catchment, in turn). Water levels (``FloodMonitoring.currentLevel``) come from the real
  discharge of the Cance gauge closest in area (25 km² for the cadereaux, 107 km² for the Vistre):
  its specific discharge (m³/s/km²) × the catchment's area × ``intensity`` (× the share of the
  area upstream of gauges that are not the outlet), converted to a level by the catchment's
  rating curve. A missing Cance value leaves the gauge silent for that hour.

Usage (the living demo schedules it as a ``Simulator``; the flood app reads the gauges it
drives, on the scenario's clock)::

    scenario = Storm2014Scenario(load_config(), data_dir=Path("../shared/data/flood/cance"))
    batches = scenario.initial(now)      # [] : it creates nothing, it starts the clock
    batches = scenario.tick(now)         # [(context, [gauge fragments])...] to merge
    services.app_setups.append(("flood", scenario.app_setup))  # the app on the scenario

It never reads data after its scenario time: the radar through a bounded
:class:`~cityvisor.apps.flood.sources.FileRadarSource`, discharge through
:class:`~cityvisor.apps.flood.dataset.ObservedDischarge`; both raise
:class:`~cityvisor.apps.flood.dataset.FutureDataError` otherwise.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from cityvisor.apps.contract import AppContext
from cityvisor.apps.flood.app import FloodApp
from cityvisor.apps.flood.config import Catchment, FloodConfig
from cityvisor.apps.flood.const import SDM_ENVIRONMENT, SDM_WEATHER, STORM_2014_LABEL
from cityvisor.apps.flood.dataset import (
    ObservedDischarge,
    load_discharge,
    load_gauges,
    rain_file_for,
    read_geotiff,
)
from cityvisor.apps.flood.hours import HOUR
from cityvisor.apps.flood.models import Clock, Entity
from cityvisor.apps.flood.sources import (
    FileRadarSource,
    GridTransform,
    catchment_cells,
    hour_floor,
    lambert93,
)
from cityvisor.ngsild.time import format_utc_seconds, utc_now

__all__ = ["STORM_END", "STORM_START", "ScenarioDataMissing", "Storm2014Scenario"]

STORM_START = datetime(2014, 10, 9, 12, tzinfo=UTC)
STORM_END = datetime(2014, 10, 13, 18, tzinfo=UTC)
DEFAULT_DATA_DIR = Path("../shared/data/flood/cance")
#: Centre of the cadereaux (lon, lat), where the storm is moved.
NIMES_TARGET = (4.350, 43.845)
#: Nîmes must stay this far (m) inside the moved grid.
EDGE_MARGIN_M = 9000.0

#: what ``initial``/``tick`` return, as the demo's simulators do: (@contexts, fragments)
Batch = tuple[list[str], list[Entity]]


class ScenarioDataMissing(FileNotFoundError):
    """The Cance data set is not where the scenario looks for it."""


class Storm2014Scenario:
    """The October 2014 storm replayed over Nîmes (see the module docstring).

    ``period_s``: how often (in the caller's clock) a tick is useful: one scenario-hour step
    every ``3600 / acceleration`` s, ticked 4× per scenario hour.
    """

    name = "flood-2014"

    def __init__(self, config: FloodConfig, *, data_dir: str | Path = DEFAULT_DATA_DIR,
                 acceleration: float = 60.0, intensity: float = 2.0,
                 storm_start: datetime = STORM_START, storm_end: datetime = STORM_END,
                 start: datetime | None = None) -> None:
        self.root = Path(data_dir)
        if not (self.root / "prcp").is_dir() or not (self.root / "qobs").is_dir():
            raise ScenarioDataMissing(
                f"the October 2014 storm scenario needs the Cance data set (prcp/, qobs/, "
                f"gauge_attributes.csv) at {self.root.resolve()}: it is not there. Pass "
                f"data_dir= (CLI: --replay-data DIR) pointing at ../shared/data/flood/cance")
        if not (math.isfinite(acceleration) and acceleration > 0):
            raise ValueError(f"acceleration must be > 0, got {acceleration}")
        if not (math.isfinite(intensity) and intensity > 0):
            raise ValueError(f"intensity must be > 0, got {intensity}")
        self.config = config
        self.acceleration = acceleration
        self.intensity = intensity
        self.storm_start = hour_floor(storm_start)
        self.storm_end = hour_floor(storm_end)
        self.period_s = 900.0 / acceleration
        self.start: datetime | None = None
        self.offset_m = self._offset()
        self._gauges = {g.code: g for g in load_gauges(self.root)}
        self._discharge: dict[str, ObservedDischarge] = {}
        self._radar: FileRadarSource | None = None
        self._cells: dict[str, list[int]] = {}
        if start is not None:
            self._begin(start)

    # --- geometry -------------------------------------------------------------------------------

    def _offset(self) -> tuple[float, float]:
        """Translation (m) putting the storm's rain-weighted centre on Nîmes (clamped)."""
        total: np.ndarray | None = None
        transform: GridTransform | None = None
        hour = self.storm_start
        while hour <= self.storm_end:
            path = rain_file_for(self.root, hour)
            if path.exists():
                raster = read_geotiff(path)
                values = np.nan_to_num(np.maximum(raster.values, 0.0))
                total = values if total is None else total + values
                transform = raster.transform
            hour += HOUR
        if total is None or transform is None or total.sum() <= 0:
            raise ScenarioDataMissing(f"no radar grid for {self.storm_start:%Y-%m-%d} .. "
                                    f"{self.storm_end:%Y-%m-%d} under {self.root}")
        cx, cy = transform.centres(total.shape)  # type: ignore[arg-type]
        weight = total / total.sum()
        storm_x, storm_y = float((cx * weight).sum()), float((cy * weight).sum())
        target_x, target_y = (float(v) for v in lambert93(*NIMES_TARGET))
        dx, dy = target_x - storm_x, target_y - storm_y
        # Clamp so that the target stays EDGE_MARGIN_M inside the moved grid.
        ny, nx = total.shape
        left = transform.x0_m + dx
        right = left + nx * transform.dx_m
        top = transform.y0_m + dy
        bottom = top - ny * transform.dy_m
        dx += max(0.0, target_x + EDGE_MARGIN_M - right) - max(0.0, left - target_x
                                                                + EDGE_MARGIN_M)
        dy += max(0.0, target_y + EDGE_MARGIN_M - top) - max(0.0, bottom - target_y
                                                              + EDGE_MARGIN_M)
        return round(dx), round(dy)

    # --- clock ----------------------------------------------------------------------------------

    def _begin(self, now: datetime) -> None:
        self.start = now.astimezone(UTC)
        shift = hour_floor(self.start) - self.storm_start
        self.shift = shift
        self._radar = FileRadarSource(self.root, time_shift=shift, offset_m=self.offset_m,
                                      scale=self.intensity, bound=self._bound)
        self._now = self.start

    def _bound(self) -> datetime:
        return self.scenario_time(self._now)

    def scenario_time(self, now: datetime) -> datetime:
        """Scenario time for a caller's ``now`` (starts at ``start``, runs ×acceleration)."""
        if self.start is None:
            raise RuntimeError("the storm scenario has not started: call initial(now) first")
        return self.start + (now.astimezone(UTC) - self.start) * self.acceleration

    def storm_time(self, scenario: datetime) -> datetime:
        """The 2014 time replayed at a scenario time."""
        return scenario - self.shift

    def clock(self, wall: Clock) -> Clock:
        """A clock for the flood app: scenario time of ``wall()`` (also advances the bound)."""
        def now() -> datetime:
            current = wall()
            self._now = max(self._now, current)
            return self.scenario_time(current)
        return now

    def radar_source(self) -> FileRadarSource:
        """The moved radar, bounded by the scenario time of the last ``tick``/clock call."""
        if self._radar is None:
            raise RuntimeError("the storm scenario has not started: call initial(now) first")
        return self._radar

    @property
    def finished(self) -> bool:
        return self.start is not None and self.storm_time(
            self.scenario_time(self._now)) > self.storm_end

    # --- the flood app on the scenario -----------------------------------------------------

    async def app_setup(self, context: AppContext) -> FloodApp:
        """Start the flood app on this scenario (an :data:`~cityvisor.apps.contract.AppSetup`,
        for ``Services.app_setups``): on the scenario clock and the moved radar, one cycle every
        ``cycle_minutes / acceleration`` (wall time), labelled with
        :data:`~cityvisor.apps.flood.const.STORM_2014_LABEL`, its state in memory only (each
        run of the scenario is a new one: a restart must not resume an older one).
        ``context.data_dir`` is not used. The scenario must have started (``initial``)."""
        config = self.config
        app = FloodApp(context.client(config.tenant), config, self.radar_source(),
                       self.clock(utc_now), data_dir=None, data_provider=STORM_2014_LABEL,
                       cycle_interval_s=config.cycle_seconds / self.acceleration)
        app.start()
        return app

    # --- batches --------------------------------------------------------------------------------

    def initial(self, now: datetime) -> list[Batch]:
        """Start the scenario clock at ``now``; nothing to create (the demo has the gauges)."""
        if self.start is None:
            self._begin(now)
        return []

    def _discharge_of(self, catchment: Catchment) -> ObservedDischarge:
        code = min(self._gauges, key=lambda c: abs(math.log(self._gauges[c].area_km2
                                                            / catchment.area_km2)))
        if code not in self._discharge:
            start, values = load_discharge(self.root, code)
            self._discharge[code] = ObservedDischarge(start, values, self.storm_start)
        return self._discharge[code]

    def _cells_of(self, catchment: Catchment, shape: tuple[int, int],
                  transform: GridTransform) -> list[int]:
        if catchment.id not in self._cells:
            mask = catchment_cells(catchment.course, catchment.area_km2, transform, shape)
            self._cells[catchment.id] = mask.flat.tolist()
        return self._cells[catchment.id]

    def tick(self, now: datetime) -> list[Batch]:
        """Gauge fragments for the scenario hour reached at ``now`` (merge them)."""
        if self.start is None:
            self._begin(now)
        self._now = max(self._now, now.astimezone(UTC))
        scenario = self.scenario_time(self._now)
        hour = hour_floor(scenario)
        storm_hour = self.storm_time(hour)
        if storm_hour < self.storm_start or storm_hour > self.storm_end:
            return []
        frame = self.radar_source().frame(hour)
        stamp = format_utc_seconds(scenario)
        label = {"dataProvider": {"type": "Property", "value": STORM_2014_LABEL},
                 "source": {"type": "Property", "value": STORM_2014_LABEL}}
        rain_out: list[Entity] = []
        level_out: list[Entity] = []
        for catchment in self.config.catchments:
            if frame.values is not None and frame.transform is not None:
                cells = self._cells_of(catchment, frame.values.shape,  # type: ignore[arg-type]
                                       frame.transform)
                flat = frame.values.reshape(-1)
                for k, gauge in enumerate(catchment.rain_gauges):
                    value = float(flat[cells[k % len(cells)]]) if cells else float("nan")
                    if math.isfinite(value):
                        rain_out.append({"id": gauge, "type": "WeatherObserved", **label,
                                         "precipitation": {"type": "Property",
                                                           "value": round(value, 1),
                                                           "unitCode": "MMT",
                                                           "observedAt": stamp}})
            discharge = self._discharge_of(catchment)
            discharge.advance(storm_hour)
            specific = discharge.at(storm_hour) / self._gauge_area(discharge)
            if not (math.isfinite(specific) and specific >= 0):
                continue
            n = len(catchment.level_gauges)
            for k, gauge in enumerate(catchment.level_gauges):  # outlet first
                share = (n - k) / n
                q = specific * catchment.area_km2 * share * self.intensity
                level = catchment.rating.level(q)
                level_out.append({"id": gauge, "type": "FloodMonitoring", **label,
                                  "currentLevel": {"type": "Property", "value": round(level, 3),
                                                   "unitCode": "MTR", "observedAt": stamp}})
        batches: list[Batch] = []
        if rain_out:
            batches.append(([SDM_WEATHER], rain_out))
        if level_out:
            batches.append(([SDM_ENVIRONMENT], level_out))
        return batches

    def _gauge_area(self, discharge: ObservedDischarge) -> float:
        for code, series in self._discharge.items():
            if series is discharge:
                return self._gauges[code].area_km2
        raise KeyError("unknown discharge series")  # pragma: no cover
