"""Readers for a smash-style flood data set (gauges, discharge, radar rainfall, PET grids).

The layout is that of the smash project's Cance test case (``../shared/data/flood/cance``
beside the repository; GPL-3.0 data, read by path and never copied into this repository)::

    gauge_attributes.csv                    code,x,y,area  (Lambert-93 metres, km²)
    qobs/CODE.csv                           start %Y%m%d%H%M, then one m³/s value per hour
    prcp/YYYY/MM/DD/rain_precipitation_<t>_<t>.tif   hourly radar rain, tenths of mm/h
    pet/MMDD_ETPJIA.tif                     daily interannual PET, mm/day

Time convention (smash's): the rainfall file stamped ``t`` holds the rain accumulated over the
hour *ending* at ``t``; it is therefore known at ``t``. All times are UTC.

A back-test must never see the future, so grids are only read through :class:`RadarArchive`
and discharge through :class:`ObservedDischarge`, both built with an ``until`` bound (the issue
time) that refuses any hour after it.
GeoTIFFs are read with ``tifffile`` (+ ``imagecodecs`` for LZW), from the ``flood`` extra.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from cityvisor.apps.flood.hours import HOUR, FloatArray, hour_floor, require_utc_hour

__all__ = [
    "FutureDataError",
    "Gauge",
    "GridTransform",
    "IssueTimeBound",
    "ObservedDischarge",
    "RadarArchive",
    "Raster",
    "hour_floor",
    "load_discharge",
    "load_gauges",
    "pet_file_for",
    "rain_file_for",
    "read_geotiff",
]

#: Radar files store tenths of mm per hour.
RAIN_CONVERSION_FACTOR = 0.1

_MODEL_PIXEL_SCALE = 33550
_MODEL_TIEPOINT = 33922
_GEO_KEY_DIRECTORY = 34735
_GDAL_NODATA = 42113
_GT_RASTER_TYPE_KEY = 1025
_RASTER_PIXEL_IS_POINT = 2


class FutureDataError(LookupError):
    """An hour after the archive's ``until`` bound was requested (it would leak the future)."""


@dataclass(frozen=True, slots=True)
class Gauge:
    """A discharge gauge: its code, Lambert-93 position (m) and drained area (km²)."""

    code: str
    x_m: float
    y_m: float
    area_km2: float


@dataclass(frozen=True, slots=True)
class GridTransform:
    """North-up affine grid: ``(x0_m, y0_m)`` is the outer upper-left corner of cell (0, 0).

    Cell ``(row, col)`` spans x in ``[x0 + col·dx, x0 + (col+1)·dx)`` and y in
    ``(y0 - (row+1)·dy, y0 - row·dy]``.
    """

    x0_m: float
    y0_m: float
    dx_m: float
    dy_m: float

    def cell_of(self, x_m: float, y_m: float) -> tuple[int, int]:
        """``(row, col)`` of the cell that contains the point (may be outside the grid)."""
        col = math.floor((x_m - self.x0_m) / self.dx_m)
        row = math.floor((self.y0_m - y_m) / self.dy_m)
        return row, col

    def centres(self, shape: tuple[int, int]) -> tuple[FloatArray, FloatArray]:
        """Cell-centre coordinates ``(x, y)`` as two 2-D arrays of ``shape``."""
        rows, cols = np.indices(shape, dtype=np.float64)
        return self.x0_m + (cols + 0.5) * self.dx_m, self.y0_m - (rows + 0.5) * self.dy_m

    @property
    def cell_area_km2(self) -> float:
        return self.dx_m * self.dy_m / 1e6


@dataclass(frozen=True, slots=True)
class Raster:
    """A single-band grid as float64 (nodata → NaN) with its transform."""

    values: FloatArray
    transform: GridTransform

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape  # type: ignore[return-value]


# --- tabular data ------------------------------------------------------------------------------


def load_discharge(root: str | Path, code: str) -> tuple[datetime, FloatArray]:
    """Hourly discharge of gauge ``code`` from ``root/qobs/CODE.csv``.

    Returns ``(start, values_m3s)``: ``values_m3s[i]`` is the discharge at ``start + i`` hours
    (UTC); negative values in the file (e.g. -99) mean missing and become NaN.
    """
    path = Path(root) / "qobs" / f"{code}.csv"
    with path.open() as fh:
        first = fh.readline().strip()
        start = datetime.strptime(first, "%Y%m%d%H%M").replace(tzinfo=UTC)
        values = np.loadtxt(fh, dtype=np.float64, ndmin=1)
    values[values < 0] = np.nan
    return start, values


def load_gauges(root: str | Path) -> list[Gauge]:
    """Gauges from ``root/gauge_attributes.csv`` (``code,x,y,area``; Lambert-93 m, km²)."""
    path = Path(root) / "gauge_attributes.csv"
    with path.open(newline="") as fh:
        return [
            Gauge(
                code=row["code"].strip(),
                x_m=float(row["x"]),
                y_m=float(row["y"]),
                area_km2=float(row["area"]),
            )
            for row in csv.DictReader(fh)
        ]


# --- GeoTIFF ------------------------------------------------------------------------------------


def _parse_nodata(raw: object) -> float | None:
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    text = text.strip().strip("\x00")
    try:
        return float(text)
    except ValueError:
        return None


def read_geotiff(path: str | Path) -> Raster:
    """Read band 1 of a north-up GeoTIFF: values (float64, nodata → NaN) and transform.

    The transform comes from the ModelTiepoint and ModelPixelScale tags; a raster declared as
    PixelIsPoint (GTRasterTypeGeoKey = 2) has its tiepoint on the cell centre and is shifted by
    half a cell so that every :class:`GridTransform` refers to outer cell corners.
    """
    import tifffile  # from the `flood` extra

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        if not isinstance(page, tifffile.TiffPage):  # the first page is never a bare frame
            raise ValueError(f"{path}: no TIFF page")
        tags = page.tags
        raw = page.asarray()
        scale = tags[_MODEL_PIXEL_SCALE].value
        tie = tags[_MODEL_TIEPOINT].value
        keys = tags[_GEO_KEY_DIRECTORY].value if _GEO_KEY_DIRECTORY in tags else ()
        nodata_tag = tags.get(_GDAL_NODATA)
        nodata = _parse_nodata(nodata_tag.value) if nodata_tag is not None else None
    if raw.ndim != 2:
        raise ValueError(f"{path}: expected a single-band 2-D raster, got shape {raw.shape}")
    dx, dy = float(scale[0]), float(scale[1])
    i, j = float(tie[0]), float(tie[1])
    x0, y0 = float(tie[3]) - i * dx, float(tie[4]) + j * dy
    raster_type = {keys[k]: keys[k + 3] for k in range(4, len(keys), 4)}.get(_GT_RASTER_TYPE_KEY)
    if raster_type == _RASTER_PIXEL_IS_POINT:
        x0, y0 = x0 - dx / 2, y0 + dy / 2
    values = raw.astype(np.float64)
    if nodata is not None:
        if np.issubdtype(raw.dtype, np.floating):
            missing = raw == np.asarray(nodata).astype(raw.dtype)
        else:
            missing = values == nodata
        values[missing] = np.nan
    return Raster(values=values, transform=GridTransform(x0, y0, dx, dy))


# --- file naming --------------------------------------------------------------------------------


def rain_file_for(root: str | Path, hour: datetime) -> Path:
    """Path of the radar file for the hour ending at ``hour`` (UTC, whole hour).

    The files are named ``prcp/YYYY/MM/DD/rain_precipitation_<t>_<t>.tif`` with both stamps
    equal to ``t = hour`` as ``%Y%m%d%H%M`` (e.g. ``..._201410101200_201410101200.tif``).
    """
    hour = require_utc_hour(hour)
    stamp = hour.strftime("%Y%m%d%H%M")
    return (
        Path(root) / "prcp" / hour.strftime("%Y/%m/%d") / f"rain_precipitation_{stamp}_{stamp}.tif"
    )


def pet_file_for(root: str | Path, hour: datetime) -> Path:
    """Path of the daily interannual PET grid for the hour ending at ``hour``.

    The hour ending at ``hour`` lies in the calendar day of ``hour - 1 h`` (so 00:00 belongs to
    the day before); the file is ``pet/MMDD_ETPJIA.tif`` for that day.
    """
    day = require_utc_hour(hour) - HOUR
    return Path(root) / "pet" / f"{day:%m%d}_ETPJIA.tif"


# --- the archive ---------------------------------------------------------------------------------


class IssueTimeBound:
    """A source that can only be read up to ``until`` (the issue time, a whole UTC hour).

    The bound can only move forward (:meth:`advance`), as time does in a back-test.
    """

    #: what the bound guards, for the error of :meth:`advance`
    _bound_name = "source"

    def __init__(self, until: datetime) -> None:
        self._until = hour_floor(until)

    @property
    def until(self) -> datetime:
        return self._until

    def advance(self, until: datetime) -> None:
        """Move the issue time forward (never backward)."""
        until = hour_floor(until)
        if until < self._until:
            raise ValueError(f"cannot move the {self._bound_name} back from {self._until} "
                             f"to {until}")
        self._until = until


class RadarArchive(IssueTimeBound):
    """Hourly rainfall and PET grids that can only be read up to ``until`` (the issue time).

    Every read goes through :meth:`_check`, so asking for an hour after ``until`` raises
    :class:`FutureDataError`; the bound can only move forward (:meth:`advance`), as time does in
    a back-test.
    """

    _bound_name = "archive"

    def __init__(self, root: str | Path, until: datetime) -> None:
        super().__init__(until)
        self.root = Path(root)

    def _check(self, hour: datetime) -> datetime:
        hour = require_utc_hour(hour)
        if hour > self._until:
            raise FutureDataError(
                f"hour {hour.isoformat()} is after the archive bound {self._until.isoformat()}"
            )
        return hour

    def grid(self, hour: datetime) -> Raster | None:
        """Radar rainfall (mm/h) over the hour ending at ``hour``; None if the file is missing.

        Negative or nodata cells are NaN.
        """
        path = rain_file_for(self.root, self._check(hour))
        if not path.exists():
            return None
        raster = read_geotiff(path)
        values = raster.values * RAIN_CONVERSION_FACTOR
        values[values < 0] = np.nan
        return Raster(values=values, transform=raster.transform)

    def pet(self, hour: datetime) -> Raster | None:
        """Potential evapotranspiration (mm/h = daily mm / 24) for the hour ending at ``hour``."""
        path = pet_file_for(self.root, self._check(hour))
        if not path.exists():
            return None
        raster = read_geotiff(path)
        return Raster(values=raster.values / 24.0, transform=raster.transform)

    def hours(self, start: datetime, end: datetime) -> Iterator[tuple[datetime, Raster | None]]:
        """``(hour, rain grid or None)`` for every hour from ``start`` to ``end`` inclusive.

        Raises :class:`FutureDataError` up front if ``end`` is after ``until``.
        """
        start = require_utc_hour(start)
        end = self._check(end)
        hour = start
        while hour <= end:
            yield hour, self.grid(hour)
            hour += HOUR


class ObservedDischarge(IssueTimeBound):
    """Hourly discharge (m³/s) of one gauge that cannot be read after ``until`` (like the radar)."""

    _bound_name = "discharge bound"

    def __init__(self, start: datetime, values_m3s: FloatArray, until: datetime) -> None:
        super().__init__(until)
        self.start = start
        self._values = np.asarray(values_m3s, dtype=np.float64)

    def at(self, hour: datetime) -> float:
        """Discharge at ``hour`` (NaN if missing or outside the record)."""
        if hour > self._until:
            raise FutureDataError(f"discharge at {hour.isoformat()} is after {self._until}")
        index = int((hour - self.start) / HOUR)
        if 0 <= index < self._values.size:
            return float(self._values[index])
        return float("nan")
