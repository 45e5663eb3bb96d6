"""GR4H: regression against airGR's published figure, a slow reference, chunked runs, scores."""

from __future__ import annotations

import csv
import doctest
import math
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cityvisor.apps.flood import algorithms
from cityvisor.apps.flood.algorithms import (
    GR4HParams,
    GR4HState,
    gr4h,
    initial_state,
    kge,
    nse,
    persistence_forecast,
    rmse,
    unit_hydrograph_ordinates,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
# CI clones the repository next to the shared data: <repo>/../shared/data.
GR4H_DATA = REPO_ROOT.parent / "shared" / "data" / "flood" / "gr4h" / "L0123003.csv"
AIRGR_PARAMS = GR4HParams(x1_mm=521.113, x2_mm_per_h=-2.918, x3_mm=218.009, x4_h=4.124)


# --- A slow, literal reference: one hour at a time, queues shifted element by element --------


def _s_curve_1(t: float, x4: float) -> float:
    if t <= 0:
        return 0.0
    return (t / x4) ** 1.25 if t < x4 else 1.0


def _s_curve_2(t: float, x4: float) -> float:
    if t <= 0:
        return 0.0
    if t <= x4:
        return 0.5 * (t / x4) ** 1.25
    if t < 2 * x4:
        return 1.0 - 0.5 * (2.0 - t / x4) ** 1.25
    return 1.0


def reference_gr4h(precip, pet, params, s0, r0, queue1=(), queue2=()):
    """GR4H written straight from the equations, with long fixed-length queues (like airGR)."""
    x1, x2, x3, x4 = params
    length = 480
    ord1 = [_s_curve_1(j, x4) - _s_curve_1(j - 1, x4) for j in range(1, length + 1)]
    ord2 = [_s_curve_2(j, x4) - _s_curve_2(j - 1, x4) for j in range(1, 2 * length + 1)]
    # queue[k]: what leaves the hydrograph k + 1 hours from now (before this hour's input).
    q1 = list(queue1) + [0.0] * (length - len(queue1))
    q2 = list(queue2) + [0.0] * (2 * length - len(queue2))
    s, r = s0, r0
    out = []
    for p, e in zip(precip, pet, strict=True):
        if p <= e:
            en = e - p
            es = s * (2 - s / x1) * math.tanh(en / x1) / (1 + (1 - s / x1) * math.tanh(en / x1))
            s -= es
            pr = 0.0
        else:
            pn = p - e
            ps = x1 * (1 - (s / x1) ** 2) * math.tanh(pn / x1) / (1 + s / x1 * math.tanh(pn / x1))
            s += ps
            pr = pn - ps
        s = max(s, 0.0)
        perc = s * (1 - (1 + (s / (21 / 4 * x1)) ** 4) ** -0.25)
        s -= perc
        pr += perc
        q1 = [q1[k] + ord1[k] * 0.9 * pr for k in range(length)]
        q2 = [q2[k] + ord2[k] * 0.1 * pr for k in range(2 * length)]
        q9, qd1 = q1[0], q2[0]
        q1 = q1[1:] + [0.0]
        q2 = q2[1:] + [0.0]
        exch = x2 * (r / x3) ** 3.5
        r = max(r + q9 + exch, 0.0)
        qr = r * (1 - (1 + (r / x3) ** 4) ** -0.25)
        r -= qr
        qd = max(qd1 + exch, 0.0)
        out.append(qr + qd)
    return np.array(out), s, r, q1, q2


params_strategy = st.builds(
    GR4HParams,
    x1_mm=st.floats(5.0, 2000.0),
    x2_mm_per_h=st.floats(-5.0, 3.0),
    x3_mm=st.floats(5.0, 800.0),
    x4_h=st.floats(0.3, 30.0),
)
hour_value = st.floats(0.0, 1.0)


@st.composite
def forcing(draw, min_hours=1, max_hours=120):
    hours = draw(st.integers(min_hours, max_hours))
    rain = draw(
        st.lists(st.one_of(st.just(0.0), st.floats(0.0, 60.0)), min_size=hours, max_size=hours)
    )
    pet = draw(st.lists(st.floats(0.0, 0.6), min_size=hours, max_size=hours))
    return np.array(rain), np.array(pet)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=params_strategy, series=forcing(), s_fill=hour_value, r_fill=hour_value)
def test_matches_slow_reference_implementation(params, series, s_fill, r_fill):
    rain, pet = series
    state = initial_state(params, production_fill=s_fill, routing_fill=r_fill)
    q_mm, final = gr4h(rain, pet, params, state)
    expected, s, r, queue1, queue2 = reference_gr4h(
        rain, pet, params.as_tuple(), state.production_store_mm, state.routing_store_mm
    )
    np.testing.assert_allclose(q_mm, expected, rtol=1e-9, atol=1e-12)
    assert final.production_store_mm == pytest.approx(s, rel=1e-9, abs=1e-12)
    assert final.routing_store_mm == pytest.approx(r, rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(
        final.uh1_pending_mm, queue1[: final.uh1_pending_mm.size], rtol=1e-9, atol=1e-12
    )
    assert not any(queue1[final.uh1_pending_mm.size :])
    np.testing.assert_allclose(
        final.uh2_pending_mm, queue2[: final.uh2_pending_mm.size], rtol=1e-9, atol=1e-12
    )
    assert not any(queue2[final.uh2_pending_mm.size :])


@settings(max_examples=25, deadline=None)
@given(
    params=params_strategy,
    series=forcing(min_hours=2),
    cut=st.floats(0.0, 1.0),
    second_cut=st.floats(0.0, 1.0),
)
def test_chunked_runs_equal_one_run_bit_for_bit(params, series, cut, second_cut):
    rain, pet = series
    whole, whole_state = gr4h(rain, pet, params)
    first = int(cut * rain.size)
    second = first + int(second_cut * (rain.size - first))
    pieces, state = [], None
    for start, stop in ((0, first), (first, second), (second, rain.size)):
        q_mm, state = gr4h(rain[start:stop], pet[start:stop], params, state)
        pieces.append(q_mm)
    assert np.array_equal(np.concatenate(pieces), whole)
    assert state.production_store_mm == whole_state.production_store_mm
    assert state.routing_store_mm == whole_state.routing_store_mm
    assert np.array_equal(state.uh1_pending_mm, whole_state.uh1_pending_mm)
    assert np.array_equal(state.uh2_pending_mm, whole_state.uh2_pending_mm)


def test_live_operation_hour_by_hour_equals_one_run():
    rng = np.random.default_rng(7)
    rain = np.where(rng.random(300) < 0.15, rng.gamma(0.8, 4.0, 300), 0.0)
    pet = np.full(300, 0.1)
    whole, _ = gr4h(rain, pet, AIRGR_PARAMS)
    state, hourly = None, []
    for hour in range(300):
        q_mm, state = gr4h(rain[hour : hour + 1], pet[hour : hour + 1], AIRGR_PARAMS, state)
        hourly.append(q_mm[0])
    assert np.array_equal(np.array(hourly), whole)


def test_a_state_can_be_reused_for_several_forecasts():
    state = initial_state(AIRGR_PARAMS)
    first, _ = gr4h([5.0, 0.0], [0.0, 0.0], AIRGR_PARAMS, state)
    gr4h([50.0, 50.0], [0.0, 0.0], AIRGR_PARAMS, state)
    again, _ = gr4h([5.0, 0.0], [0.0, 0.0], AIRGR_PARAMS, state)
    assert np.array_equal(first, again)
    with pytest.raises(ValueError):
        state.uh1_pending_mm[:] = 1.0  # read-only: nobody can alter a saved state


@settings(max_examples=40, deadline=None)
@given(x4_h=st.floats(0.05, 200.0))
def test_unit_hydrographs_are_distributions_of_the_right_length(x4_h):
    uh1, uh2 = unit_hydrograph_ordinates(x4_h)
    assert uh1.sum() == pytest.approx(1.0, abs=1e-12)
    assert uh2.sum() == pytest.approx(1.0, abs=1e-12)
    assert (uh1 >= 0).all() and (uh2 >= 0).all()
    assert uh1.size == max(1, math.ceil(x4_h))
    assert uh2.size == max(1, math.ceil(2 * x4_h))


def test_no_rain_no_storage_gives_no_flow():
    q_mm, state = gr4h(np.zeros(24), np.full(24, 0.2), AIRGR_PARAMS, GR4HState(0.0, 0.0))
    assert not q_mm.any()
    assert state.production_store_mm == 0.0 and state.routing_store_mm == 0.0


@pytest.mark.parametrize(
    ("precip", "pet", "message"),
    [
        ([1.0, float("nan")], [0.0, 0.0], "precip_mm must be finite"),
        ([1.0, 2.0], [0.0, -0.1], "pet_mm must be finite and >= 0"),
        ([1.0, 2.0], [0.0], "same length"),
        ([[1.0]], [[0.0]], "1-D"),
    ],
)
def test_bad_forcing_is_a_clear_error(precip, pet, message):
    with pytest.raises(ValueError, match=message):
        gr4h(precip, pet, AIRGR_PARAMS)


@pytest.mark.parametrize("values", [[0.0, 0.0, 100.0, 2.0], [300, 0, 100, -1], [1, 2, 3]])
def test_bad_parameters_are_a_clear_error(values):
    with pytest.raises(ValueError, match="GR4H"):
        gr4h([1.0], [0.0], values)


# --- Regression on airGR's hourly test catchment -------------------------------------------


def _read_l0123003():
    if not GR4H_DATA.is_file():
        pytest.fail(
            f"GR4H regression data not found at {GR4H_DATA}: the shared data folder must sit "
            "next to the repository (<repo>/../shared/data/flood/gr4h/L0123003.csv)"
        )
    with GR4H_DATA.open(newline="") as handle:
        rows = list(csv.DictReader(handle))

    def number(text: str) -> float:
        return float(text) if text not in ("", "NA") else math.nan

    dates = [datetime.strptime(row["date"], "%d/%m/%Y %H:%M") for row in rows]
    precip = np.array([number(row["P"]) for row in rows])
    pet = np.array([number(row["E"]) for row in rows])
    q_obs = np.array([number(row["Qmm"]) for row in rows])
    return dates, precip, pet, q_obs


def test_regression_on_airgr_catchment_l0123003():
    dates, precip, pet, q_obs = _read_l0123003()
    assert dates[0] == datetime(2004, 1, 1) and dates[-1] == datetime(2008, 12, 31, 23)
    start = dates.index(datetime(2004, 3, 1))  # warm-up: 2004-01-01 .. 2004-02-29
    timings = []
    for _ in range(3):
        began = time.perf_counter()
        q_mm, _ = gr4h(precip, pet, AIRGR_PARAMS)
        timings.append(time.perf_counter() - began)
    observed = q_obs[start:].copy()
    observed[~(observed >= 0)] = np.nan  # negative or NaN: missing
    score = rmse(q_mm[start:], observed)
    assert round(score, 4) == 0.0785
    assert score == pytest.approx(0.07847, abs=5e-6)
    # ~0.05 s on a laptop core; a loose guard against an accidental O(hours x queue) loop.
    assert min(timings) < 1.0


# --- Scores ---------------------------------------------------------------------------------


def test_doctest_examples_run():
    result = doctest.testmod(algorithms, raise_on_error=False)
    assert result.attempted > 10
    assert result.failed == 0


@settings(max_examples=30, deadline=None)
@given(
    observed=st.lists(st.floats(0.0, 100.0), min_size=3, max_size=50).filter(
        lambda values: np.std(values) > 1e-3 and np.mean(values) > 1e-3
    ),
    scale=st.floats(0.2, 3.0),
    shift=st.floats(0.0, 5.0),
)
def test_scores_agree_with_their_definitions(observed, scale, shift):
    obs = np.array(observed)
    sim = obs * scale + shift
    assert rmse(sim, obs) == pytest.approx(math.sqrt(np.mean((sim - obs) ** 2)))
    assert nse(sim, obs) == pytest.approx(
        1 - np.sum((sim - obs) ** 2) / np.sum((obs - obs.mean()) ** 2), rel=1e-9, abs=1e-9
    )
    # A linear transform keeps r = 1: KGE measures only the spread and bias errors.
    expected_kge = 1 - math.hypot(scale - 1, sim.mean() / obs.mean() - 1)
    assert kge(sim, obs) == pytest.approx(expected_kge, rel=1e-9, abs=1e-9)
    assert nse(obs, obs) == 1.0 and kge(obs, obs) == pytest.approx(1.0)


def test_scores_leave_out_missing_hours_and_reject_empty_input():
    assert rmse([1.0, 9.0, 3.0], [1.0, np.nan, 3.0]) == 0.0
    assert nse([np.nan, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]) == 1.0
    with pytest.raises(ValueError, match="no hour"):
        rmse([np.nan], [1.0])
    with pytest.raises(ValueError, match="lengths differ"):
        nse([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="constant"):
        nse([1.0, 2.0], [3.0, 3.0])


def test_persistence_forecast_is_the_value_observed_lead_hours_earlier():
    observed = np.arange(10.0)
    forecast = persistence_forecast(observed, 3)
    assert np.isnan(forecast[:3]).all()
    assert np.array_equal(forecast[3:], observed[:-3])
    assert np.array_equal(persistence_forecast(observed, 0), observed)
    assert np.isnan(persistence_forecast(observed, 12)).all()
    with pytest.raises(ValueError, match="lead_h"):
        persistence_forecast(observed, -1)


def test_state_for_discharge_starts_a_run_at_the_observed_flow() -> None:
    from cityvisor.apps.flood.algorithms import (
        routed_flow_mm,
        routing_level_for_outflow,
        state_for_discharge,
    )

    for outflow in (0.0, 0.01, 0.4, 3.0):
        level = routing_level_for_outflow(outflow, 80.0)
        assert routed_flow_mm(level, 80.0) == pytest.approx(outflow, abs=1e-9)
    params = GR4HParams(300.0, 0.0, 80.0, 3.0)
    state = state_for_discharge(params, 0.4)
    q_mm, _ = gr4h(np.zeros(2), np.zeros(2), params, state)
    assert q_mm[0] == pytest.approx(0.4, rel=1e-4)  # no rain: the routing store (+ percolation)
    assert q_mm[1] < q_mm[0]  # and a recession after
    with pytest.raises(ValueError, match="discharge_mm"):
        state_for_discharge(params, float("nan"))
