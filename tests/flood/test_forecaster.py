"""The live per-catchment forecaster: stepping, state updating, correction, NaN, restarts."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from cityvisor.apps.flood.algorithms import GR4HParams, gr4h, initial_state
from cityvisor.apps.flood.forecaster import (
    LEADS,
    CatchmentForecaster,
    combine_with_persistence,
    fit_gains,
    fit_model_weights,
    future_rain,
    scenario_label,
)

HOUR = timedelta(hours=1)
T0 = datetime(2014, 10, 10, tzinfo=UTC)
PARAMS = GR4HParams(x1_mm=300.0, x2_mm_per_h=0.0, x3_mm=80.0, x4_h=3.0)
AREA = 100.0


def storm(hours: int = 72) -> tuple[np.ndarray, np.ndarray]:
    rain = np.zeros(hours)
    rain[20:26] = [4.0, 12.0, 20.0, 9.0, 3.0, 1.0]
    rain[45:48] = [6.0, 10.0, 2.0]
    return rain, np.full(hours, 0.05)


def truth_m3s(params: GR4HParams, rain: np.ndarray, pet: np.ndarray) -> np.ndarray:
    q_mm, _ = gr4h(rain, pet, params, initial_state(params))
    return q_mm * AREA / 3.6


def test_without_observations_it_is_gr4h_step_by_step() -> None:
    rain, pet = storm()
    forecaster = CatchmentForecaster(PARAMS, AREA)
    for i in range(30):
        forecaster.step(T0 + i * HOUR, rain[i], pet[i], None)
    expected = truth_m3s(PARAMS, rain, pet)
    assert forecaster.last_simulated_m3s == pytest.approx(expected[29])
    forecast = forecaster.forecast(rain[30:36], pet[30])
    np.testing.assert_allclose(forecast, expected[30:36], rtol=1e-9)
    assert forecast.shape == (LEADS,)


def test_state_updating_pulls_a_wrong_model_onto_the_river() -> None:
    # The river behaves like a catchment with a smaller production store (more runoff).
    rain, pet = storm()
    river = truth_m3s(GR4HParams(120.0, 0.0, 60.0, 3.0), rain, pet)
    updated = CatchmentForecaster(PARAMS, AREA, gains=(0.0,) * LEADS)
    open_loop = CatchmentForecaster(PARAMS, AREA, gains=(0.0,) * LEADS, update_state=False)
    errors_updated, errors_open = [], []
    for i in range(60):
        for model in (updated, open_loop):
            model.step(T0 + i * HOUR, rain[i], pet[i], river[i])
        if 22 <= i <= 50:
            target = river[i + 1 : i + 1 + LEADS]
            errors_updated.append(np.abs(updated.forecast(rain[i + 1 : i + 7], pet[i]) - target))
            errors_open.append(np.abs(open_loop.forecast(rain[i + 1 : i + 7], pet[i]) - target))
    mean_updated = np.mean(errors_updated, axis=0)
    mean_open = np.mean(errors_open, axis=0)
    assert (mean_updated[:3] < 0.5 * mean_open[:3]).all(), (mean_updated, mean_open)
    assert (mean_updated < 0.7 * mean_open).all(), (mean_updated, mean_open)


def test_output_correction_uses_the_gains_and_ages_without_observations() -> None:
    forecaster = CatchmentForecaster(PARAMS, AREA, gains=(1.0, 0.8, 0.6, 0.4, 0.2, 0.0),
                                     update_state=False)
    forecaster.step(T0, 0.0, 0.05, None)
    observed = forecaster.last_simulated_m3s + 10.0
    forecaster.step(T0 + HOUR, 0.0, 0.05, observed)  # the river is higher than the model
    error = forecaster.last_error_m3s
    assert error == pytest.approx(observed - forecaster.last_simulated_m3s)
    assert error > 5.0
    np.testing.assert_allclose(forecaster.correction(), error * np.array(
        [1.0, 0.8, 0.6, 0.4, 0.2, 0.0]))
    raw = forecaster.raw_forecast([0.0] * 6, 0.05)
    np.testing.assert_allclose(forecaster.forecast([0.0] * 6, 0.05), raw + forecaster.correction())
    # Two hours without observations: the same error now corrects leads with the gains of
    # leads 3.. (it is two hours older), then it expires.
    forecaster.step(T0 + 2 * HOUR, 0.0, 0.05, None)
    forecaster.step(T0 + 3 * HOUR, 0.0, 0.05, float("nan"))
    np.testing.assert_allclose(forecaster.correction(), error * np.array(
        [0.6, 0.4, 0.2, 0.0, 0.0, 0.0]))
    for k in range(4, 9):
        forecaster.step(T0 + k * HOUR, 0.0, 0.05, None)
    assert not forecaster.correction().any()


def test_forecasts_are_never_negative() -> None:
    forecaster = CatchmentForecaster(PARAMS, AREA, gains=(1.5,) * LEADS, update_state=False)
    forecaster.step(T0, 0.0, 0.05, None)
    forecaster.step(T0 + HOUR, 0.0, 0.05, 0.0)  # observed far below the model
    assert forecaster.last_error_m3s < 0
    assert (forecaster.forecast([0.0] * 6, 0.05) >= 0).all()


def test_nan_inputs_neither_crash_nor_poison_the_state() -> None:
    forecaster = CatchmentForecaster(PARAMS, AREA)
    forecaster.step(T0, 2.0, 0.05, 3.0)
    forecaster.step(T0 + HOUR, float("nan"), float("nan"), float("nan"))
    forecaster.step(T0 + 2 * HOUR, float("inf"), -1.0, None)
    forecaster.step(T0 + 3 * HOUR, 1.0, 0.05, -5.0)  # a negative discharge is missing too
    state = forecaster.state
    assert state is not None
    assert math.isfinite(state.production_store_mm) and math.isfinite(state.routing_store_mm)
    assert np.isfinite(state.uh1_pending_mm).all() and np.isfinite(state.uh2_pending_mm).all()
    assert forecaster.missing_rain_hours == 2
    assert forecaster.missing_discharge_hours == 3
    forecast = forecaster.forecast([np.nan, 1.0, np.nan], float("nan"))
    assert forecast.shape == (LEADS,) and np.isfinite(forecast).all()


def test_hours_must_move_forward_and_gaps_are_filled() -> None:
    forecaster = CatchmentForecaster(PARAMS, AREA)
    forecaster.step(T0, 0.0, 0.05, None)
    with pytest.raises(ValueError, match="not after"):
        forecaster.step(T0, 0.0, 0.05, None)
    with pytest.raises(ValueError, match="timezone"):
        forecaster.step(datetime(2014, 10, 11), 0.0, 0.05, None)
    with pytest.raises(ValueError, match="whole hour"):
        forecaster.step(T0 + 1.5 * HOUR, 0.0, 0.05, None)
    reference = CatchmentForecaster(PARAMS, AREA)
    reference.step(T0, 0.0, 0.05, None)
    for k in (1, 2, 3):
        reference.step(T0 + k * HOUR, 0.0, 0.05, None)
    forecaster.step(T0 + 3 * HOUR, 0.0, 0.05, None)  # hours 1 and 2 filled as rain-free
    assert forecaster.last_hour == T0 + 3 * HOUR
    assert forecaster.state is not None and reference.state is not None
    assert forecaster.state.routing_store_mm == pytest.approx(reference.state.routing_store_mm)


def test_to_dict_round_trips_through_json_and_continues_identically() -> None:
    rain, pet = storm()
    river = truth_m3s(GR4HParams(150.0, -0.2, 70.0, 2.5), rain, pet)
    original = CatchmentForecaster(PARAMS, AREA, gains=(0.9, 0.7, 0.5, 0.3, 0.2, 0.1),
                                   model_weights=(1.0, 1.0, 0.9, 0.8, 0.7, 0.6))
    for i in range(24):
        original.step(T0 + i * HOUR, rain[i], pet[i], river[i] if i % 5 else None)
    snapshot = json.loads(json.dumps(original.to_dict()))
    restored = CatchmentForecaster.from_dict(snapshot)
    assert restored.last_hour == original.last_hour
    assert restored.gains == original.gains
    assert restored.model_weights == original.model_weights
    for i in range(24, 40):
        for model in (original, restored):
            model.step(T0 + i * HOUR, rain[i], pet[i], river[i])
        np.testing.assert_array_equal(restored.forecast(rain[i + 1 : i + 7], pet[i]),
                                      original.forecast(rain[i + 1 : i + 7], pet[i]))
    fresh = CatchmentForecaster.from_dict(CatchmentForecaster(PARAMS, AREA).to_dict())
    assert fresh.last_hour is None and math.isnan(fresh.last_error_m3s)


def test_bad_construction_and_snapshots_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="area_km2"):
        CatchmentForecaster(PARAMS, 0.0)
    with pytest.raises(ValueError, match="gains"):
        CatchmentForecaster(PARAMS, AREA, gains=(1.0, 1.0))
    with pytest.raises(ValueError, match="malformed"):
        CatchmentForecaster.from_dict({"area_km2": 10.0})


def test_fit_gains_recovers_known_gains() -> None:
    rng = np.random.default_rng(0)
    errors = rng.normal(0.0, 5.0, 500)
    true_gains = np.array([0.9, 0.7, 0.5, 0.3, 0.1, 0.0])
    raw_errors = errors[:, None] * true_gains[None, :] + rng.normal(0.0, 0.2, (500, LEADS))
    errors[::7] = np.nan  # missing observations are left out
    gains = fit_gains(errors, raw_errors)
    np.testing.assert_allclose(gains, true_gains, atol=0.03)
    assert fit_gains([np.nan] * 3, np.zeros((3, LEADS))) == (0.0,) * LEADS


def test_rain_in_transit_is_scaled_by_the_observed_ratio() -> None:
    rain, pet = storm()
    forecaster = CatchmentForecaster(PARAMS, AREA)
    for i in range(22):
        forecaster.step(T0 + i * HOUR, rain[i], pet[i], None)
    assert forecaster.state is not None
    queued = forecaster.state.uh1_pending_mm.sum()
    assert queued > 0.5  # a storm is on its way to the outlet
    forecaster.step(T0 + 22 * HOUR, rain[22], pet[22], None)
    open_loop_queue = forecaster.state.uh1_pending_mm.copy()
    simulated = forecaster.last_simulated_m3s
    updated = CatchmentForecaster.from_dict(forecaster.to_dict())
    updated._assimilate(0.5 * simulated)  # the river carries half of what the model says
    assert updated.state is not None
    np.testing.assert_allclose(updated.state.uh1_pending_mm, open_loop_queue * (
        (0.5 * simulated + 0.05 * simulated) / (simulated + 0.05 * simulated)))


def test_docstring_examples_run() -> None:
    import doctest

    from cityvisor.apps.flood import forecaster, hours, nowcast

    for module in (forecaster, hours, nowcast):
        result = doctest.testmod(module, raise_on_error=False)
        assert result.failed == 0
    assert doctest.testmod(forecaster).attempted > 0


def test_model_weights_combine_the_model_with_the_observed_discharge() -> None:
    rain, pet = storm()
    river = truth_m3s(GR4HParams(150.0, -0.2, 70.0, 2.5), rain, pet)
    weights = (1.0, 1.0, 0.8, 0.6, 0.4, 0.2)
    alone = CatchmentForecaster(PARAMS, AREA)
    mixed = CatchmentForecaster(PARAMS, AREA, model_weights=weights)
    for i in range(30):
        for f in (alone, mixed):
            f.step(T0 + i * HOUR, rain[i], pet[i], river[i])
    model = alone.forecast(rain[30:36], pet[29])
    expected = np.array(weights) * model + (1 - np.array(weights)) * river[29]
    np.testing.assert_allclose(mixed.forecast(rain[30:36], pet[29]), expected)
    assert mixed.persistence_m3s() == pytest.approx(river[29])
    # no observation this hour: the model alone (persistence would be an hour old)
    for f in (alone, mixed):
        f.step(T0 + 30 * HOUR, rain[30], pet[30], None)
    assert math.isnan(mixed.persistence_m3s())
    np.testing.assert_array_equal(mixed.forecast(rain[31:37], pet[30]),
                                  alone.forecast(rain[31:37], pet[30]))
    with pytest.raises(ValueError, match="model_weights"):
        CatchmentForecaster(PARAMS, AREA, model_weights=(1.0, 1.0, 1.0, 1.0, 1.0, 1.2))
    assert combine_with_persistence(np.ones(6), float("nan"), weights).tolist() == [1.0] * 6


def test_fit_model_weights_recovers_a_known_mix() -> None:
    rng = np.random.default_rng(3)
    persistence = rng.gamma(2.0, 5.0, 400)
    model = persistence[:, None] + rng.normal(0.0, 4.0, (400, LEADS))
    true = np.array([1.0, 0.9, 0.7, 0.5, 0.3, 0.0])
    observed = true * model + (1 - true) * persistence[:, None] \
        + rng.normal(0.0, 0.3, (400, LEADS))
    observed[5, 2] = np.nan  # unknown observations are left out
    np.testing.assert_allclose(fit_model_weights(model, persistence, observed), true, atol=0.03)
    # weights stay in [0, 1]: a model anti-correlated with the truth gets 0, not a negative
    assert fit_model_weights(-model, persistence, model)[0] == 0.0


def test_a_per_lead_future_rain_reads_each_lead_from_its_own_scenario() -> None:
    rain, pet = storm()
    forecaster = CatchmentForecaster(params=PARAMS, area_km2=AREA, gains=(0.0,) * LEADS)
    for i in range(22):  # into the storm: the future rain matters
        forecaster.step(T0 + i * HOUR, rain[i], pet[i], float("nan"))
    scenarios = ["zero", "persistence", "persistence*0.5", "blend", "nowcast*1.25", "zero"]
    nowcast_mm = [8.0, 6.0, 4.0, 2.0, 1.0, 0.0]
    per_lead = future_rain(scenarios, 12.0, nowcast_mm)
    assert per_lead.shape == (LEADS, LEADS)
    got = forecaster.forecast(per_lead, 0.05)
    for lead, scenario in enumerate(scenarios):
        alone = forecaster.forecast(future_rain(scenario, 12.0, nowcast_mm), 0.05)
        assert got[lead] == pytest.approx(alone[lead], rel=1e-12)
    # leads that assume different rain really differ (the test can fail)
    zero = forecaster.forecast(future_rain("zero", 12.0, nowcast_mm), 0.05)
    assert got[2] > zero[2] + 1.0
    # six times the same scenario is that scenario; a wrong count is a clear error
    assert scenario_label(["blend*0.50"] * 6) == "blend*0.5"
    assert future_rain(["persistence"] * 6, 3.0, []).tolist() == [3.0] * 6
    with pytest.raises(ValueError, match="6 scenarios"):
        future_rain(["zero"] * 5, 3.0, [])
    with pytest.raises(ValueError, match="6 rows"):
        forecaster.forecast(np.zeros((5, LEADS)), 0.05)


def test_several_rains_at_once_match_one_at_a_time() -> None:
    # raw_forecasts (the training runs' path) gives what raw_forecast gives for each rain,
    # a per-lead scenario and an ensemble included; identical rains share one run.
    rain, pet = storm()
    forecaster = CatchmentForecaster(params=PARAMS, area_km2=AREA, gains=(0.0,) * LEADS)
    for i in range(22):
        forecaster.step(T0 + i * HOUR, rain[i], pet[i], float("nan"))
    nowcast_mm = [8.0, 6.0, 4.0, 2.0, 1.0, 0.0]
    rains = [future_rain(name, 12.0, nowcast_mm)
             for name in ("zero", "blend", "ensemble", "zero", "nowcast*1.25")]
    rains.append(future_rain(["zero", "blend", "blend", "nowcast", "zero", "zero"], 12.0,
                             nowcast_mm))
    together = forecaster.raw_forecasts(rains, 0.05)
    for given, got in zip(rains, together, strict=True):
        assert got.tolist() == forecaster.raw_forecast(given, 0.05).tolist()
    assert together[0] is together[3]
    assert together[2].tolist() != together[0].tolist()  # the ensemble is not its zero member
