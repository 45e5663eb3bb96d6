"""Calibrate GR4H per gauge and replay a test window hour by hour, as if live (issue 4).

Everything the replay reads goes through guarded sources whose bound is the issue time:
radar and PET grids through :class:`~cityvisor.apps.flood.dataset.RadarArchive`, advanced hour by
hour, and discharge through :class:`ObservedDischarge`. Asking either for an hour after the issue
time raises :class:`~cityvisor.apps.flood.dataset.FutureDataError`.

Method (documented in the module so the evaluation can be rerun and judged):

* **Forcing.** Basin rainfall is the radar mean over each gauge's D8 catchment (missing grid
  → 0 mm, counted); PET is the basin mean of the daily interannual PET grid / 24.
  Discharge is converted with the gauge area: mm/h = m³/s · 3.6 / km².
* **Calibration.** :func:`~cityvisor.apps.flood.calibration.calibrate_gr4h` (NSE) on the
  training window only; the first third of it (at most 7 days) is warm-up, not scored.
* **Error correction.** At issue time ``t`` the open-loop model error ``e = Qobs(t) - Qsim(t)``
  (m³/s) is added to the raw forecast with one gain per lead: ``F(t+L) = raw(t+L) + k_L · e``,
  clipped at 0. ``k_L`` is the least-squares gain fitted on the training window
  (``k_L = Σ e_t d_{t+L} / Σ e_t²`` with ``d`` the raw forecast error); ``k_L = 1`` would be
  "persistence + modelled change". With no observation at ``t`` there is no correction.
* **Future rain.** There is no radar nowcast yet. The scenario is either zero rain or the
  persistence of the last hour's basin rain over the 6 h, whichever gives the better mean NSE
  over leads 1..6 on the training window (after correction).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from cityvisor.apps.flood.algorithms import GR4HParams, GR4HState, gr4h, initial_state, nse
from cityvisor.apps.flood.calibration import calibrate_gr4h
from cityvisor.apps.flood.catchments import GridMask, delineate, mask_on_grid
from cityvisor.apps.flood.dataset import (
    HOUR,
    FloatArray,
    FutureDataError,
    Gauge,
    RadarArchive,
    hour_floor,
    load_discharge,
    load_gauges,
    read_geotiff,
)

__all__ = [
    "LEADS",
    "ForecastModel",
    "GaugeForecast",
    "ObservedDischarge",
    "ReplaySetup",
    "calibrate",
    "m3s_to_mm",
    "mm_to_m3s",
    "prepare",
    "replay",
]

LEADS = 6
SCENARIOS = ("zero", "persistence")
MAX_WARMUP_H = 7 * 24

ArchiveFactory = Callable[[Path, datetime], RadarArchive]


def m3s_to_mm(q_m3s: FloatArray | float, area_km2: float) -> FloatArray | float:
    """Discharge in m³/s → depth over the catchment in mm/h."""
    return q_m3s * 3.6 / area_km2


def mm_to_m3s(q_mm: FloatArray | float, area_km2: float) -> FloatArray | float:
    """Depth over the catchment in mm/h → discharge in m³/s."""
    return q_mm * area_km2 / 3.6


class ObservedDischarge:
    """Hourly discharge (m³/s) of one gauge that cannot be read after ``until`` (like the radar)."""

    def __init__(self, start: datetime, values_m3s: FloatArray, until: datetime) -> None:
        self.start = start
        self._values = np.asarray(values_m3s, dtype=np.float64)
        self._until = hour_floor(until)

    @property
    def until(self) -> datetime:
        return self._until

    def advance(self, until: datetime) -> None:
        until = hour_floor(until)
        if until < self._until:
            raise ValueError("cannot move the discharge bound back")
        self._until = until

    def at(self, hour: datetime) -> float:
        """Discharge at ``hour`` (NaN if missing or outside the record)."""
        if hour > self._until:
            raise FutureDataError(f"discharge at {hour.isoformat()} is after {self._until}")
        index = int((hour - self.start) / HOUR)
        if 0 <= index < self._values.size:
            return float(self._values[index])
        return float("nan")


@dataclass(frozen=True, slots=True)
class ReplaySetup:
    """What the replay needs besides the data: gauges and their catchment masks (D8 grid)."""

    root: Path
    gauges: list[Gauge]
    masks: dict[str, GridMask]
    discharge: dict[str, tuple[datetime, FloatArray]]


def prepare(root: str | Path, codes: Sequence[str] | None = None) -> ReplaySetup:
    """Gauges, delineated catchments (``France_flwdir.tif``) and the discharge records."""
    root = Path(root)
    gauges = [g for g in load_gauges(root) if codes is None or g.code in codes]
    flwdir = read_geotiff(root / "France_flwdir.tif")
    masks = {g.code: delineate(flwdir, g).mask for g in gauges}
    discharge = {g.code: load_discharge(root, g.code) for g in gauges}
    return ReplaySetup(root=root, gauges=gauges, masks=masks, discharge=discharge)


class _Forcing:
    """Reads basin rain and PET hour by hour through an archive (one grid read per hour)."""

    def __init__(self, archive: RadarArchive, masks: dict[str, GridMask]) -> None:
        self.archive = archive
        self.masks = masks
        self._on_grid: dict[tuple[object, tuple[int, int]], dict[str, GridMask]] = {}
        self._pet_cache: dict[object, dict[str, float]] = {}
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
        """``(rain mm, pet mm)`` per gauge for the hour ending at ``hour``."""
        grid = self.archive.grid(hour)
        rain: dict[str, float] = {}
        if grid is None:
            self.missing_rain_hours += 1
            rain = dict.fromkeys(self.masks, 0.0)
        else:
            for code, mask in self._masks_for(grid.transform, grid.shape).items():
                value = self._mean(grid.values, mask)
                rain[code] = value if np.isfinite(value) else 0.0
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


def _hours(start: datetime, end: datetime) -> list[datetime]:
    count = int((end - start) / HOUR) + 1
    return [start + i * HOUR for i in range(max(count, 0))]


@dataclass(frozen=True, slots=True)
class ForecastModel:
    """One gauge's calibrated model: parameters, correction gains and rain scenario."""

    code: str
    area_km2: float
    params: GR4HParams
    calibration_nse: float
    gains: tuple[float, ...]
    scenario: str
    training_nse_by_scenario: dict[str, float]

    def forecast(
        self, state: GR4HState, q_sim_now: float, q_obs_now: float, last_rain: float,
        pet: float,
    ) -> FloatArray:
        """Corrected forecasts (m³/s) for leads 1..6 from ``state`` at the issue time."""
        raw = _raw_forecast(self.params, state, last_rain, pet, self.scenario, self.area_km2)
        error = q_obs_now - q_sim_now
        if not np.isfinite(error):
            return raw
        return np.maximum(raw + np.asarray(self.gains) * error, 0.0)


def _raw_forecast(
    params: GR4HParams, state: GR4HState, last_rain: float, pet: float, scenario: str,
    area_km2: float,
) -> FloatArray:
    rain = np.full(LEADS, last_rain if scenario == "persistence" else 0.0)
    q_mm, _ = gr4h(rain, np.full(LEADS, pet), params, state)
    return np.asarray(mm_to_m3s(q_mm, area_km2), dtype=np.float64)


def calibrate(
    setup: ReplaySetup,
    train_from: datetime,
    train_until: datetime,
    *,
    max_evals: int = 800,
    archive_factory: ArchiveFactory = RadarArchive,
) -> dict[str, ForecastModel]:
    """Calibrate each gauge on the training window only, and fit gains and the rain scenario."""
    archive = archive_factory(setup.root, train_until)
    forcing = _Forcing(archive, setup.masks)
    hours = _hours(train_from, train_until)
    if len(hours) < 48:
        raise ValueError("the training window must span at least 48 hours")
    rain = {g.code: np.zeros(len(hours)) for g in setup.gauges}
    pet = {g.code: np.zeros(len(hours)) for g in setup.gauges}
    for i, hour in enumerate(hours):
        r, p = forcing.hour(hour)
        for code in rain:
            rain[code][i], pet[code][i] = r[code], p[code]
    warmup = min(MAX_WARMUP_H, len(hours) // 3)
    models: dict[str, ForecastModel] = {}
    for gauge in setup.gauges:
        start, values = setup.discharge[gauge.code]
        observed = ObservedDischarge(start, values, train_until)
        q_obs = np.array([observed.at(h) for h in hours])
        q_obs_mm = np.asarray(m3s_to_mm(q_obs, gauge.area_km2))
        params, score = calibrate_gr4h(
            rain[gauge.code], pet[gauge.code], q_obs_mm, warmup, objective="nse",
            max_evals=max_evals,
        )
        gains, scenario, by_scenario = _fit_correction(
            params, rain[gauge.code], pet[gauge.code], q_obs, warmup, gauge.area_km2
        )
        models[gauge.code] = ForecastModel(
            code=gauge.code, area_km2=gauge.area_km2, params=params, calibration_nse=score,
            gains=gains, scenario=scenario, training_nse_by_scenario=by_scenario,
        )
    return models


def _fit_correction(
    params: GR4HParams, rain: FloatArray, pet: FloatArray, q_obs: FloatArray, warmup: int,
    area_km2: float,
) -> tuple[tuple[float, ...], str, dict[str, float]]:
    """Least-squares gains per lead and the better rain scenario, on the training window."""
    n = rain.size
    state = initial_state(params)
    states: list[GR4HState] = []
    q_sim = np.zeros(n)
    for i in range(n):
        q_mm, state = gr4h(rain[i : i + 1], pet[i : i + 1], params, state)
        q_sim[i] = float(mm_to_m3s(q_mm[0], area_km2))
        states.append(state)
    issues = [i for i in range(warmup, n - LEADS) if np.isfinite(q_obs[i])]
    best: tuple[float, tuple[float, ...], str] | None = None
    by_scenario: dict[str, float] = {}
    for scenario in SCENARIOS:
        raw = np.array([
            _raw_forecast(params, states[i], rain[i], pet[i], scenario, area_km2) for i in issues
        ])
        errors = np.array([q_obs[i] - q_sim[i] for i in issues])
        target = np.array([q_obs[i + 1 : i + 1 + LEADS] for i in issues])
        gains = []
        scores = []
        for lead in range(LEADS):
            d = target[:, lead] - raw[:, lead]
            ok = np.isfinite(d)
            denominator = float(np.sum(errors[ok] ** 2))
            k = float(np.sum(errors[ok] * d[ok]) / denominator) if denominator > 0 else 0.0
            gains.append(k)
            corrected = np.maximum(raw[:, lead] + k * errors, 0.0)
            scores.append(nse(corrected, target[:, lead]))
        mean_score = float(np.mean(scores))
        by_scenario[scenario] = mean_score
        if best is None or mean_score > best[0]:
            best = (mean_score, tuple(gains), scenario)
    assert best is not None
    return best[1], best[2], by_scenario


@dataclass(frozen=True, slots=True)
class GaugeForecast:
    """The forecasts one gauge issued at ``issue_time`` (m³/s, leads 1..6), and the obs then."""

    issue_time: datetime
    gauge: str
    forecast_m3s: FloatArray
    observed_m3s: float


def replay(
    setup: ReplaySetup,
    models: dict[str, ForecastModel],
    test_from: datetime,
    test_until: datetime,
    *,
    spin_up_from: datetime,
    archive_factory: ArchiveFactory = RadarArchive,
) -> Iterator[list[GaugeForecast]]:
    """Yield, for each issue time of the test window, the forecasts of every gauge.

    The model runs with observed rain from ``spin_up_from`` (open loop); the archive and the
    discharge sources are bounded by the current hour, advanced one hour at a time.
    """
    if spin_up_from > test_from:
        raise ValueError("the spin-up must start at or before the test window")
    archive = archive_factory(setup.root, spin_up_from)
    forcing = _Forcing(archive, setup.masks)
    observed = {
        g.code: ObservedDischarge(*setup.discharge[g.code], until=spin_up_from)
        for g in setup.gauges
    }
    states = {code: initial_state(model.params) for code, model in models.items()}
    for hour in _hours(spin_up_from, test_until):
        archive.advance(hour)
        for source in observed.values():
            source.advance(hour)
        rain, pet = forcing.hour(hour)
        issued: list[GaugeForecast] = []
        for gauge in setup.gauges:
            model = models[gauge.code]
            q_mm, states[gauge.code] = gr4h(
                [rain[gauge.code]], [pet[gauge.code]], model.params, states[gauge.code]
            )
            if hour < test_from:
                continue
            q_sim = float(mm_to_m3s(q_mm[0], model.area_km2))
            q_obs = observed[gauge.code].at(hour)
            values = model.forecast(states[gauge.code], q_sim, q_obs, rain[gauge.code],
                                    pet[gauge.code])
            issued.append(GaugeForecast(hour, gauge.code, values, q_obs))
        if hour >= test_from:
            yield issued
