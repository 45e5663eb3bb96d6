"""Readers of the smash Cance data set (GPL-3.0, read by path from the sibling shared/ folder)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from cityvisor.apps.flood.dataset import (
    FutureDataError,
    ObservedDischarge,
    RadarArchive,
    load_discharge,
    load_gauges,
    pet_file_for,
    rain_file_for,
    read_geotiff,
)

HOUR = timedelta(hours=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_discharge_series(cance: Path) -> None:
    start, q = load_discharge(cance, "V3524010")
    assert start == utc(2006, 1, 1)
    assert start + timedelta(hours=len(q) - 1) == utc(2014, 10, 31, 23)
    assert np.isnan(q[0])  # -99.000 in the file
    assert np.all(q[np.isfinite(q)] >= 0)
    event = q[(utc(2014, 10, 10) - start) // timedelta(hours=1) :]
    assert 220 < np.nanmax(event) < 240  # the ~229 m³/s peak of 10-14 October 2014


def test_gauges(cance: Path) -> None:
    gauges = {g.code: g for g in load_gauges(cance)}
    assert {c: g.area_km2 for c, g in gauges.items()} == {
        "V3524010": 381.7,
        "V3515010": 107.0,
        "V3517010": 25.3,
    }
    assert (gauges["V3524010"].x_m, gauges["V3524010"].y_m) == (840261.0, 6457807.0)


def test_file_naming(cance: Path) -> None:
    hour = utc(2014, 10, 10, 12)
    path = rain_file_for(cance, hour)
    assert path.relative_to(cance).as_posix() == (
        "prcp/2014/10/10/rain_precipitation_201410101200_201410101200.tif"
    )
    assert path.is_file()
    assert pet_file_for(cance, hour).name == "1010_ETPJIA.tif"
    assert pet_file_for(cance, utc(2014, 10, 11, 0)).name == "1010_ETPJIA.tif"
    with pytest.raises(ValueError, match="naive"):
        rain_file_for(cance, datetime(2014, 10, 10, 12))
    with pytest.raises(ValueError, match="whole hour"):
        rain_file_for(cance, utc(2014, 10, 10, 12, 30))


def test_rain_grid_units_and_storm(cance: Path) -> None:
    archive = RadarArchive(cance, until=utc(2014, 11, 1, 0))
    dry = archive.grid(utc(2014, 9, 15, 0))
    storm = archive.grid(utc(2014, 10, 10, 12))
    assert dry is not None and storm is not None
    assert storm.shape == (40, 40)
    t = storm.transform
    assert (t.x0_m, t.y0_m, t.dx_m, t.dy_m) == (807000.0, 6484000.0, 1000.0, 1000.0)
    # this file is PixelIsPoint and the first one PixelIsArea: both resolve to the same grid
    assert dry.transform == storm.transform
    assert np.all(dry.values == 0)
    raw = read_geotiff(rain_file_for(cance, utc(2014, 10, 10, 12)))
    np.testing.assert_allclose(storm.values, raw.values * 0.1)  # tenths of mm → mm
    assert np.nanmax(storm.values) == pytest.approx(6.5)
    assert np.nanmean(storm.values) > 0.5
    assert archive.grid(utc(2014, 11, 1, 0)) is None  # after the archive's data: missing


def test_pet_grid(cance: Path) -> None:
    archive = RadarArchive(cance, until=utc(2014, 10, 31, 23))
    pet = archive.pet(utc(2014, 10, 10, 12))
    assert pet is not None and pet.shape == (40, 40)
    daily = read_geotiff(pet_file_for(cance, utc(2014, 10, 10, 12))).values
    np.testing.assert_allclose(pet.values, daily / 24)
    assert 0.5 < np.nanmean(daily) < 3  # mm/day in October


def test_archive_refuses_the_future(cance: Path) -> None:
    archive = RadarArchive(cance, until=utc(2014, 10, 10, 12, 40))
    assert archive.until == utc(2014, 10, 10, 12)
    assert archive.grid(utc(2014, 10, 10, 12)) is not None
    with pytest.raises(FutureDataError):
        archive.grid(utc(2014, 10, 10, 13))
    with pytest.raises(FutureDataError):
        archive.pet(utc(2014, 10, 10, 13))
    with pytest.raises(FutureDataError):  # up front, before yielding anything
        next(archive.hours(utc(2014, 10, 10, 0), utc(2014, 10, 10, 13)))
    hours = [h for h, grid in archive.hours(utc(2014, 10, 10, 10), utc(2014, 10, 10, 12))]
    assert hours == [utc(2014, 10, 10, 10), utc(2014, 10, 10, 11), utc(2014, 10, 10, 12)]
    with pytest.raises(ValueError, match="back"):
        archive.advance(utc(2014, 10, 10, 11))
    archive.advance(utc(2014, 10, 10, 13))
    assert archive.grid(utc(2014, 10, 10, 13)) is not None


def test_observed_discharge_refuses_the_future() -> None:
    start = datetime(2014, 10, 1, tzinfo=UTC)
    source = ObservedDischarge(start, np.arange(10.0), until=start + 2 * HOUR)
    assert source.at(start + 2 * HOUR) == 2.0
    with pytest.raises(FutureDataError):
        source.at(start + 3 * HOUR)
