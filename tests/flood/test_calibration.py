"""GR4H calibration: recovers a known model from its own simulated discharge."""

from __future__ import annotations

import numpy as np
import pytest

from cityvisor.apps.flood.algorithms import GR4HParams, gr4h, nse
from cityvisor.apps.flood.calibration import calibrate_gr4h

TRUE_PARAMS = GR4HParams(x1_mm=350.0, x2_mm_per_h=-0.5, x3_mm=120.0, x4_h=5.0)
WARMUP_H = 500


def synthetic_forcing(hours: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Storms of a few hours arriving every ~2.5 days (gamma-distributed hourly rain, mm)
    and a daytime PET bell up to 0.25 mm/h."""
    rng = np.random.default_rng(seed)
    rain = np.zeros(hours)
    hour = 0
    while hour < hours:
        hour += int(rng.exponential(60.0))
        duration = 1 + int(rng.exponential(6.0))
        storm = rain[hour : hour + duration]
        storm[:] = rng.gamma(0.8, 3.0, size=storm.size)
        hour += duration
    hour_of_day = np.arange(hours) % 24
    pet = np.clip(0.25 * np.sin(2 * np.pi * (hour_of_day - 6) / 24), 0.0, None)
    return rain, pet


@pytest.fixture(scope="module")
def synthetic():
    rain, pet = synthetic_forcing(3000, seed=1)
    q_mm, _ = gr4h(rain, pet, TRUE_PARAMS)
    return rain, pet, q_mm


def test_calibration_recovers_a_known_model(synthetic):
    rain, pet, q_mm = synthetic
    observed = q_mm.copy()
    observed[1200:1210] = np.nan  # a gauge gap is left out of the score, not a failure
    params, score = calibrate_gr4h(
        rain, pet, observed, WARMUP_H, objective="nse", seed=0, max_evals=1500
    )
    simulated, _ = gr4h(rain, pet, params)
    assert nse(simulated[WARMUP_H:], q_mm[WARMUP_H:]) > 0.99
    assert score == pytest.approx(nse(simulated[WARMUP_H:], observed[WARMUP_H:]))
    assert params.x1_mm == pytest.approx(TRUE_PARAMS.x1_mm, rel=0.25)
    assert params.x2_mm_per_h == pytest.approx(TRUE_PARAMS.x2_mm_per_h, abs=0.25)
    assert params.x3_mm == pytest.approx(TRUE_PARAMS.x3_mm, rel=0.25)
    assert params.x4_h == pytest.approx(TRUE_PARAMS.x4_h, rel=0.1)


def test_calibration_is_reproducible_and_respects_bounds(synthetic):
    rain, pet, q_mm = synthetic
    bounds = {"x4_h": (1.0, 3.0)}  # the true X4 (5 h) is outside: the result must stay inside
    first = calibrate_gr4h(rain, pet, q_mm, WARMUP_H, bounds=bounds, seed=3, max_evals=400)
    second = calibrate_gr4h(rain, pet, q_mm, WARMUP_H, bounds=bounds, seed=3, max_evals=400)
    assert first == second
    params, kge_score = first
    assert 1.0 <= params.x4_h <= 3.0
    assert -1.0 < kge_score < 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"warmup_h": 5000}, "warmup_h"),
        ({"objective": "rmse"}, "objective"),
        ({"bounds": {"x5": (0.0, 1.0)}}, "unknown"),
        ({"bounds": {"x1_mm": (0.0, 10.0)}}, "> 0"),
        ({"bounds": {"x3_mm": (50.0, 10.0)}}, "low < high"),
        ({"max_evals": 10}, "max_evals"),
    ],
)
def test_bad_calibration_requests_are_clear_errors(synthetic, kwargs, message):
    rain, pet, q_mm = synthetic
    arguments = {"warmup_h": WARMUP_H, **kwargs}
    with pytest.raises(ValueError, match=message):
        calibrate_gr4h(rain, pet, q_mm, **arguments)


def test_observations_must_cover_the_scored_period(synthetic):
    rain, pet, _ = synthetic
    with pytest.raises(ValueError, match="fewer than 2"):
        calibrate_gr4h(rain, pet, np.full(rain.size, np.nan), WARMUP_H)


def test_mixed_objective_scores_the_mean_of_nse_and_kge(synthetic):
    from cityvisor.apps.flood.algorithms import kge, state_for_discharge

    rain, pet, q_mm = synthetic
    params, score = calibrate_gr4h(
        rain[:1500], pet[:1500], q_mm[:1500], 12, objective="nse+kge", max_evals=300,
        initial_discharge_mm=float(q_mm[0]),
    )
    simulated, _ = gr4h(rain[:1500], pet[:1500], params, state_for_discharge(params, q_mm[0]))
    expected = 0.5 * (nse(simulated[12:], q_mm[12:1500]) + kge(simulated[12:], q_mm[12:1500]))
    assert score == pytest.approx(expected)
    assert score > 0.9


def test_high_flow_nse_weights_the_floods() -> None:
    from cityvisor.apps.flood.calibration import high_flow_nse

    observed = np.array([1.0, 1.0, 1.0, 10.0, 1.0, 1.0])
    assert high_flow_nse(observed, observed) == 1.0
    mean_w = float((observed**2).sum() / observed.sum())  # the flow-weighted mean scores 0
    assert high_flow_nse(np.full(6, mean_w), observed) == pytest.approx(0.0)
    # the same absolute error costs more on the flood hour than on a base-flow hour
    on_peak, on_base = observed.copy(), observed.copy()
    on_peak[3] += 2.0
    on_base[0] += 2.0
    assert high_flow_nse(on_peak, observed) < high_flow_nse(on_base, observed)
    assert nse(on_peak, observed) == pytest.approx(nse(on_base, observed))
    with pytest.raises(ValueError):
        high_flow_nse([1.0, 2.0], [3.0, 3.0])


def test_flow_weighted_objective_calibrates_too(synthetic):
    rain, pet, q_mm = synthetic
    params, score = calibrate_gr4h(rain[:1500], pet[:1500], q_mm[:1500], 12,
                                   objective="hfnse+kge", max_evals=300,
                                   initial_discharge_mm=float(q_mm[0]),
                                   bounds={"x4_h": (0.5, 6.0)})
    assert score > 0.9 and params.x4_h <= 6.0
