"""Radar rainfall sources for the live app, and the geometry that ties them to catchments.

A :class:`RadarSource` hands the app hourly rainfall grids (mm over the hour ending at the frame
time) in Lambert-93 (EPSG:2154), the CRS of Météo-France's radar mosaics and of the Cance
archive. Two implementations:

* :class:`FileRadarSource` reads GeoTIFFs laid out like the Cance archive
  (``prcp/YYYY/MM/DD/rain_precipitation_<t>_<t>.tif``, tenths of mm) from a directory that an
  operator's feed fills; optionally time-shifted, translated and scaled, which is how the
  storm scenario moves the October 2014 storm onto Nîmes (:mod:`cityvisor.apps.flood.storm_2014`).
* :class:`NoRadar`: no radar configured; the app uses its rain gauges alone.

A source can be bounded by a clock (``bound``): asking for a frame after the bound raises
:class:`~cityvisor.apps.flood.dataset.FutureDataError`, so a scenario cannot see its future.

Catchments are located on a grid by :func:`catchment_cells`: the cells whose centres lie within
``area / (2 · length)`` of the cadereau's course (a strip of the catchment's area), at least the
cell under each vertex of the course.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import shapely
from numpy.typing import NDArray

from cityvisor.apps.flood.dataset import (
    RAIN_CONVERSION_FACTOR,
    FutureDataError,
    GridTransform,
    rain_file_for,
    read_geotiff,
)
from cityvisor.apps.flood.hours import HOUR, FloatArray, hour_floor

__all__ = [
    "FileRadarSource",
    "NoRadar",
    "RadarFrame",
    "RadarSource",
    "catchment_cells",
    "hour_floor",
    "lambert93",
]

# --- Lambert-93 (EPSG:2154): Lambert conformal conic, 2 standard parallels, GRS80 -------------
_A = 6378137.0
_F = 1 / 298.257222101
_E = math.sqrt(2 * _F - _F * _F)
_LAT1, _LAT2, _LAT0 = math.radians(44.0), math.radians(49.0), math.radians(46.5)
_LON0 = math.radians(3.0)
_X0, _Y0 = 700000.0, 6600000.0


def _m(phi: float) -> float:
    return math.cos(phi) / math.sqrt(1 - (_E * math.sin(phi)) ** 2)


def _t(phi: Any) -> Any:
    s = np.sin(phi)
    return np.tan(np.pi / 4 - phi / 2) / ((1 - _E * s) / (1 + _E * s)) ** (_E / 2)


_N = (math.log(_m(_LAT1)) - math.log(_m(_LAT2))) / (
    math.log(float(_t(_LAT1))) - math.log(float(_t(_LAT2))))
_BIG_F = _m(_LAT1) / (_N * float(_t(_LAT1)) ** _N)
_RHO0 = _A * _BIG_F * float(_t(_LAT0)) ** _N


def lambert93(lon: Any, lat: Any) -> tuple[Any, Any]:
    """WGS84/RGF93 longitude, latitude (degrees) → Lambert-93 x, y (metres).

    >>> x, y = lambert93(4.3597, 43.8349)   # Nîmes, Maison Carrée
    >>> round(float(x) / 1000), round(float(y) / 1000)
    (809, 6305)
    """
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    lam = np.radians(np.asarray(lon, dtype=np.float64))
    rho = _A * _BIG_F * _t(phi) ** _N
    theta = _N * (lam - _LON0)
    return _X0 + rho * np.sin(theta), _Y0 + _RHO0 - rho * np.cos(theta)


@dataclass(frozen=True, slots=True)
class RadarFrame:
    """Rain (mm) over the hour ending at ``hour`` on a Lambert-93 grid; ``values`` is None when
    the frame is missing (a radar gap). NaN cells are unknown."""

    hour: datetime
    values: FloatArray | None
    transform: GridTransform | None = None


class RadarSource(Protocol):
    """Hourly radar rainfall grids."""

    def frames(self, until: datetime, count: int) -> list[RadarFrame]:
        """The ``count`` hourly frames ending at ``hour_floor(until)``, oldest first (missing
        frames have ``values`` None). Never a frame after ``until``."""
        ...


class NoRadar:
    """No radar: the app relies on rain gauges."""

    def frames(self, until: datetime, count: int) -> list[RadarFrame]:
        return []


@dataclass
class FileRadarSource:
    """GeoTIFF radar frames in the Cance archive layout under ``root``.

    ``time_shift``: the file for hour ``h`` is read for frame ``h + time_shift`` (the storm scenario
    maps 2014 onto today); ``offset_m``: (dx, dy) added to the grid's Lambert-93 origin (moves the
    rain field); ``scale``: multiplies the rain; ``bound``: a clock; frames after it raise
    :class:`FutureDataError`. ``reads`` logs ``(frame hour, bound)`` of every file access, for
    audits and tests.
    """

    root: Path
    time_shift: timedelta = timedelta(0)
    offset_m: tuple[float, float] = (0.0, 0.0)
    scale: float = 1.0
    bound: Callable[[], datetime] | None = None
    reads: list[tuple[datetime, datetime | None]] = field(default_factory=list)
    _cache: dict[datetime, RadarFrame] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not (math.isfinite(self.scale) and self.scale >= 0):
            raise ValueError(f"radar scale must be a finite number >= 0, got {self.scale}")

    def frame(self, hour: datetime) -> RadarFrame:
        """One frame (cached: past frames do not change)."""
        hour = hour_floor(hour)
        limit = hour_floor(self.bound()) if self.bound is not None else None
        if limit is not None and hour > limit:
            raise FutureDataError(f"radar frame {hour.isoformat()} is after the scenario "
                                  f"time {limit.isoformat()}")
        cached = self._cache.get(hour)
        if cached is not None:
            return cached
        self.reads.append((hour, limit))
        path = rain_file_for(self.root, hour - self.time_shift)
        if not path.exists():
            return RadarFrame(hour, None)  # not cached: a late file may still arrive
        raster = read_geotiff(path)
        values = raster.values * RAIN_CONVERSION_FACTOR * self.scale
        values[values < 0] = np.nan
        t = raster.transform
        transform = GridTransform(t.x0_m + self.offset_m[0], t.y0_m + self.offset_m[1],
                                  t.dx_m, t.dy_m)
        frame = RadarFrame(hour, values, transform)
        if len(self._cache) > 48:
            self._cache.pop(min(self._cache))
        self._cache[hour] = frame
        return frame

    def frames(self, until: datetime, count: int) -> list[RadarFrame]:
        last = hour_floor(until)
        return [self.frame(last - k * HOUR) for k in range(count - 1, -1, -1)]


@dataclass(frozen=True, slots=True)
class CellMask:
    """Cells of a grid covering a catchment: flat indices into ``shape``."""

    shape: tuple[int, int]
    transform: GridTransform
    flat: NDArray[np.int64]

    def mean(self, values: FloatArray) -> float:
        """Mean of the non-NaN values over the cells (NaN if none)."""
        picked = values.reshape(-1)[self.flat]
        picked = picked[np.isfinite(picked)]
        return float(picked.mean()) if picked.size else float("nan")

    def coverage(self, values: FloatArray) -> float:
        """Share of the cells with a value."""
        if self.flat.size == 0:
            return 0.0
        return float(np.isfinite(values.reshape(-1)[self.flat]).mean())


def catchment_cells(course_lonlat: Sequence[tuple[float, float]], area_km2: float,
                    transform: GridTransform, shape: tuple[int, int]) -> CellMask:
    """The grid cells of a catchment drawn as a strip of its area around its course."""
    lon = np.array([p[0] for p in course_lonlat])
    lat = np.array([p[1] for p in course_lonlat])
    x, y = lambert93(lon, lat)
    line = shapely.LineString(np.column_stack((x, y)))
    half_width = max(area_km2 * 1e6 / (2 * max(line.length, 1.0)), 0.0)
    cx, cy = transform.centres(shape)
    distance = shapely.distance(line, shapely.points(cx.reshape(-1), cy.reshape(-1)))
    chosen = set(np.flatnonzero(distance <= half_width).tolist())
    for xi, yi in zip(x.tolist(), y.tolist(), strict=True):
        row, col = transform.cell_of(xi, yi)
        if 0 <= row < shape[0] and 0 <= col < shape[1]:
            chosen.add(row * shape[1] + col)
    return CellMask(shape, transform, np.array(sorted(chosen), dtype=np.int64))


def cell_index(lon: float, lat: float, transform: GridTransform,
               shape: tuple[int, int]) -> int | None:
    """Flat index of the cell under a (lon, lat) point, None outside the grid."""
    x, y = lambert93(lon, lat)
    row, col = transform.cell_of(float(x), float(y))
    if 0 <= row < shape[0] and 0 <= col < shape[1]:
        return row * shape[1] + col
    return None
