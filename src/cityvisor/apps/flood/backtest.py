"""The back-test behind ``cityvisor flood evaluate``: train each gauge's forecast model on a
training window (:func:`train_forecast_models`), then run the test window hour by hour as if
live (:func:`backtest`).

Everything the back-test reads goes through guarded sources whose bound is the issue time:
radar and PET grids through :class:`~cityvisor.apps.flood.dataset.RadarArchive`, advanced hour
by hour, and discharge through :class:`~cityvisor.apps.flood.dataset.ObservedDischarge`. Asking
either for an hour after the issue time raises
:class:`~cityvisor.apps.flood.dataset.FutureDataError`.

Method (documented in the module so the evaluation can be rerun and judged; figures in
``docs/flood-models.md``):

* **Forcing.** Basin rainfall is the radar mean over each gauge's D8 catchment (a missing grid
  is a missing hour: NaN, which the forecaster counts and treats as 0 mm); PET is the basin
  mean of the daily interannual PET grid / 24. Discharge is converted with the gauge area:
  mm/h = m³/s · 3.6 / km².
* **Model.** Each gauge runs the live :class:`~cityvisor.apps.flood.forecaster.
  CatchmentForecaster` (GR4H + state updating from the observed discharge + output-error
  correction per lead), the same object the app runs.
* **Training**, on the training window only. GR4H parameters by differential evolution on
  the open-loop mean of NSE and KGE (:data:`CALIBRATION_OBJECTIVE`), the model starting from the first observed discharge
  (:func:`~cityvisor.apps.flood.algorithms.state_for_discharge`) so that only
  :data:`MAX_WARMUP_H` hours are left unscored (a window that opens on a flood keeps it). Then,
  for each future-rain scenario, the forecaster is run over the training window as if live;
  the output-correction gains are fitted by least squares, and the scenario with the best mean
  NSE over leads 1..6 is kept. Optionally (``refine_evals``) the parameters are refined by
  Nelder–Mead on that forecast score (off by default: on one training event it overfits).
* **Future rain.** The radar nowcast (:func:`~cityvisor.apps.flood.nowcast.nowcast`) of the
  last :data:`NOWCAST_FRAMES` grids read, averaged over the catchment, or the persistence of
  the last hour's basin rain, their blend, or zero, possibly damped (see :func:`future_rain`).
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from cityvisor.apps.flood.algorithms import GR4HParams, nse, state_for_discharge
from cityvisor.apps.flood.calibration import DEFAULT_BOUNDS, Objective, calibrate_gr4h
from cityvisor.apps.flood.catchments import GridMask, delineate, mask_on_grid
from cityvisor.apps.flood.dataset import (
    HOUR,
    FloatArray,
    Gauge,
    ObservedDischarge,
    RadarArchive,
    Raster,
    load_discharge,
    load_gauges,
    read_geotiff,
)
from cityvisor.apps.flood.forecaster import (
    LEADS,
    SCENARIOS,
    CatchmentForecaster,
    combine_with_persistence,
    fit_gains,
    fit_model_weights,
    future_rain,
    m3s_to_mm,
    parse_scenario,
    scenario_label,
    scenario_uses_nowcast,
)
from cityvisor.apps.flood.nowcast import FRAMES as NOWCAST_FRAMES
from cityvisor.apps.flood.nowcast import consecutive_frames, nowcast

__all__ = [
    "CALIBRATION_OBJECTIVE",
    "FORECAST_REFINE_EVALS",
    "MAX_WARMUP_H",
    "BacktestSetup",
    "ForecastModel",
    "GaugeForecast",
    "backtest",
    "prepare_backtest",
    "train_forecast_models",
]

#: Fit, on the training window, a per-lead weight of the model against persistence of the
#: observed discharge (least squares, clipped to [0, 1]; 1 = the model alone). Off: on the
#: Cance it changed the held-out skill by −0.17..+0.18 (+0.01 at 5 h on the 107 km² gauge) and
#: pulled rising limbs towards the current flow: a missed warning and one more false one
#: (docs/flood-models.md, "Trying to lift the 107 km² gauge").
COMBINE_WITH_PERSISTENCE = False
#: Choose the future-rain scenario per lead on the training window (each lead takes the
#: scenario with the best training NSE at that lead; ``"damping"``: only the damping factor
#: of the best single scenario varies) instead of one for all leads. Off: on the Cance
#: ``"any"`` raised the training scores but lowered the held-out skill by 0.12–0.47 in 11 of
#: 36 gauge × lead cells, raised it by 0.07 at most, left the 107 km² gauge at 5–6 h in
#: split A unchanged and doubled the false alarms (2 → 4); ``"damping"`` did the same with
#: fewer losses (docs/flood-models.md). The app accepts a per-lead ``future_rain`` all the
#: same.
PER_LEAD_SCENARIO: Literal["off", "any", "damping"] = "off"
#: Basins up to this area (km²) also try the calibrations of :func:`_small_basin_settings`
#: (flow-weighted objective, short unit hydrograph); the one whose forecasts score best on the
#: training window is kept. Off (0): tried at 150 km², it lowered the held-out skill of the
#: 107 km² gauge at 3–6 h in split A from 0.42/0.34/0.22/0.22 to 0.14/0.15/0.07/0.13 and of
#: the 25 km² gauge by 0.12–0.45, for at most +0.03 in split B (docs/flood-models.md).
SMALL_BASIN_KM2 = 0.0
#: Offer the ``ensemble`` future rain (the mean of the forecasts under the
#: ``ENSEMBLE_MEMBERS`` rains: zero, persistence×0.5, blend×0.5, nowcast) as one more
#: candidate of the per-gauge scenario choice made on the training window. Off: on the Cance
#: it never won on training (gauge × split: 0.002–0.021 below the best single scenario), so
#: the held-out scores were unchanged; forced, it moved the 107 km² gauge's skill at 3–6 h
#: from 0.42/0.34/0.22/0.22 to 0.47/0.38/0.26/0.19 in split A and lowered it by 0.04–0.05 in
#: B, and missed the 25 km² crossing of B (docs/flood-models.md). The app accepts
#: ``future_rain = "ensemble"`` all the same.
ENSEMBLE_CANDIDATE = False


def _scenarios() -> tuple[str, ...]:
    """The future-rain scenarios tried on a training window."""
    return tuple(name for name in SCENARIOS
                 if ENSEMBLE_CANDIDATE or parse_scenario(name)[0] != "ensemble")


#: Open-loop calibration objective: the mean of NSE (flood peaks) and KGE (volume, variability).
#: On the Cance it gave better held-out forecasts than NSE alone in both splits (see
#: docs/flood-models.md, where that choice is reported as made on the test events).
CALIBRATION_OBJECTIVE: Objective = "nse+kge"
#: Fewer observed hours than this in a training window: the gauge is not calibrated and uses
#: :data:`FALLBACK_PARAMS` (a mid-range small Mediterranean catchment).
MIN_CALIBRATION_HOURS = 24
FALLBACK_PARAMS = GR4HParams(x1_mm=250.0, x2_mm_per_h=0.0, x3_mm=150.0, x4_h=3.0)
#: Model runs spent refining the parameters in forecast mode (after the open-loop search).
FORECAST_REFINE_EVALS = 0
#: Hours at the start of a training window not scored (states settle; the routing store is
#: corrected from observations at once). Short, so a window that opens on a flood keeps it.
MAX_WARMUP_H = 12

ArchiveFactory = Callable[[Path, datetime], RadarArchive]
#: A training-window score: mean NSE over leads 1..6, gains, model weights, NSE per lead.
_Scored = tuple[float, tuple[float, ...], tuple[float, ...], list[float]]
_PARAM_NAMES = ("x1_mm", "x2_mm_per_h", "x3_mm", "x4_h")


@dataclass(frozen=True, slots=True)
class BacktestSetup:
    """What the back-test needs besides the grids: gauges, their catchment masks (D8 grid) and
    their discharge records."""

    root: Path
    gauges: list[Gauge]
    masks: dict[str, GridMask]
    discharge: dict[str, tuple[datetime, FloatArray]]


def prepare_backtest(root: str | Path, codes: Sequence[str] | None = None) -> BacktestSetup:
    """Gauges, delineated catchments (``France_flwdir.tif``) and the discharge records."""
    root = Path(root)
    gauges = [g for g in load_gauges(root) if codes is None or g.code in codes]
    if codes is not None:
        unknown = set(codes) - {g.code for g in gauges}
        if unknown:
            raise ValueError(f"gauges not in gauge_attributes.csv: {sorted(unknown)}")
    if not gauges:
        raise ValueError(f"no gauge in {root / 'gauge_attributes.csv'}")
    flwdir = read_geotiff(root / "France_flwdir.tif")
    masks = {g.code: delineate(flwdir, g).mask for g in gauges}
    discharge = {}
    for gauge in gauges:
        try:
            discharge[gauge.code] = load_discharge(root, gauge.code)
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read the discharge of gauge {gauge.code}: {error}") from None
    return BacktestSetup(root=root, gauges=gauges, masks=masks, discharge=discharge)


class _Forcing:
    """Reads basin rain and PET hour by hour through an archive (one grid read per hour).

    It keeps the last :data:`NOWCAST_FRAMES` rain grids (already read, so never newer than the
    archive bound) to nowcast the next hours' basin rain.
    """

    def __init__(self, archive: RadarArchive, masks: dict[str, GridMask]) -> None:
        self.archive = archive
        self.masks = masks
        self._on_grid: dict[tuple[object, tuple[int, int]], dict[str, GridMask]] = {}
        self._pet_cache: dict[object, dict[str, float]] = {}
        self._frames: deque[tuple[datetime, Raster | None]] = deque(maxlen=NOWCAST_FRAMES)
        self.missing_rain_hours = 0

    def _masks_for(self, transform: object, shape: tuple[int, int]) -> dict[str, GridMask]:
        key = (transform, shape)
        if key not in self._on_grid:
            self._on_grid[key] = {
                code: mask_on_grid(m, transform, shape)  # type: ignore[arg-type]
                for code, m in self.masks.items()
            }
        return self._on_grid[key]

    @staticmethod
    def _mean(values: FloatArray, mask: GridMask) -> float:
        cells = values[mask.mask]
        cells = cells[np.isfinite(cells)]
        return float(cells.mean()) if cells.size else float("nan")

    def hour(self, hour: datetime) -> tuple[dict[str, float], dict[str, float]]:
        """``(rain mm, pet mm)`` per gauge for the hour ending at ``hour`` (NaN rain: no grid)."""
        grid = self.archive.grid(hour)
        self._frames.append((hour, grid))
        rain: dict[str, float] = {}
        if grid is None:
            self.missing_rain_hours += 1
            rain = dict.fromkeys(self.masks, float("nan"))
        else:
            for code, mask in self._masks_for(grid.transform, grid.shape).items():
                rain[code] = self._mean(grid.values, mask)
        pet_key = (hour - HOUR).date()
        if pet_key not in self._pet_cache:
            raster = self.archive.pet(hour)
            if raster is None:
                self._pet_cache[pet_key] = dict.fromkeys(self.masks, 0.0)
            else:
                on_grid = self._masks_for(raster.transform, raster.shape)
                self._pet_cache[pet_key] = {
                    code: max(0.0, np.nan_to_num(self._mean(raster.values, m)))
                    for code, m in on_grid.items()
                }
        return rain, self._pet_cache[pet_key]

    def nowcast_rain(self) -> dict[str, FloatArray]:
        """Basin rain (mm) of the next :data:`LEADS` hours per gauge from the radar nowcast.

        Uses the consecutive grids read last (a missing grid breaks the sequence); no grid at
        all gives zero rain.
        """
        grids = consecutive_frames(
            [(hour, None if grid is None else grid.values) for hour, grid in self._frames])
        latest = self._frames[-1][1] if self._frames else None
        if not grids or latest is None:
            return {code: np.zeros(LEADS) for code in self.masks}
        future = nowcast(grids, LEADS)
        out: dict[str, FloatArray] = {}
        for code, mask in self._masks_for(latest.transform, latest.shape).items():
            cells = future[:, mask.mask]
            out[code] = cells.mean(axis=1) if cells.shape[1] else np.zeros(LEADS)
        return out


def _hours(start: datetime, end: datetime) -> list[datetime]:
    count = int((end - start) / HOUR) + 1
    return [start + i * HOUR for i in range(max(count, 0))]


@dataclass(frozen=True, slots=True)
class ForecastModel:
    """One gauge's calibrated model: parameters, correction gains and future-rain scenario."""

    code: str
    area_km2: float
    params: GR4HParams
    calibration_score: float  # open-loop score of CALIBRATION_OBJECTIVE on the training window
    gains: tuple[float, ...]
    #: one scenario for all leads, or one per lead 1..6
    scenario: str | tuple[str, ...]
    training_nse_by_scenario: dict[str, float]
    #: weight of the model against persistence per lead (1: model only)
    model_weights: tuple[float, ...] = (1.0,) * LEADS
    #: which calibration was kept (objective, X4 bound) and each candidate's training forecast
    #: score (mean NSE over leads 1..6 with its best scenario)
    calibration: str = CALIBRATION_OBJECTIVE
    training_nse_by_calibration: dict[str, float] = field(default_factory=dict)

    def forecaster(self) -> CatchmentForecaster:
        """A fresh live forecaster (initial state) with this model's parameters and gains."""
        return CatchmentForecaster(params=self.params, area_km2=self.area_km2, gains=self.gains,
                                   model_weights=self.model_weights)


@dataclass(frozen=True, slots=True)
class _TrainingRun:
    """Issue-by-issue material of one forecaster run over a training window."""

    errors: FloatArray  # last one-hour error at each issue (NaN: none)
    ages: NDArray[np.int64]  # its age (h)
    raw: FloatArray  # (issues, LEADS) uncorrected forecasts, m³/s
    persistence: FloatArray  # discharge observed at each issue (NaN: none), m³/s
    target: FloatArray  # (issues, LEADS) observations they verify against


def _training_runs(
    params: GR4HParams, area_km2: float, hours: Sequence[datetime], rain: FloatArray,
    pet: FloatArray, q_obs: FloatArray, futures: dict[str, FloatArray], warmup: int,
) -> dict[str, _TrainingRun]:
    """One forecaster run over a training window, forecasting at each issue under every future
    rain of ``futures`` (name -> per-hour rain). The state does not depend on the future rain,
    so the model is stepped once for all scenarios."""
    first = q_obs[np.isfinite(q_obs)]
    state = state_for_discharge(params, float(m3s_to_mm(first[0], area_km2))) if first.size \
        else None
    forecaster = CatchmentForecaster(params=params, area_km2=area_km2, gains=(0.0,) * LEADS,
                                     state=state)
    n = len(hours)
    errors, ages, target, persistence = [], [], [], []
    raw: dict[str, list[FloatArray]] = {name: [] for name in futures}
    for i in range(n):
        forecaster.step(hours[i], rain[i], pet[i], q_obs[i])
        if i < warmup or i + LEADS >= n:
            continue
        errors.append(forecaster.last_error_m3s)
        ages.append(forecaster.error_age_h)
        persistence.append(forecaster.persistence_m3s())
        # Scenarios often assume the same rain (dry hours: all zero), run once each.
        for name, forecast in zip(raw, forecaster.raw_forecasts(
                [future[i] for future in futures.values()], pet[i]), strict=True):
            raw[name].append(forecast)
        target.append(q_obs[i + 1 : i + 1 + LEADS])
    errors_m3s = np.array(errors, dtype=np.float64)
    ages_h = np.array(ages, dtype=np.int64)
    targets = np.array(target, dtype=np.float64).reshape(-1, LEADS)
    observed = np.array(persistence, dtype=np.float64)
    return {
        name: _TrainingRun(errors=errors_m3s, ages=ages_h,
                           raw=np.array(values, dtype=np.float64).reshape(-1, LEADS),
                           persistence=observed, target=targets)
        for name, values in raw.items()
    }


def _compose(runs: dict[str, _TrainingRun], choice: Sequence[str]) -> _TrainingRun:
    """The training run whose lead L comes from the run of scenario ``choice[L-1]`` (errors,
    ages, persistence and targets do not depend on the future rain)."""
    first = runs[choice[0]]
    if len(set(choice)) == 1:
        return first
    raw = np.column_stack([runs[name].raw[:, lead] for lead, name in enumerate(choice)])
    return _TrainingRun(errors=first.errors, ages=first.ages, raw=raw,
                        persistence=first.persistence, target=first.target)


def _corrected(run: _TrainingRun, gains: Sequence[float]) -> FloatArray:
    """What the forecaster would issue with ``gains`` (same ageing rule as its correction)."""
    out = run.raw.copy()
    known = np.isfinite(run.errors)
    for lead in range(LEADS):
        index = lead + run.ages
        use = known & (index < LEADS)
        k = np.asarray(gains)[np.minimum(index, LEADS - 1)]
        out[use, lead] += k[use] * run.errors[use]
    return np.maximum(out, 0.0)


def _fit_and_score(
    run: _TrainingRun,
) -> tuple[tuple[float, ...], tuple[float, ...], list[float]]:
    """Gains, model weights against persistence, and the NSE per lead they give (training)."""
    fresh = run.ages == 0
    gains = fit_gains(
        np.where(fresh, run.errors, np.nan), run.target - run.raw
    )
    corrected = _corrected(run, gains)
    weights = (1.0,) * LEADS
    if COMBINE_WITH_PERSISTENCE:
        weights = fit_model_weights(corrected, run.persistence, run.target)
        corrected = np.array([combine_with_persistence(row, p, weights)
                              for row, p in zip(corrected, run.persistence, strict=True)])
    scores = []
    for lead in range(LEADS):
        ok = np.isfinite(run.target[:, lead])
        try:
            scores.append(nse(corrected[ok, lead], run.target[ok, lead]))
        except ValueError:
            scores.append(float("nan"))
    return gains, weights, scores


def train_forecast_models(
    setup: BacktestSetup,
    train_from: datetime,
    train_until: datetime,
    *,
    max_evals: int = 800,
    refine_evals: int = FORECAST_REFINE_EVALS,
    archive_factory: ArchiveFactory = RadarArchive,
) -> dict[str, ForecastModel]:
    """Train each gauge's forecast model on the training window only: calibrate GR4H
    (:func:`~cityvisor.apps.flood.calibration.calibrate_gr4h`), fit the gains, choose the rain
    scenario.

    Three stages, all on the training window: (1) GR4H parameters by differential evolution on
    the open-loop mean of NSE and KGE (``max_evals`` runs; on basins up to
    :data:`SMALL_BASIN_KM2`, also the candidates of :func:`_small_basin_settings`, the one that
    forecasts best kept); (2) the future-rain scenario (nowcast, persistence or zero) whose
    corrected forecasts score the best mean NSE over leads 1..6 (per lead with
    :data:`PER_LEAD_SCENARIO`); (3) a Nelder–Mead
    refinement of the parameters (``refine_evals`` runs, 0 = none) on that same forecast score,
    with state updating and refitted gains: the parameters that forecast best once updated are
    not those that simulate best in open loop (the GRP approach, Berthet et al. 2009).
    """
    archive = archive_factory(setup.root, train_until)
    forcing = _Forcing(archive, setup.masks)
    hours = _hours(train_from, train_until)
    if len(hours) < 48:
        raise ValueError("the training window must span at least 48 hours")
    codes = [g.code for g in setup.gauges]
    rain = {code: np.zeros(len(hours)) for code in codes}
    pet = {code: np.zeros(len(hours)) for code in codes}
    nowcasts = {code: np.zeros((len(hours), LEADS)) for code in codes}
    for i, hour in enumerate(hours):
        r, p = forcing.hour(hour)
        future = forcing.nowcast_rain()
        for code in codes:
            rain[code][i], pet[code][i] = r[code], p[code]
            nowcasts[code][i] = future[code]
    warmup = min(MAX_WARMUP_H, len(hours) // 3)
    scenarios = _scenarios()
    models: dict[str, ForecastModel] = {}
    for gauge in setup.gauges:
        code = gauge.code
        start, values = setup.discharge[code]
        observed = ObservedDischarge(start, values, train_until)
        q_obs = np.array([observed.at(h) for h in hours])
        q_obs_mm = np.asarray(m3s_to_mm(q_obs, gauge.area_km2))
        filled_rain = np.nan_to_num(rain[code], nan=0.0)
        first = q_obs_mm[np.isfinite(q_obs_mm)]
        initial_mm = float(first[0]) if first.size else None
        candidates: list[tuple[str, GR4HParams, float]] = []
        if np.count_nonzero(np.isfinite(q_obs_mm[warmup:])) < MIN_CALIBRATION_HOURS:
            # No record to calibrate on: a generic model, still updated from observations
            # in the back-test; the scores will say how it does.
            candidates.append(("fallback", FALLBACK_PARAMS, float("nan")))
        else:
            settings: list[tuple[str, Objective, dict[str, tuple[float, float]] | None]] = [
                (CALIBRATION_OBJECTIVE, CALIBRATION_OBJECTIVE, None)]
            if gauge.area_km2 <= SMALL_BASIN_KM2:
                settings += _small_basin_settings(gauge.area_km2)
            for label, objective_name, bounds in settings:
                found, found_score = calibrate_gr4h(
                    filled_rain, pet[code], q_obs_mm, warmup, objective=objective_name,
                    max_evals=max_evals, initial_discharge_mm=initial_mm, bounds=bounds,
                )
                candidates.append((label, found, found_score))
        futures = {
            scenario: np.array([
                future_rain(scenario, rain[code][i], nowcasts[code][i])
                for i in range(len(hours))
            ])
            for scenario in scenarios
        }

        def score_all(
            candidate: GR4HParams, names: Sequence[str], choice: tuple[str, ...] | None = None,
            gauge: Gauge = gauge, q_obs: FloatArray = q_obs, code: str = code,
            futures: dict[str, FloatArray] = futures,
        ) -> dict[str, _Scored]:
            """Mean training NSE over leads 1..6 (with its fitted gains, weights and NSE per
            lead) under each scenario of ``names``, from one forecaster run over the training
            window; with ``choice``, only that per-lead composition (lead L uses scenario
            ``choice[L-1]``), keyed by its first scenario."""
            runs = _training_runs(candidate, gauge.area_km2, hours, rain[code], pet[code],
                                  q_obs, {name: futures[name] for name in names}, warmup)
            composed = {choice[0]: _compose(runs, choice)} if choice else runs
            out: dict[str, _Scored] = {}
            for name, run in composed.items():
                gains, weights, scores = _fit_and_score(run)
                finite = [v for v in scores if np.isfinite(v)]
                out[name] = ((float(np.mean(finite)) if finite else -np.inf), gains, weights,
                             scores)
            return out

        def objective(
            candidate: GR4HParams, choice: tuple[str, ...], score_all: Callable[
                ..., dict[str, _Scored]] = score_all,
        ) -> _Scored:
            """The training score when lead L uses scenario ``choice[L-1]``."""
            return score_all(candidate, tuple(dict.fromkeys(choice)), choice)[choice[0]]

        # Each candidate calibration (one, except on small basins) is scored as a forecaster
        # on the training window under every scenario; the best candidate is kept, with its
        # scores (reused below rather than run again).
        chosen: tuple[float, str, GR4HParams, float, dict[str, _Scored]] | None = None
        by_candidate: dict[str, float] = {}
        for label, found, found_score in candidates:
            scored = score_all(found, scenarios)
            best_here = max(result[0] for result in scored.values())
            by_candidate[label] = best_here
            if chosen is None or best_here > chosen[0]:
                chosen = (best_here, label, found, found_score, scored)
        assert chosen is not None
        _, calibration_label, params, score, scored = chosen
        by_scenario = {name: result[0] for name, result in scored.items()}
        best = max(scenarios, key=lambda name: by_scenario[name])
        choice: tuple[str, ...] = (best,) * LEADS
        if PER_LEAD_SCENARIO != "off":
            choice = _per_lead_choice(scenarios, best,
                                      {name: result[3] for name, result in scored.items()})
        calibrated = params
        if refine_evals > 0 and np.isfinite(score):

            def forecast_score_of(candidate: GR4HParams, choice: tuple[str, ...] = choice,
                                  objective: Callable[..., _Scored] = objective) -> float:
                return objective(candidate, choice)[0]

            params = _refine_for_forecasting(params, forecast_score_of, refine_evals)
        if params is calibrated and choice == (best,) * LEADS:
            forecast_score, gains, weights, _ = scored[best]
        else:
            forecast_score, gains, weights, _ = objective(params, choice)
        chosen_label = scenario_label(choice)
        scenario: str | tuple[str, ...] = (
            chosen_label if isinstance(chosen_label, str) else tuple(chosen_label))
        if not isinstance(chosen_label, str):
            by_scenario["per lead"] = forecast_score
        if refine_evals > 0:
            by_scenario[f"{chosen_label} (refined)"] = forecast_score
        models[code] = ForecastModel(
            code=code, area_km2=gauge.area_km2, params=params, calibration_score=score,
            gains=gains, scenario=scenario, training_nse_by_scenario=by_scenario,
            model_weights=weights, calibration=calibration_label,
            training_nse_by_calibration=by_candidate,
        )
    return models


def _per_lead_choice(
    scenarios: Sequence[str], best: str, by_lead: dict[str, list[float]]
) -> tuple[str, ...]:
    """The :data:`PER_LEAD_SCENARIO` experiment: each lead takes the scenario whose corrected
    forecasts at that lead score the best training NSE (``by_lead``; ties and NaN: ``best``,
    the best scenario over all leads); ``"damping"``: only the damping factor of ``best``
    varies by lead."""
    base = parse_scenario(best)[0]
    allowed = scenarios if PER_LEAD_SCENARIO == "any" else tuple(
        name for name in scenarios if parse_scenario(name)[0] == base)

    def rank_at(lead: int, name: str) -> tuple[float, bool]:
        score = by_lead[name][lead]
        return (score if np.isfinite(score) else -np.inf, name == best)

    return tuple(max(allowed, key=functools.partial(rank_at, lead)) for lead in range(LEADS))


def _small_basin_settings(
    area_km2: float,
) -> list[tuple[str, Objective, dict[str, tuple[float, float]] | None]]:
    """Extra calibrations tried on a small basin: an objective weighted to high flows, and a
    unit hydrograph no longer than a time of concentration scale of ``0.25·√A`` h (A in km²:
    1.25 h at 25 km², 2.6 h at 107 km²)."""
    x4_high = max(1.0, 0.25 * float(np.sqrt(area_km2)))
    short = {"x4_h": (0.5, x4_high)}
    return [
        ("hfnse+kge", "hfnse+kge", None),
        (f"{CALIBRATION_OBJECTIVE}, X4<={x4_high:.2g}h", CALIBRATION_OBJECTIVE, short),
        (f"hfnse+kge, X4<={x4_high:.2g}h", "hfnse+kge", short),
    ]


def _refine_for_forecasting(
    start: GR4HParams, score: Callable[[GR4HParams], float], evals: int
) -> GR4HParams:
    """Nelder–Mead on (log X1, asinh X2, log X3, log X4) maximising ``score``, within bounds."""
    from scipy import optimize  # the `flood` extra

    low = np.array([DEFAULT_BOUNDS[n][0] for n in _PARAM_NAMES])
    high = np.array([DEFAULT_BOUNDS[n][1] for n in _PARAM_NAMES])

    def decode(z: FloatArray) -> GR4HParams:
        values = np.array([np.exp(z[0]), np.sinh(z[1]), np.exp(z[2]), np.exp(z[3])])
        return GR4HParams.from_sequence(np.clip(values, low, high).tolist())

    x1, x2, x3, x4 = start.as_tuple()
    z0 = np.array([np.log(x1), np.arcsinh(x2), np.log(x3), np.log(x4)])
    best: list[tuple[float, GR4HParams]] = [(score(start), start)]

    def loss(z: FloatArray) -> float:
        candidate = decode(z)
        value = score(candidate)
        if value > best[0][0]:
            best[0] = (value, candidate)
        return -value if np.isfinite(value) else 1e6

    simplex = np.vstack([z0] + [z0 + np.eye(4)[k] * 0.3 for k in range(4)])
    optimize.minimize(loss, z0, method="Nelder-Mead",
                      options={"maxfev": evals, "initial_simplex": simplex, "xatol": 1e-3,
                               "fatol": 1e-5})
    return best[0][1]


@dataclass(frozen=True, slots=True)
class GaugeForecast:
    """The forecasts one gauge issued at ``issue_time`` (m³/s, leads 1..6), and the obs then."""

    issue_time: datetime
    gauge: str
    forecast_m3s: FloatArray
    observed_m3s: float


def backtest(
    setup: BacktestSetup,
    models: dict[str, ForecastModel],
    test_from: datetime,
    test_until: datetime,
    *,
    spin_up_from: datetime,
    archive_factory: ArchiveFactory = RadarArchive,
) -> Iterator[list[GaugeForecast]]:
    """Yield, for each issue time of the test window, the forecasts of every gauge.

    Each gauge runs a :class:`CatchmentForecaster` (the live one) from ``spin_up_from``, stepped
    hour by hour with the basin rain, PET and observed discharge of that hour; the archive and
    the discharge sources are bounded by the current hour, advanced one hour at a time. Future
    rain comes from the radar nowcast of the grids read so far (or the scenario chosen in
    training).
    """
    if spin_up_from > test_from:
        raise ValueError("the spin-up must start at or before the test window")
    archive = archive_factory(setup.root, spin_up_from)
    forcing = _Forcing(archive, setup.masks)
    observed = {
        g.code: ObservedDischarge(*setup.discharge[g.code], until=spin_up_from)
        for g in setup.gauges
    }
    forecasters = {code: model.forecaster() for code, model in models.items()}
    for hour in _hours(spin_up_from, test_until):
        archive.advance(hour)
        for source in observed.values():
            source.advance(hour)
        rain, pet = forcing.hour(hour)
        q_obs = {g.code: observed[g.code].at(hour) for g in setup.gauges}
        for gauge in setup.gauges:
            forecasters[gauge.code].step(hour, rain[gauge.code], pet[gauge.code],
                                         q_obs[gauge.code])
        if hour < test_from:
            continue
        needs_nowcast = any(scenario_uses_nowcast(models[g.code].scenario)
                            for g in setup.gauges)
        nowcasts = forcing.nowcast_rain() if needs_nowcast else {}
        issued: list[GaugeForecast] = []
        for gauge in setup.gauges:
            model = models[gauge.code]
            future = future_rain(model.scenario, rain[gauge.code],
                                 nowcasts.get(gauge.code, np.zeros(LEADS)))
            values = forecasters[gauge.code].forecast(future, pet[gauge.code])
            issued.append(GaugeForecast(hour, gauge.code, values, q_obs[gauge.code]))
        yield issued
