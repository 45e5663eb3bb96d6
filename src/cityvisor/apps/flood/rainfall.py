"""Basin rainfall for the live app: the radar over each catchment, scaled by the rain gauges.

* :func:`gauge_bias`: the mean-field bias Σ gauge / Σ radar at the rain gauges of this hour
  (clipped to :data:`~cityvisor.apps.flood.const.BIAS_LIMITS`; 1 with fewer than 2 wet
  pairs), which corrects the radar's systematic error;
* :class:`BasinRainfall`: the radar mean over a catchment's cells × that bias (the cells of
  each catchment on each grid are computed once and cached);
* :func:`nowcast_grids`: the radar extrapolated over the next hours from the last consecutive
  frames (:func:`~cityvisor.apps.flood.nowcast.nowcast`).

Pure computations on frames already read: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime

import numpy as np

from cityvisor.apps.flood.config import Catchment
from cityvisor.apps.flood.const import BIAS_LIMITS
from cityvisor.apps.flood.hours import FloatArray
from cityvisor.apps.flood.models import Reading
from cityvisor.apps.flood.nowcast import consecutive_frames, nowcast
from cityvisor.apps.flood.sources import CellMask, RadarFrame, catchment_cells, cell_index

__all__ = ["BasinRainfall", "NowcastGrids", "gauge_bias", "nowcast_grids"]

#: the nowcast (leads, ny, nx) and the frame whose grid it lies on
NowcastGrids = tuple[FloatArray, RadarFrame]
#: below this share of a catchment's cells with a value, the radar does not see the catchment
MIN_COVERAGE = 0.5


def gauge_bias(frame: RadarFrame | None, rain: Mapping[str, Reading]) -> float:
    """Mean-field bias Σ gauge / Σ radar over the gauges (1 when not measurable)."""
    if frame is None or frame.values is None or frame.transform is None:
        return 1.0
    gauge_sum = radar_sum = 0.0
    pairs = 0
    flat = frame.values.reshape(-1)
    shape = (int(frame.values.shape[0]), int(frame.values.shape[1]))
    for reading in rain.values():
        if reading.value is None or reading.location is None:
            continue
        index = cell_index(*reading.location, frame.transform, shape)
        if index is None or not math.isfinite(flat[index]):
            continue
        gauge_sum += reading.value
        radar_sum += float(flat[index])
        pairs += 1
    if pairs < 2 or radar_sum < 1.0 or gauge_sum < 1.0:
        return 1.0
    return float(min(max(gauge_sum / radar_sum, BIAS_LIMITS[0]), BIAS_LIMITS[1]))


def nowcast_grids(frames: Mapping[datetime, RadarFrame], hour: datetime,
                  leads: int) -> NowcastGrids | None:
    """Rain grids for the next ``leads`` hours from the last frames up to ``hour`` (None
    without a frame at ``hour``). ValueError if the frames cannot be extrapolated (grids of
    different shapes)."""
    latest = frames.get(hour)
    if latest is None or latest.values is None:
        return None
    recent = consecutive_frames([(h, frames[h].values) for h in sorted(frames) if h <= hour])
    grids = nowcast(recent, leads=leads)
    return np.asarray(grids, dtype=np.float64), latest


class BasinRainfall:
    """Radar rain over catchments; remembers each catchment's cells on each grid."""

    def __init__(self) -> None:
        self._masks: dict[tuple[str, tuple[int, int], object], CellMask] = {}

    def mask(self, catchment: Catchment, frame: RadarFrame) -> CellMask:
        """The cells of ``catchment`` on the grid of ``frame`` (which must have values)."""
        if frame.values is None or frame.transform is None:
            raise ValueError(f"radar frame {frame.hour.isoformat()} has no grid")
        shape = (int(frame.values.shape[0]), int(frame.values.shape[1]))
        key = (catchment.id, shape, frame.transform)
        mask = self._masks.get(key)
        if mask is None:
            mask = catchment_cells(catchment.course, catchment.area_km2, frame.transform, shape)
            self._masks[key] = mask
        return mask

    def radar_rain(self, catchment: Catchment, frame: RadarFrame | None, bias: float) -> float:
        """Basin rain (mm) of ``frame`` × ``bias``; NaN when the frame is missing or does not
        cover the catchment."""
        if frame is None or frame.values is None:
            return float("nan")
        mask = self.mask(catchment, frame)
        if mask.coverage(frame.values) < MIN_COVERAGE:
            return float("nan")
        return mask.mean(frame.values) * bias

    def nowcast_rain(self, catchment: Catchment, future: NowcastGrids, bias: float,
                     leads: int) -> list[float] | None:
        """Basin rain (mm) of each nowcast hour × ``bias``; None when the radar does not cover
        the catchment."""
        grids, latest = future
        mask = self.mask(catchment, latest)
        if latest.values is None or mask.coverage(latest.values) < MIN_COVERAGE:
            return None
        return [mask.mean(grids[k]) * bias for k in range(min(leads, len(grids)))]
