"""Catchment delineation from France_flwdir.tif and basin rainfall on the Cance radar grid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from cityvisor.apps.flood.catchments import (
    Catchment,
    GridMask,
    basin_rainfall,
    delineate,
    mask_on_grid,
)
from cityvisor.apps.flood.dataset import (
    FutureDataError,
    GridTransform,
    RadarArchive,
    load_gauges,
    read_geotiff,
)

CANCE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "flood" / "cance"
RADAR = GridTransform(807000.0, 6484000.0, 1000.0, 1000.0)
EVENT = [datetime(2014, 10, 10, tzinfo=UTC) + timedelta(hours=i) for i in range(5 * 24)]


@pytest.fixture(scope="module")
def catchments() -> dict[str, Catchment]:
    if not (CANCE / "France_flwdir.tif").is_file():
        pytest.fail(
            f"Cance data set not found at {CANCE}: these tests read the smash Cance data "
            "(GPL-3.0, not copied into the repo) from the repository's sibling shared/ folder"
        )
    flwdir = read_geotiff(CANCE / "France_flwdir.tif")
    return {g.code: delineate(flwdir, g) for g in load_gauges(CANCE)}


@pytest.fixture(scope="module")
def masks(catchments: dict[str, Catchment]) -> dict[str, GridMask]:
    return {code: mask_on_grid(c.mask, RADAR, (40, 40)) for code, c in catchments.items()}


@pytest.mark.parametrize(
    ("code", "area_km2"), [("V3524010", 381.7), ("V3515010", 107.0), ("V3517010", 25.3)]
)
def test_delineated_area(catchments: dict[str, Catchment], code: str, area_km2: float) -> None:
    catchment = catchments[code]
    assert catchment.area_km2 == pytest.approx(area_km2, rel=0.10)
    assert catchment.snap_distance_cells <= 2 * np.sqrt(2)


def test_masks_on_radar_grid_keep_area_and_nest(masks: dict[str, GridMask]) -> None:
    outer, middle, small = (masks[c].mask for c in ("V3524010", "V3515010", "V3517010"))
    assert (outer.sum(), middle.sum(), small.sum()) == (383, 108, 23)  # whole basins in 40x40
    assert np.all(outer[middle]) and np.all(outer[small])
    assert not np.any(middle & small)  # two separate tributaries of the Cance


def test_mask_resampling_on_a_coarser_grid(catchments: dict[str, Catchment]) -> None:
    coarse = mask_on_grid(
        catchments["V3524010"].mask, GridTransform(807000.0, 6484000.0, 2000.0, 2000.0), (20, 20)
    )
    assert coarse.area_km2 == pytest.approx(381.7, rel=0.15)


def test_event_basin_rainfall(masks: dict[str, GridMask]) -> None:
    archive = RadarArchive(CANCE, until=EVENT[-1])
    for code, mask in masks.items():
        rain = basin_rainfall(archive, mask, EVENT)
        assert rain.shape == (120,)
        assert np.all(np.isfinite(rain)) and np.all(rain >= 0), code
        assert 50 < rain.sum() < 400, (code, rain.sum())
        assert rain.max() > 5, code  # mm/h at the storm's height


def test_basin_rainfall_missing_grid_and_future(masks: dict[str, GridMask]) -> None:
    mask = masks["V3524010"]
    late = RadarArchive(CANCE, until=datetime(2014, 11, 1, 1, tzinfo=UTC))
    hours = [datetime(2014, 10, 31, 23, tzinfo=UTC), datetime(2014, 11, 1, 0, tzinfo=UTC)]
    rain = basin_rainfall(late, mask, hours)
    assert np.isfinite(rain[0]) and np.isnan(rain[1])  # no file after 2014-10-31 23:00
    early = RadarArchive(CANCE, until=EVENT[10])
    with pytest.raises(FutureDataError):
        basin_rainfall(early, mask, EVENT)
    with pytest.raises(ValueError, match="mask_on_grid"):
        wrong = GridMask(np.ones((40, 40), bool), GridTransform(806000.0, 6485000.0, 1e3, 1e3))
        basin_rainfall(late, wrong, hours[:1])
