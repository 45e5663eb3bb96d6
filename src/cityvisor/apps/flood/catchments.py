"""Catchment masks from D8 flow directions, and basin-average rainfall on the radar grid.

The flow-direction grid (e.g. ``France_flwdir.tif``: 1 km, Lambert-93) uses smash's D8 codes,
clockwise from north: 1 N, 2 NE, 3 E, 4 SE, 5 S, 6 SW, 7 W, 8 NW; anything else (nodata, 0,
sea) is "no direction". The convention was chosen from the data: of the 16 possible
rotations/orientations it is the only one whose upstream areas at the three Cance gauges
(381.7, 107 and 25.3 km²) come out within 10 %.

A gauge's position is rarely on the modelled river cell, so it is snapped, as smash does, to
the cell with the best-matching drained area within ``search_radius`` cells. Everything runs in
numpy on a window around the gauge (grown until the basin does not touch its edge).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from cityvisor.apps.flood.dataset import Gauge, GridTransform, RadarArchive, Raster

__all__ = [
    "D8_OFFSETS",
    "Catchment",
    "GridMask",
    "basin_rainfall",
    "delineate",
    "mask_on_grid",
]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

#: D8 code → (row offset, column offset); rows grow southward.
D8_OFFSETS: dict[int, tuple[int, int]] = {
    1: (-1, 0),
    2: (-1, 1),
    3: (0, 1),
    4: (1, 1),
    5: (1, 0),
    6: (1, -1),
    7: (0, -1),
    8: (-1, -1),
}


@dataclass(frozen=True, slots=True)
class GridMask:
    """A boolean mask on a grid described by ``transform``."""

    mask: BoolArray
    transform: GridTransform

    @property
    def area_km2(self) -> float:
        return float(self.mask.sum()) * self.transform.cell_area_km2


@dataclass(frozen=True, slots=True)
class Catchment:
    """A delineated catchment: the snapped outlet and the upstream mask (flow-direction grid)."""

    code: str
    outlet_xy_m: tuple[float, float]
    snap_distance_cells: float
    mask: GridMask

    @property
    def area_km2(self) -> float:
        return self.mask.area_km2


def _downstream_index(codes: NDArray[np.int64]) -> NDArray[np.int64]:
    """Flat index of each cell's downstream cell in the window (-1: none or out of window)."""
    n_rows, n_cols = codes.shape
    d_row = np.zeros_like(codes)
    d_col = np.zeros_like(codes)
    for code, (dr, dc) in D8_OFFSETS.items():
        here = codes == code
        d_row[here] = dr
        d_col[here] = dc
    rows, cols = np.indices(codes.shape)
    to_row, to_col = rows + d_row, cols + d_col
    valid = (
        np.isin(codes, list(D8_OFFSETS))
        & (to_row >= 0)
        & (to_row < n_rows)
        & (to_col >= 0)
        & (to_col < n_cols)
    )
    return np.where(valid, to_row * n_cols + to_col, -1).ravel()


def _accumulation(downstream: NDArray[np.int64], active: BoolArray) -> NDArray[np.int64]:
    """Number of active cells draining through each cell (itself included), Kahn order."""
    size = downstream.size
    acc = active.astype(np.int64)
    has_ds = downstream >= 0
    indegree = np.bincount(downstream[has_ds], minlength=size)
    frontier = np.flatnonzero(indegree == 0)
    while frontier.size:
        frontier = frontier[has_ds[frontier]]
        targets = downstream[frontier]
        np.add.at(acc, targets, acc[frontier])
        np.subtract.at(indegree, targets, 1)
        targets = np.unique(targets)
        frontier = targets[indegree[targets] == 0]
    return acc


def _upstream_mask(downstream: NDArray[np.int64], outlet: int) -> BoolArray:
    """Cells whose flow path reaches ``outlet`` (iterative propagation up the D8 graph)."""
    mask = np.zeros(downstream.size, dtype=bool)
    mask[outlet] = True
    has_ds = downstream >= 0
    safe = np.where(has_ds, downstream, 0)
    while True:
        grown = mask | (has_ds & mask[safe])
        if np.array_equal(grown, mask):
            return mask
        mask = grown


def delineate(
    flwdir: Raster,
    gauge: Gauge,
    *,
    search_radius: int = 2,
    window_half: int = 50,
) -> Catchment:
    """The catchment upstream of ``gauge`` on the D8 grid ``flwdir``.

    The outlet is the cell within ``search_radius`` cells of the gauge whose drained area is
    closest to ``gauge.area_km2`` (ties: the nearest). The work is done on a window of
    ``2·window_half`` cells around the gauge, doubled while the basin touches its edge.
    """
    transform = flwdir.transform
    g_row, g_col = transform.cell_of(gauge.x_m, gauge.y_m)
    n_rows, n_cols = flwdir.shape
    if not (0 <= g_row < n_rows and 0 <= g_col < n_cols):
        raise ValueError(f"gauge {gauge.code} lies outside the flow-direction grid")
    cell_area = transform.cell_area_km2
    while True:
        r0, r1 = max(g_row - window_half, 0), min(g_row + window_half + 1, n_rows)
        c0, c1 = max(g_col - window_half, 0), min(g_col + window_half + 1, n_cols)
        window = flwdir.values[r0:r1, c0:c1]
        codes = np.where(np.isfinite(window), window, 0).astype(np.int64)
        downstream = _downstream_index(codes)
        acc = _accumulation(downstream, np.isin(codes, list(D8_OFFSETS)).ravel())
        width = c1 - c0
        best: tuple[float, float, int] | None = None
        for dr in range(-search_radius, search_radius + 1):
            for dc in range(-search_radius, search_radius + 1):
                row, col = g_row + dr - r0, g_col + dc - c0
                if not (0 <= row < r1 - r0 and 0 <= col < width):
                    continue
                flat = row * width + col
                if acc[flat] == 0:
                    continue
                key = (abs(acc[flat] * cell_area - gauge.area_km2), float(np.hypot(dr, dc)), flat)
                if best is None or key < best:
                    best = key
        if best is None:
            raise ValueError(f"no river cell within {search_radius} cells of gauge {gauge.code}")
        _, distance, outlet = best
        mask = _upstream_mask(downstream, outlet).reshape(r1 - r0, width)
        touches_edge = bool(
            mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
        )
        whole_grid = (r0, c0, r1, c1) == (0, 0, n_rows, n_cols)
        if not touches_edge or whole_grid:
            break
        window_half *= 2
    out_row, out_col = divmod(outlet, width)
    sub = GridTransform(
        transform.x0_m + c0 * transform.dx_m,
        transform.y0_m - r0 * transform.dy_m,
        transform.dx_m,
        transform.dy_m,
    )
    outlet_xy = (
        sub.x0_m + (out_col + 0.5) * sub.dx_m,
        sub.y0_m - (out_row + 0.5) * sub.dy_m,
    )
    return Catchment(
        code=gauge.code,
        outlet_xy_m=outlet_xy,
        snap_distance_cells=distance,
        mask=GridMask(mask=mask, transform=sub),
    )


def mask_on_grid(mask: GridMask, transform: GridTransform, shape: tuple[int, int]) -> GridMask:
    """Resample ``mask`` onto another grid (nearest neighbour at the target cell centres).

    Exact when the grids are aligned with the same cell size (the Cance radar and flow-direction
    grids are); cells of the target grid outside the source mask are False.
    """
    x, y = transform.centres(shape)
    src = mask.transform
    cols = np.floor((x - src.x0_m) / src.dx_m).astype(np.int64)
    rows = np.floor((src.y0_m - y) / src.dy_m).astype(np.int64)
    n_rows, n_cols = mask.mask.shape
    inside = (rows >= 0) & (rows < n_rows) & (cols >= 0) & (cols < n_cols)
    out = np.zeros(shape, dtype=bool)
    out[inside] = mask.mask[rows[inside], cols[inside]]
    return GridMask(mask=out, transform=transform)


def basin_rainfall(archive: RadarArchive, mask: GridMask, hours: Iterable[datetime]) -> FloatArray:
    """Mean rainfall (mm/h) over ``mask`` for each hour (ending at that hour).

    NaN where the grid is missing or every masked cell is nodata; nodata cells are otherwise
    left out of the mean. The mask must be on the radar grid (see :func:`mask_on_grid`); hours
    after ``archive.until`` raise :class:`~cityvisor.apps.flood.dataset.FutureDataError`.
    """
    if not mask.mask.any():
        raise ValueError("empty catchment mask")
    out: list[float] = []
    for hour in hours:
        grid = archive.grid(hour)
        if grid is None:
            out.append(np.nan)
            continue
        if grid.shape != mask.mask.shape or grid.transform != mask.transform:
            raise ValueError(
                f"rain grid {grid.shape} {grid.transform} does not match the mask grid "
                f"{mask.mask.shape} {mask.transform}; resample the mask with mask_on_grid"
            )
        cells = grid.values[mask.mask]
        valid = np.isfinite(cells)
        out.append(float(cells[valid].mean()) if valid.any() else np.nan)
    return np.asarray(out, dtype=np.float64)
