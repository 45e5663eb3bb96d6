"""Radar rainfall nowcast by extrapolation: motion from the last grids, semi-Lagrangian advection.

:func:`nowcast` estimates how the rain field moves between the last 2–3 hourly radar grids and
carries the latest grid along that motion for 1..6 hours (Lagrangian persistence, the baseline
of every operational radar nowcast: Germann & Zawadzki 2002; pysteps' "extrapolation" method).

Choices, and why:

* **numpy + scipy only.** pysteps (BSD-3) does this and more, but pulls in OpenCV, dask-style
  optional stacks and many megabytes for the two functions needed here; cityvisor must install
  offline on a city server. The method is short and testable, so it is written here.
* **Motion = one translation per pair, by masked normalised cross-correlation** (Padfield 2012:
  the correlation is normalised over the overlap of the two grids only, so shifts near the edge
  of a small crop are not favoured or penalised by the zero padding). Hourly frames on 1 km grids
  move rain by 5–40 cells between frames: beyond the reach of a local gradient (Lucas–Kanade)
  scheme, and the cropped domains of a city (~40×40 km) hold too few rain cells for a reliable
  field of block vectors. The correlation surfaces of the last pairs are summed (a more robust
  peak than averaging vectors) and the peak is refined to sub-cell precision by a parabola. On
  larger grids (:data:`BLOCK_CELLS` or more on a side) the vector is refined per block and the
  block vectors are blended smoothly into a motion field; blocks with too little rain keep the
  global vector.
* **Rain is compared on log(1 + R)**, so one intense cell does not dominate the match.
* **Semi-Lagrangian advection**, backward: the value at ``x`` after ``k`` hours is the latest
  value at the departure point ``x - k·v`` (traced step by step through the motion field,
  bilinear interpolation). Departure points upwind of the grid take the nearest edge value: the
  rain entering a city-sized crop is unknown, and the edge value is a better guess than none.
* **Missing data.** NaN cells are missing: they are left out of the motion estimate, and in the
  latest grid they take the previous grid's value, else 0 mm/h. The output never holds NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from cityvisor.apps.flood.hours import HOUR, FloatArray

__all__ = ["BLOCK_CELLS", "FRAMES", "advect", "consecutive_frames", "estimate_motion", "nowcast"]

#: Hourly grids a nowcast looks back on (3 motion pairs: steadier than 1–2 on hourly frames).
FRAMES = 4


#: Grids with at least this many cells on a side get a per-block motion refinement.
BLOCK_CELLS = 64
#: Largest displacement searched, as a fraction of the grid side (rain crossing more than half
#: the grid in an hour could not be matched reliably anyway).
MAX_SHIFT_FRACTION = 0.5
#: Shifts whose overlap is smaller than this fraction of the grid are not considered.
MIN_OVERLAP_FRACTION = 0.25
#: Rain below this (mm/h) is treated as no rain when deciding whether motion is measurable.
RAIN_THRESHOLD_MM_H = 0.1


def _clean(frame: np.ndarray) -> tuple[FloatArray, NDArray[np.bool_]]:
    values = np.asarray(frame, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"each radar frame must be a 2-D grid, got shape {values.shape}")
    valid = np.isfinite(values)
    return np.where(valid, np.maximum(values, 0.0), 0.0), valid


def _masked_ncc(
    a: FloatArray, a_mask: NDArray[np.bool_], b: FloatArray, b_mask: NDArray[np.bool_]
) -> tuple[FloatArray, FloatArray]:
    """Masked normalised cross-correlation of ``b`` against ``a`` for every shift.

    Returns ``(ncc, overlap)``, both of shape ``(2·ny-1, 2·nx-1)``; index ``(ny-1+dy, nx-1+dx)``
    scores ``b(y + dy, x + dx) ≈ a(y, x)`` (Padfield 2012, Eq. 9–12).
    """
    ny, nx = a.shape
    shape = (2 * ny - 1, 2 * nx - 1)
    fft, ifft = np.fft.rfft2, np.fft.irfft2
    am, bm = a_mask.astype(np.float64), b_mask.astype(np.float64)
    a0, b0 = a * am, b * bm

    def correlate(x: FloatArray, y: FloatArray) -> FloatArray:
        # Σ_p x(p) y(p + s), arranged with s = 0 at the centre.
        return _centre(ifft(np.conj(fft(x, shape)) * fft(y, shape), shape), ny, nx)

    overlap = np.rint(correlate(am, bm))
    overlap_safe = np.maximum(overlap, 1.0)
    sum_a = correlate(a0, bm)
    sum_b = correlate(am, b0)
    sum_ab = correlate(a0, b0)
    sum_aa = correlate(a0 * a0, bm)
    sum_bb = correlate(am, b0 * b0)
    numerator = sum_ab - sum_a * sum_b / overlap_safe
    var_a = np.maximum(sum_aa - sum_a**2 / overlap_safe, 0.0)
    var_b = np.maximum(sum_bb - sum_b**2 / overlap_safe, 0.0)
    denominator = np.sqrt(var_a * var_b)
    scale = max(float(np.max(denominator)), 1e-300)
    ok = denominator > 1e-9 * scale
    ncc = np.where(ok, numerator / np.where(ok, denominator, 1.0), 0.0)
    return ncc, overlap


def _centre(circular: FloatArray, ny: int, nx: int) -> FloatArray:
    """Reorder a circular correlation of size (2ny-1, 2nx-1) so shift 0 sits at (ny-1, nx-1)."""
    return np.roll(circular, (ny - 1, nx - 1), axis=(0, 1))


def _peak(surface: FloatArray, allowed: NDArray[np.bool_]) -> tuple[float, float, float] | None:
    """Sub-cell peak ``(row, col, value)`` of ``surface`` among ``allowed`` cells."""
    if not allowed.any():
        return None
    masked = np.where(allowed, surface, -np.inf)
    row, col = np.unravel_index(int(np.argmax(masked)), masked.shape)
    value = float(masked[row, col])

    def refine(minus: float, centre: float, plus: float) -> float:
        if not (math.isfinite(minus) and math.isfinite(plus)):
            return 0.0
        curvature = minus - 2.0 * centre + plus
        if curvature >= 0.0:
            return 0.0
        return float(np.clip(0.5 * (minus - plus) / curvature, -0.5, 0.5))

    n_rows, n_cols = masked.shape
    d_row = refine(masked[row - 1, col], value, masked[row + 1, col]) if 0 < row < n_rows - 1 \
        else 0.0
    d_col = refine(masked[row, col - 1], value, masked[row, col + 1]) if 0 < col < n_cols - 1 \
        else 0.0
    return row + d_row, col + d_col, value


def _translation(
    frames: Sequence[tuple[FloatArray, NDArray[np.bool_]]], max_shift: int
) -> tuple[float, float] | None:
    """One displacement (rows, cols per hour) from consecutive frame pairs, or None."""
    ny, nx = frames[0][0].shape
    total = np.zeros((2 * ny - 1, 2 * nx - 1))
    allowed = np.zeros_like(total, dtype=bool)
    used = 0
    for (a, am), (b, bm) in zip(frames[:-1], frames[1:], strict=True):
        if (a > RAIN_THRESHOLD_MM_H).sum() < 3 or (b > RAIN_THRESHOLD_MM_H).sum() < 3:
            continue
        ncc, overlap = _masked_ncc(np.log1p(a), am, np.log1p(b), bm)
        total += ncc
        allowed |= overlap >= MIN_OVERLAP_FRACTION * ny * nx
        used += 1
    if used == 0:
        return None
    rows, cols = np.indices(total.shape)
    allowed &= (np.abs(rows - (ny - 1)) <= max_shift) & (np.abs(cols - (nx - 1)) <= max_shift)
    peak = _peak(total / used, allowed)
    if peak is None or peak[2] <= 0.0:
        return None
    return peak[0] - (ny - 1), peak[1] - (nx - 1)


def estimate_motion(frames: Sequence[np.ndarray]) -> FloatArray:
    """Motion field ``(2, ny, nx)``: (rows, cols) travelled per frame interval, per cell.

    ``frames``: oldest first, equally spaced, same shape; NaN = missing. Zero where no motion
    can be measured (fewer than 2 frames, or no rain to follow).
    """
    cleaned = [_clean(frame) for frame in frames]
    if not cleaned:
        raise ValueError("estimate_motion needs at least one frame")
    shape = cleaned[0][0].shape
    if any(values.shape != shape for values, _ in cleaned):
        raise ValueError("all radar frames must have the same shape")
    ny, nx = shape
    field = np.zeros((2, ny, nx))
    if len(cleaned) < 2:
        return field
    max_shift = max(1, int(MAX_SHIFT_FRACTION * min(ny, nx)))
    global_vector = _translation(cleaned, max_shift)
    if global_vector is None:
        return field
    field[0], field[1] = global_vector
    if min(ny, nx) >= BLOCK_CELLS:
        field = _block_refinement(cleaned, global_vector, field)
    return field


def _block_refinement(
    cleaned: Sequence[tuple[FloatArray, NDArray[np.bool_]]],
    global_vector: tuple[float, float],
    field: FloatArray,
) -> FloatArray:
    """Per-block vectors (blocks of BLOCK_CELLS/2, searched near the global vector), blended."""
    from scipy import ndimage  # the `flood` extra

    ny, nx = cleaned[0][0].shape
    size = BLOCK_CELLS // 2
    rows = list(range(0, ny - size + 1, size // 2)) or [0]
    cols = list(range(0, nx - size + 1, size // 2)) or [0]
    weight = np.zeros((ny, nx))
    sums = np.zeros((2, ny, nx))
    for r0 in rows:
        for c0 in cols:
            block = [(v[r0 : r0 + size, c0 : c0 + size], m[r0 : r0 + size, c0 : c0 + size])
                     for v, m in cleaned]
            vector = _translation(block, size // 2)
            if vector is None or math.hypot(vector[0] - global_vector[0],
                                            vector[1] - global_vector[1]) > size / 4:
                vector = global_vector
            sums[0, r0 : r0 + size, c0 : c0 + size] += vector[0]
            sums[1, r0 : r0 + size, c0 : c0 + size] += vector[1]
            weight[r0 : r0 + size, c0 : c0 + size] += 1.0
    covered = weight > 0
    out = field.copy()
    for axis in range(2):
        out[axis][covered] = sums[axis][covered] / weight[covered]
        out[axis] = ndimage.gaussian_filter(out[axis], sigma=size / 4, mode="nearest")
    return out


def advect(field: np.ndarray, motion: np.ndarray, steps: int) -> FloatArray:
    """Carry ``field`` along ``motion`` for ``steps`` intervals (semi-Lagrangian, backward).

    Returns ``(steps, ny, nx)``. Departure points outside the grid take the nearest edge value.
    """
    from scipy import ndimage  # the `flood` extra

    values = np.asarray(field, dtype=np.float64)
    ny, nx = values.shape
    motion = np.asarray(motion, dtype=np.float64)
    rows, cols = np.indices((ny, nx), dtype=np.float64)
    out = np.empty((steps, ny, nx))
    if not np.any(motion):
        out[:] = values
        return out
    back_rows, back_cols = rows.copy(), cols.copy()
    for k in range(steps):
        # Trace one more interval back, with the motion at the current departure point.
        v_rows = ndimage.map_coordinates(motion[0], [back_rows, back_cols], order=1,
                                         mode="nearest")
        v_cols = ndimage.map_coordinates(motion[1], [back_rows, back_cols], order=1,
                                         mode="nearest")
        back_rows = back_rows - v_rows
        back_cols = back_cols - v_cols
        out[k] = ndimage.map_coordinates(values, [back_rows, back_cols], order=1, mode="nearest")
    return np.maximum(out, 0.0)


def nowcast(frames: Sequence[np.ndarray], leads: int = 6) -> np.ndarray:
    """Rain (mm/h) for the next ``leads`` intervals, shape ``(leads, ny, nx)``, never NaN.

    ``frames``: the last hourly grids, oldest first (2–3 is enough; more are used too), in
    mm/h, NaN = missing. With fewer than 2 frames (or no rain to follow) the latest grid
    persists. ``leads`` >= 1.
    """
    if isinstance(leads, bool) or not isinstance(leads, int) or leads < 1:
        raise ValueError(f"leads must be a whole number >= 1, got {leads!r}")
    if len(frames) == 0:
        raise ValueError("nowcast needs at least one radar frame")
    cleaned = [_clean(frame) for frame in frames]
    latest, valid = cleaned[-1]
    if len(cleaned) >= 2 and not valid.all():
        previous, previous_valid = cleaned[-2]
        if previous.shape == latest.shape:
            latest = np.where(valid, latest, np.where(previous_valid, previous, 0.0))
    motion = estimate_motion(frames)
    return advect(latest, motion, leads)


def consecutive_frames(
    frames: Sequence[tuple[datetime, FloatArray | None]], limit: int = FRAMES
) -> list[FloatArray]:
    """The grids of the last run of consecutive hours, oldest first, at most ``limit``.

    ``frames``: ``(hour, grid or None)`` in hour order, the last being the current hour. The
    run stops at a missing grid, an hour skipped or a change of grid shape: the motion
    estimate assumes equally spaced frames of one grid. No current grid: empty.
    """
    run: list[FloatArray] = []
    after: datetime | None = None
    for hour, grid in reversed(frames):
        if grid is None or len(run) == limit or (
                run and (grid.shape != run[-1].shape or after - hour != HOUR)):  # type: ignore[operator]
            break
        run.append(grid)
        after = hour
    run.reverse()
    return run
