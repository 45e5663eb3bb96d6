"""Radar nowcast: motion recovered on synthetic moving rain, NaN-tolerant, persistence fallback."""

from __future__ import annotations

import numpy as np
import pytest

from cityvisor.apps.flood.nowcast import (
    BLOCK_CELLS,
    advect,
    consecutive_frames,
    estimate_motion,
    nowcast,
)


def rain_cells(shape: tuple[int, int], centres: list[tuple[float, float, float, float]]
               ) -> np.ndarray:
    """Gaussian rain cells ``(row, col, sigma, peak mm/h)`` on a grid."""
    rows, cols = np.indices(shape, dtype=np.float64)
    field = np.zeros(shape)
    for row, col, sigma, peak in centres:
        field += peak * np.exp(-((rows - row) ** 2 + (cols - col) ** 2) / (2 * sigma**2))
    return field


def moving_storm(shape: tuple[int, int], velocity: tuple[float, float], hours: int
                 ) -> list[np.ndarray]:
    """Frames of two rain cells moving at ``velocity`` (rows, cols per hour), from t = 0."""
    vr, vc = velocity
    return [
        rain_cells(shape, [(14 + t * vr, 22 + t * vc, 4.0, 12.0),
                           (8 + t * vr, 30 + t * vc, 2.5, 6.0)])
        for t in range(hours)
    ]


@pytest.mark.parametrize("velocity", [(2.0, -3.0), (-1.5, 4.0), (0.0, 0.0)])
def test_motion_of_a_moving_storm_is_recovered(velocity: tuple[float, float]) -> None:
    frames = moving_storm((40, 40), velocity, 3)
    motion = estimate_motion(frames)
    assert motion.shape == (2, 40, 40)
    assert motion[0].mean() == pytest.approx(velocity[0], abs=0.3)
    assert motion[1].mean() == pytest.approx(velocity[1], abs=0.3)


def test_motion_field_on_a_large_grid_uses_blocks_and_stays_right() -> None:
    shape = (BLOCK_CELLS + 16, BLOCK_CELLS + 16)
    rows, cols = np.indices(shape, dtype=np.float64)
    rng = np.random.default_rng(3)
    base = [(rng.uniform(10, 70), rng.uniform(10, 70), rng.uniform(2, 5), rng.uniform(2, 15))
            for _ in range(25)]
    frames = [rain_cells(shape, [(r + 2.0 * t, c + 1.0 * t, s, p) for r, c, s, p in base])
              for t in range(3)]
    motion = estimate_motion(frames)
    assert np.median(motion[0]) == pytest.approx(2.0, abs=0.4)
    assert np.median(motion[1]) == pytest.approx(1.0, abs=0.4)
    del rows, cols


def test_nowcast_beats_persistence_on_a_moving_storm() -> None:
    frames = moving_storm((40, 40), (2.0, -3.0), 9)
    forecast = nowcast(frames[:3], leads=6)
    assert forecast.shape == (6, 40, 40)
    for lead in (1, 3, 6):
        truth = frames[2 + lead]
        advected_error = np.abs(forecast[lead - 1] - truth).mean()
        persistence_error = np.abs(frames[2] - truth).mean()
        assert advected_error < 0.35 * persistence_error
    # The rain maximum moved to where the storm really is three hours on.
    peak = np.unravel_index(np.argmax(forecast[2]), (40, 40))
    assert peak == pytest.approx((14 + 5 * 2.0, 22 - 5 * 3.0), abs=1)


def test_nan_cells_are_missing_and_never_reach_the_output() -> None:
    frames = moving_storm((40, 40), (1.0, 2.0), 3)
    frames[0][5:9, 5:9] = np.nan
    frames[2][14:20, 20:26] = np.nan  # a hole in the latest grid, on the storm
    forecast = nowcast(frames, leads=4)
    assert np.isfinite(forecast).all()
    assert (forecast >= 0).all()
    assert forecast[0].max() > 5  # the hole took the previous grid's rain, not zero
    all_missing = [np.full((10, 10), np.nan)] * 2
    assert np.array_equal(nowcast(all_missing, leads=2), np.zeros((2, 10, 10)))


def test_fewer_than_two_frames_or_no_rain_is_persistence() -> None:
    frame = moving_storm((20, 20), (0.0, 0.0), 1)[0]
    forecast = nowcast([frame], leads=3)
    assert forecast.shape == (3, 20, 20)
    for lead in range(3):
        np.testing.assert_allclose(forecast[lead], frame)
    dry = [np.zeros((20, 20)), np.zeros((20, 20)), np.zeros((20, 20))]
    assert not nowcast(dry).any()


def test_advect_a_uniform_motion_shifts_the_field() -> None:
    field = np.zeros((10, 10))
    field[2, 3] = 1.0
    motion = np.zeros((2, 10, 10))
    motion[1] = 2.0  # two columns per step
    out = advect(field, motion, 2)
    assert out[0][2, 5] == pytest.approx(1.0)
    assert out[1][2, 7] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("frames", "leads", "message"),
    [
        ([], 6, "at least one"),
        ([np.zeros((4, 4))], 0, "leads"),
        ([np.zeros(4)], 6, "2-D"),
        ([np.zeros((4, 4)), np.zeros((5, 5))], 6, "same shape"),
    ],
)
def test_bad_input_is_a_clear_error(frames: list[np.ndarray], leads: int, message: str
                                    ) -> None:
    with pytest.raises(ValueError, match=message):
        nowcast(frames, leads=leads)


def test_only_the_last_run_of_consecutive_grids_is_nowcast() -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2014, 10, 12, tzinfo=UTC)
    grid = [np.full((4, 4), float(k)) for k in range(6)]
    hours = [t0 + timedelta(hours=k) for k in range(6)]
    full = consecutive_frames(list(zip(hours, grid, strict=True)))
    assert [g[0, 0] for g in full] == [2.0, 3.0, 4.0, 5.0]  # the last 4
    # a missing grid, a skipped hour or a new grid shape ends the run
    gap = consecutive_frames([(hours[0], grid[0]), (hours[1], None), (hours[2], grid[2]),
                              (hours[3], grid[3])])
    assert [g[0, 0] for g in gap] == [2.0, 3.0]
    skipped = consecutive_frames([(hours[0], grid[0]), (hours[2], grid[2]), (hours[3], grid[3])])
    assert [g[0, 0] for g in skipped] == [2.0, 3.0]
    reshaped = consecutive_frames([(hours[0], np.zeros((5, 5))), (hours[1], grid[1])])
    assert [g[0, 0] for g in reshaped] == [1.0]
    assert consecutive_frames([(hours[0], grid[0]), (hours[1], None)]) == []
