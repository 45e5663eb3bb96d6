"""The flood app configuration: the bundled Nîmes file and clear errors on bad files."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from cityvisor.apps.flood.config import FloodConfigError, load_config
from cityvisor.apps.flood.forecaster import future_rain, parse_scenario
from cityvisor.sim.nimes import DemoCounts, build_city

NIMES_TOML = Path(__file__).parents[2] / "src/cityvisor/apps/flood/nimes.toml"


def config_errors(tmp_path: Path, text: str) -> str:
    """The message of the FloodConfigError that loading ``text`` raises."""
    path = tmp_path / "bad.toml"
    path.write_text(text, "utf-8")
    with pytest.raises(FloodConfigError) as caught:
        load_config(path)
    return str(caught.value)


def test_bundled_nimes_config_is_valid_and_matches_the_demo_gauges() -> None:
    config = load_config()
    assert {c.id for c in config.catchments} >= {"ales", "uzes", "camplanier", "valladas",
                                                 "saint-cesaire", "vistre", "agau", "valdegour"}
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
    assert "yellow < orange < red" in config_errors(tmp_path, bad)


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


def test_forecast_settings_default_to_the_evaluated_ones_and_are_validated(
        tmp_path: Path) -> None:
    for catchment in load_config().catchments:
        assert catchment.gains == (0.3, 0.3, 0.0, 0.0, 0.0, 0.0)
        assert catchment.future_rain == "blend*0.5"
    text = NIMES_TOML.read_text("utf-8")
    path = tmp_path / "settings.toml"
    # without the keys: the same defaults; a spelling like "persistence * 0.50" is normalised
    path.write_text(re.sub(r"(?m)^gains = .*$", "", text, count=1).replace(
        'future_rain = "blend*0.5"', 'future_rain = "persistence * 0.50"', 1), "utf-8")
    config = load_config(path)
    assert config.catchments[0].gains == (0.3, 0.3, 0.0, 0.0, 0.0, 0.0)
    assert config.catchments[0].future_rain == "persistence*0.5"
    bad = text.replace("gains = [0.3, 0.3, 0.0, 0.0, 0.0, 0.0]", "gains = [0.3, 0.3]", 1)
    bad = bad.replace("gains = [0.3, 0.3, 0.0, 0.0, 0.0, 0.0]",
                      "gains = [0.3, 0.3, 0.0, 0.0, 0.0, 9.0]", 1)
    bad = bad.replace('future_rain = "blend*0.5"', 'future_rain = "drizzle"', 3)
    bad = bad.replace('future_rain = "blend*0.5"', 'future_rain = "nowcast*-1"', 1)
    bad = bad.replace('future_rain = "blend*0.5"',
                      'future_rain = "blend*0.5"\nmodel_weights = [1, 1, 1, 1, 1, 2]', 1)
    message = config_errors(tmp_path, bad)
    assert "catchments.0.gains" in message  # too few leads
    assert "catchments.1.gains" in message and "[0, 1.5]" in message  # 9 is out of range
    assert "unknown future-rain scenario 'drizzle'" in message
    assert "bad rain factor" in message and "nowcast*-1" in message
    assert "model_weights must be 6 numbers in [0, 1]" in message


def test_future_rain_scenarios() -> None:
    nowcast = [4.0, 2.0, 1.0]  # shorter than 6 leads: the rest counts as no rain
    assert future_rain("nowcast", 3.0, nowcast).tolist() == [4.0, 2.0, 1.0, 0.0, 0.0, 0.0]
    assert future_rain("persistence*0.5", 3.0, nowcast).tolist() == [1.5] * 6
    assert future_rain("blend*0.5", 2.0, [float("nan")] * 6).tolist() == [0.5] * 6
    assert future_rain("zero", 3.0, nowcast).tolist() == [0.0] * 6
    assert future_rain("persistence", float("nan"), nowcast).tolist() == [0.0] * 6
    assert parse_scenario(" blend * 0.75 ") == ("blend", 0.75)
    for bad in ("rain", "blend*x", "blend*3", "nowcast*nan"):
        with pytest.raises(ValueError):
            parse_scenario(bad)


def test_future_rain_may_be_set_per_lead(tmp_path: Path) -> None:
    text = NIMES_TOML.read_text("utf-8")
    path = tmp_path / "per-lead.toml"
    per_lead = ('future_rain = ["blend", "blend", "blend*0.75", "persistence * 0.50", '
                '"persistence*0.5", "zero"]')
    path.write_text(text.replace('future_rain = "blend*0.5"', per_lead, 1), "utf-8")
    config = load_config(path)
    assert config.catchments[0].future_rain == (
        "blend", "blend", "blend*0.75", "persistence*0.5", "persistence*0.5", "zero")
    assert config.catchments[1].future_rain == "blend*0.5"  # the single form stays valid
    # six times the same scenario is that scenario
    same = text.replace('future_rain = "blend*0.5"',
                        'future_rain = ["nowcast*0.5", "nowcast*0.5", "nowcast*0.5", '
                        '"nowcast*0.5", "nowcast*0.5", "nowcast*0.5"]', 1)
    path.write_text(same, "utf-8")
    assert load_config(path).catchments[0].future_rain == "nowcast*0.5"
    bad = text.replace('future_rain = "blend*0.5"', 'future_rain = ["blend", "zero"]', 1)
    bad = bad.replace('future_rain = "blend*0.5"',
                      'future_rain = ["blend", "zero", "zero", "zero", "zero", "hail"]', 1)
    message = config_errors(tmp_path, bad)
    assert "catchments.0.future_rain" in message
    assert "catchments.1.future_rain" in message and "'hail'" in message


def test_the_ensemble_scenario_is_the_mean_of_its_members_runs(tmp_path: Path) -> None:
    from cityvisor.apps.flood.algorithms import GR4HParams
    from cityvisor.apps.flood.forecaster import (
        ENSEMBLE_MEMBERS,
        CatchmentForecaster,
        scenario_uses_nowcast,
    )

    nowcast = [4.0, 2.0, 1.0]
    rain = future_rain("ensemble", 3.0, nowcast)
    assert rain.shape == (6, len(ENSEMBLE_MEMBERS), 6)
    for k, member in enumerate(ENSEMBLE_MEMBERS):
        assert rain[2, k].tolist() == future_rain(member, 3.0, nowcast).tolist()
    assert future_rain("ensemble*0.5", 3.0, nowcast) == pytest.approx(0.5 * rain)
    assert parse_scenario("ensemble * 0.5") == ("ensemble", 0.5)
    assert scenario_uses_nowcast("ensemble") and not scenario_uses_nowcast("persistence*0.5")

    forecaster = CatchmentForecaster(GR4HParams(300.0, -0.5, 80.0, 3.0), area_km2=25.0)
    start = datetime(2014, 10, 10, tzinfo=UTC)
    for k, (r, q) in enumerate([(5.0, 1.0), (20.0, 2.0), (30.0, 6.0), (10.0, 12.0)]):
        forecaster.step(start + timedelta(hours=k), r, 0.1, q)
    members = [forecaster.forecast(future_rain(m, 10.0, nowcast), 0.1) for m in ENSEMBLE_MEMBERS]
    ensemble = forecaster.forecast(future_rain("ensemble", 10.0, nowcast), 0.1)
    assert ensemble == pytest.approx(np.mean(members, axis=0), rel=1e-12)
    # between the driest and the wettest member
    assert np.all(ensemble >= np.min(members, axis=0) - 1e-12)
    assert np.all(ensemble <= np.max(members, axis=0) + 1e-12)
    # a per-lead list may use it for some leads: the others keep their own scenario
    mixed = future_rain(["zero"] * 3 + ["ensemble"] * 3, 10.0, nowcast)
    assert mixed.shape == (6, len(ENSEMBLE_MEMBERS), 6)
    out = forecaster.forecast(mixed, 0.1)
    assert out[:3] == pytest.approx(forecaster.forecast(future_rain("zero", 10.0, nowcast),
                                                        0.1)[:3])
    assert out[3:] == pytest.approx(ensemble[3:])
    # the configuration accepts it
    path = tmp_path / "ens.toml"
    text = NIMES_TOML.read_text("utf-8")
    path.write_text(text.replace('future_rain = "blend*0.5"', 'future_rain = "ensemble"', 1),
                    "utf-8")
    assert load_config(path).catchments[0].future_rain == "ensemble"
