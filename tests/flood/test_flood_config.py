"""The flood app configuration: the bundled Nîmes file and clear errors on bad files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cityvisor.apps.flood.config import FloodConfigError, load_config
from cityvisor.sim.nimes import DemoCounts, build_city

NIMES_TOML = Path(__file__).parents[2] / "src/cityvisor/apps/flood/nimes.toml"


def test_bundled_nimes_config_is_valid_and_matches_the_demo_gauges() -> None:
    config = load_config()
    assert {c.id for c in config.catchments} >= {"ales", "uzes", "camplanier", "valladas",
                                                 "saint-cesaire", "vistre", "agau"}
    counts = DemoCounts(streetlights=1, cameras=1, weather_stations=1, seismometers=1,
                        ev_stations=1, waste_containers=1, traffic_counters=1)
    names = {e["id"]: e["name"]["value"] for _, batch in build_city(counts) for e in batch
             if e["type"] in ("WeatherObserved", "FloodMonitoring")}
    for catchment in config.catchments:
        for gauge in [*catchment.rain_gauges, *catchment.level_gauges]:
            assert names[gauge].startswith(catchment.name), (gauge, names[gauge])
    for point in config.points:
        assert re.fullmatch(r"\d{5}", point.insee_code)
        assert point.entity_id == f"urn:ngsi-ld:FloodMonitoring:nimes:point:{point.slug}"


def test_rating_curve_round_trip() -> None:
    rating = load_config().catchment("ales").rating
    for level in (0.3, 1.2, 2.0, 3.1):
        assert rating.level(rating.discharge(level)) == pytest.approx(level)
    assert rating.discharge(-1.0) == 0.0


def test_invalid_config_lists_every_problem(tmp_path: Path) -> None:
    text = NIMES_TOML.read_text("utf-8")
    bad = text.replace('catchment = "uzes"', 'catchment = "nowhere"', 1).replace(
        "thresholds = { yellow_m3s = 2.9, orange_m3s = 5.2", "thresholds = { yellow_m3s = 9.9, "
        "orange_m3s = 5.2", 1)
    path = tmp_path / "bad.toml"
    path.write_text(bad, "utf-8")
    with pytest.raises(FloodConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "yellow < orange < red" in message


def test_unknown_catchment_and_unknown_key(tmp_path: Path) -> None:
    text = NIMES_TOML.read_text("utf-8")
    path = tmp_path / "bad.toml"
    path.write_text(text.replace('catchment = "uzes"', 'catchment = "nowhere"', 1), "utf-8")
    with pytest.raises(FloodConfigError, match="unknown catchment 'nowhere'"):
        load_config(path)
    path.write_text(text + "\ncolour = 'blue'\n", "utf-8")
    with pytest.raises(FloodConfigError, match="colour"):
        load_config(path)
    path.write_text("this is = not [toml", "utf-8")
    with pytest.raises(FloodConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(FloodConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
