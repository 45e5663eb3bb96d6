"""`cityvisor flood evaluate`: train on one window, back-test another as if live, write the
forecasts and score them.

Scores (all on the test window; a forecast is verified against the observation at
``issue_time + lead``; hours where the model, persistence or the observation is missing are left
out of both, so they are compared on the same hours):

* NSE and KGE per gauge and lead, for the model and for persistence (``Qobs(t)`` at every lead),
  and the skill ``1 - (1 - NSE) / (1 - NSE_persistence)``.
* Peak error and timing on the largest test event (the hour of the highest observation in the
  test window): for each lead, the highest forecast valid within ±24 h of it, its relative error
  (%) and its time minus the observed peak time (h; negative = early).
* Warnings for ``--threshold CODE=M3S``: a warning is on at issue time ``t`` when any forecast
  of leads 1..6 reaches the threshold. An observed crossing (``Qobs(v) >= thr > Qobs(v-1)``) is
  warned if a warning was on at some ``t`` with ``v - 6 <= t <= v - 1`` (at least 1 h ahead);
  its warning lead is ``v`` minus the earliest such ``t``. A warning episode (consecutive issue
  times with the warning on) is a false alarm if no observation reaches the threshold between its
  first issue time + 1 h and its last + 6 h. POD = warned / crossings, FAR = false episodes /
  episodes, CSI = warned / (crossings + false episodes).
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from cityvisor.apps.flood.algorithms import kge, nse
from cityvisor.apps.flood.backtest import (
    CALIBRATION_OBJECTIVE,
    FORECAST_REFINE_EVALS,
    MAX_WARMUP_H,
    backtest,
    prepare_backtest,
    train_forecast_models,
)
from cityvisor.apps.flood.dataset import ObservedDischarge
from cityvisor.apps.flood.forecaster import LEADS
from cityvisor.apps.flood.hours import HOUR, FloatArray
from cityvisor.ngsild.time import format_utc_seconds

__all__ = [
    "CSV_COLUMNS",
    "peak_scores",
    "run_evaluation",
    "skill",
    "warning_scores",
]

CSV_COLUMNS = ("issue_time", "gauge", "lead_h", "forecast_m3s")
PEAK_WINDOW_H = 24


def skill(nse_model: float, nse_reference: float) -> float:
    """``1 - (1 - NSE) / (1 - NSE_reference)``: 0 = as good as the reference, 1 = perfect."""
    if nse_reference == 1.0:
        return float("nan")
    return 1.0 - (1.0 - nse_model) / (1.0 - nse_reference)


def _safe(function: Any, sim: FloatArray, obs: FloatArray) -> float | None:
    try:
        value = float(function(sim, obs))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def peak_scores(forecast: ArrayLike, observed: ArrayLike, *, window_h: int = PEAK_WINDOW_H
                ) -> dict[str, float | int] | None:
    """Peak error on the largest event of ``observed``, for forecasts aligned on valid hours.

    ``forecast[i]`` and ``observed[i]`` refer to the same valid hour. Returns the observed peak
    index and value, the largest forecast within ±``window_h`` hours, its relative error (%) and
    its timing error in hours (forecast peak index minus observed peak index).
    """
    fc = np.asarray(forecast, dtype=np.float64)
    obs = np.asarray(observed, dtype=np.float64)
    if not np.isfinite(obs).any():
        return None
    peak = int(np.nanargmax(obs))
    lo, hi = max(0, peak - window_h), min(obs.size, peak + window_h + 1)
    window = fc[lo:hi]
    if not np.isfinite(window).any():
        return None
    fc_peak = lo + int(np.nanargmax(window))
    return {
        "observed_peak_index": peak,
        "observed_peak_m3s": float(obs[peak]),
        "forecast_peak_m3s": float(fc[fc_peak]),
        "peak_error_pct": 100.0 * (float(fc[fc_peak]) - float(obs[peak])) / float(obs[peak]),
        "timing_error_h": fc_peak - peak,
    }


def warning_scores(
    forecasts: ArrayLike, observed: ArrayLike, threshold: float, *, min_lead_h: int = 1
) -> dict[str, float | int | None]:
    """POD, FAR, CSI and median warning lead (minutes) for one threshold.

    ``forecasts[i, j]``: forecast issued at hour ``i`` for hour ``i + j + 1``;
    ``observed[i]``: observation at hour ``i`` (same hour axis; it may extend past the last
    issue time so the last forecasts can be verified). See the module docstring for the rules.
    """
    fc = np.asarray(forecasts, dtype=np.float64)
    obs = np.asarray(observed, dtype=np.float64)
    n_issue, leads = fc.shape
    warn = np.nan_to_num(fc, nan=-np.inf).max(axis=1) >= threshold
    above = np.nan_to_num(obs, nan=-np.inf) >= threshold
    crossings = [v for v in range(1, min(obs.size, n_issue + leads)) if above[v]
                 and np.isfinite(obs[v - 1]) and not above[v - 1]]
    lead_times: list[int] = []
    for v in crossings:
        issued = [t for t in range(max(0, v - leads), min(n_issue, v - min_lead_h + 1))
                  if warn[t]]
        if issued:
            lead_times.append(v - issued[0])
    episodes: list[tuple[int, int]] = []
    t = 0
    while t < n_issue:
        if warn[t]:
            start = t
            while t + 1 < n_issue and warn[t + 1]:
                t += 1
            episodes.append((start, t))
        t += 1
    false = sum(1 for s, e in episodes if not above[s + 1 : e + leads + 1].any())
    hits = len(lead_times)
    return {
        "threshold_m3s": threshold,
        "crossings": len(crossings),
        "warned": hits,
        "warning_episodes": len(episodes),
        "false_alarms": false,
        "pod": hits / len(crossings) if crossings else None,
        "far": false / len(episodes) if episodes else None,
        "csi": hits / (len(crossings) + false) if crossings or false else None,
        "median_warning_lead_min": 60.0 * statistics.median(lead_times) if lead_times else None,
    }


def run_evaluation(
    dataset: str | Path,
    train_from: datetime,
    train_until: datetime,
    test_from: datetime,
    test_until: datetime,
    forecasts_out: str | Path,
    *,
    thresholds: Mapping[str, float] | None = None,
    max_evals: int = 800,
    refine_evals: int = FORECAST_REFINE_EVALS,
    codes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run the whole evaluation; write the forecasts CSV and return the scores."""
    if not (train_from < train_until and test_from <= test_until):
        raise ValueError("each window must start before it ends")
    if train_from <= test_until and test_from <= train_until:
        raise ValueError("the training and test windows overlap")
    thresholds = dict(thresholds or {})
    setup = prepare_backtest(dataset, codes)
    unknown = set(thresholds) - {g.code for g in setup.gauges}
    if unknown:
        raise ValueError(f"thresholds for unknown gauges: {sorted(unknown)}")
    models = train_forecast_models(setup, train_from, train_until, max_evals=max_evals,
                                   refine_evals=refine_evals)
    warmup = min(MAX_WARMUP_H, int((train_until - train_from) / HOUR) // 3)
    spin_up_from = train_from if train_until < test_from else test_from - warmup * HOUR
    issue_times: list[datetime] = []
    per_gauge: dict[str, list[FloatArray]] = {g.code: [] for g in setup.gauges}
    path = Path(forecasts_out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for issued in backtest(setup, models, test_from, test_until, spin_up_from=spin_up_from):
            issue_times.append(issued[0].issue_time)
            for item in issued:
                per_gauge[item.gauge].append(item.forecast_m3s)
                for lead, value in enumerate(item.forecast_m3s, start=1):
                    writer.writerow([format_utc_seconds(item.issue_time), item.gauge, lead,
                                     f"{value:.4f}"])
    # Verification: observations up to test_until + 6 h (after the back-test, never inside it).
    end = test_until + LEADS * HOUR
    n_issue = len(issue_times)
    per_lead = any(not isinstance(model.scenario, str) for model in models.values())
    result: dict[str, Any] = {
        "train": [format_utc_seconds(train_from), format_utc_seconds(train_until)],
        "test": [format_utc_seconds(test_from), format_utc_seconds(test_until)],
        "issue_times": n_issue,
        "method": {
            "model": "GR4H, calibrated on the mean of NSE and KGE over the training window "
                     "(differential evolution + L-BFGS-B), run by the live CatchmentForecaster",
            "state_updating": "rain in transit scaled by observed/simulated, routing store "
                              "reset to the observed flow, every hour with an observation",
            "correction": "additive output-error correction, least-squares gain per lead",
            "future_rain": "radar nowcast (optical-flow extrapolation), persistence of the "
                           "last hour's basin rain, their blend or zero, possibly damped: the "
                           "best on the training window per gauge"
                           + (" and lead" if per_lead else ""),
            "refine_evals": refine_evals,
        },
        "gauges": {},
    }
    for gauge in setup.gauges:
        model = models[gauge.code]
        source = ObservedDischarge(*setup.discharge[gauge.code], until=end)
        obs = np.array([source.at(test_from + i * HOUR) for i in range(n_issue + LEADS)])
        fc = np.array(per_gauge[gauge.code])
        pers = obs[:n_issue]
        leads: dict[str, Any] = {}
        for j in range(LEADS):
            target = obs[j + 1 : j + 1 + n_issue]
            ok = np.isfinite(target) & np.isfinite(fc[:, j]) & np.isfinite(pers)
            m_nse = _safe(nse, fc[ok, j], target[ok])
            p_nse = _safe(nse, pers[ok], target[ok])
            lead_peak = np.full(n_issue + LEADS, np.nan)
            lead_peak[j + 1 : j + 1 + n_issue] = fc[:, j]
            leads[str(j + 1)] = {
                "n": int(ok.sum()),
                "nse": m_nse,
                "kge": _safe(kge, fc[ok, j], target[ok]),
                "nse_persistence": p_nse,
                "kge_persistence": _safe(kge, pers[ok], target[ok]),
                "skill_vs_persistence": (
                    skill(m_nse, p_nse) if m_nse is not None and p_nse is not None else None
                ),
                "peak": _peak_with_time(lead_peak, obs, test_from),
            }
        entry: dict[str, Any] = {
            "area_km2": model.area_km2,
            "params": dict(zip(("x1_mm", "x2_mm_per_h", "x3_mm", "x4_h"),
                               model.params.as_tuple(), strict=True)),
            "calibration_objective": CALIBRATION_OBJECTIVE,
            "calibration_score": (
                model.calibration_score if math.isfinite(model.calibration_score) else None
            ),
            "calibration": model.calibration,
            "training_mean_nse_by_calibration": {
                name: value if math.isfinite(value) else None
                for name, value in model.training_nse_by_calibration.items()
            },
            "correction_gains": list(model.gains),
            "model_weights": list(model.model_weights),
            "future_rain": (model.scenario if isinstance(model.scenario, str)
                            else list(model.scenario)),
            "training_mean_nse_by_scenario": {
                name: value if math.isfinite(value) else None
                for name, value in model.training_nse_by_scenario.items()
            },
            "leads": leads,
        }
        if gauge.code in thresholds:
            thr = thresholds[gauge.code]
            pers_fc = np.repeat(pers[:, None], LEADS, axis=1)
            entry["warnings"] = {
                "model": warning_scores(fc, obs, thr),
                "persistence": warning_scores(pers_fc, obs, thr),
            }
        result["gauges"][gauge.code] = entry
    return result


def _peak_with_time(fc: FloatArray, obs: FloatArray, start: datetime) -> dict[str, Any] | None:
    scores = peak_scores(fc, obs)
    if scores is None:
        return None
    out: dict[str, Any] = dict(scores)
    peak_time = start + int(scores["observed_peak_index"]) * HOUR
    out["observed_peak_time"] = format_utc_seconds(peak_time)
    del out["observed_peak_index"]
    return out
