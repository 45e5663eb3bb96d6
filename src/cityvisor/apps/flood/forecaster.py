"""The live per-catchment forecaster: GR4H + state updating + output-error correction by lead.

One :class:`CatchmentForecaster` per warning point. It is used both by the back-test of
``cityvisor flood evaluate`` and by the running app, so what is scored is what runs.

Every hour ``step`` advances GR4H with the basin rain and PET of the hour ending then, and,
when an observed discharge is available, corrects the model in two ways (the GRP scheme used by
French flood forecasting services, Tangara 2005, Berthet et al. 2009, rebuilt here on GR4H):

* **State updating.** Two corrections at each observation:

  - the rain *in transit* (effective rain queued in the two unit hydrographs, which will reach
    the outlet in the next hours) is scaled by the ratio observed/simulated of this hour
    (bounded to [0.2, 5]; a floor of 5 % of the flow keeps low-flow ratios near 1). A model
    whose runoff volume is wrong now (production store too wet or too dry for this event, a
    radar bias) will be wrong in the same proportion for the rain already fallen. On the Cance
    this turned the forecasts of a first autumn storm, made by a model calibrated on a later,
    wetter one, from worse than persistence into clearly better (docs/flood-models.md);
  - the routing store ``R`` is reset so that the routed flow of the hour just simulated equals
    the observed discharge minus the direct flow (the direct branch is left as simulated). The
    next forecasts start from a model that agrees with the river now.

  The production store is not touched: it sets how future rain will run off, which the
  discharge alone cannot separate from a rain error.
* **Output-error correction.** The one-hour-ahead error of the *updated* model (observed minus
  what it forecast for this hour one hour earlier) is persistent in floods (timing and volume
  errors last for hours). Lead ``L`` adds ``gains[L-1] × error``; the gains are fitted by least
  squares on a training window (:func:`fit_gains`). When observations stop, the last error
  keeps correcting with the gain of the lead it now corresponds to (``age + L``) and is dropped
  after 6 hours.

Missing inputs never poison the state: a NaN rain counts as 0 mm (and is counted in
``missing_rain_hours`` so the app can lower confidence), a NaN PET reuses the last valid PET,
and a NaN discharge skips the updating.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from cityvisor.apps.flood.algorithms import (
    GR4HParams,
    GR4HState,
    gr4h,
    initial_state,
    routed_flow_mm,
    routing_level_for_outflow,
)
from cityvisor.apps.flood.hours import HOUR, FloatArray, require_utc_hour

__all__ = [
    "DEFAULT_FUTURE_RAIN",
    "DEFAULT_GAINS",
    "ENSEMBLE_MEMBERS",
    "LEADS",
    "SCENARIOS",
    "CatchmentForecaster",
    "combine_with_persistence",
    "fit_model_weights",
    "fit_gains",
    "future_rain",
    "m3s_to_mm",
    "mm_to_m3s",
    "parse_scenario",
    "scenario_label",
    "scenario_uses_nowcast",
]

LEADS = 6
#: Future-rain scenarios the evaluation tries on a training window (the best is kept per gauge).
SCENARIOS = (
    *(f"{name}*{factor:g}" if factor != 1 else name
      for name in ("nowcast", "blend", "persistence") for factor in (1.25, 1, 0.75, 0.5, 0.25)),
    "zero",
    "ensemble",
)
#: Members of the ``ensemble`` scenario: the forecast is the mean of the model run under each
#: of these rains (not one run under their mean rain: GR4H is non-linear). ``ensemble*f``
#: scales every member by ``f``.
ENSEMBLE_MEMBERS = ("zero", "persistence*0.5", "blend*0.5", "nowcast")
#: Output-error correction gains and future rain the app uses unless a catchment says
#: otherwise: what ``cityvisor flood evaluate`` fitted and chose on the Cance training windows
#: (docs/flood-models.md): gains ≈ 0.3 at leads 1–2 and 0 beyond on the gauges whose fitted
#: gains were stable across both splits, and rain damped by half (``blend*0.5`` or
#: ``persistence*0.5`` won on the 25 and 107 km² gauges, the closest to the cadereaux' size).
DEFAULT_GAINS: tuple[float, ...] = (0.3, 0.3, 0.0, 0.0, 0.0, 0.0)
DEFAULT_FUTURE_RAIN = "blend*0.5"
#: A gain outside this range would amplify noise (:func:`fit_gains` clips to it too).
GAIN_BOUNDS = (0.0, 1.5)
_SCENARIO_NAMES = ("nowcast", "persistence", "blend", "zero", "ensemble")
#: Longest gap (hours) filled by :meth:`CatchmentForecaster.step` with rain-free hours; beyond
#: it the model simply continues from its last state (a restart after a long outage).
MAX_GAP_FILL_H = 72
_BISECTION_STEPS = 80
#: Bounds of the observed/simulated ratio applied to the rain in transit (one bad hour of
#: data must not empty or flood the unit hydrographs).
QUEUE_RATIO_BOUNDS = (0.2, 5.0)
#: Ratio regularisation: a floor of 5 % of the larger flow, so near-zero flows give ratios
#: near 1 instead of noise.
QUEUE_RATIO_FLOOR = 0.05


def _level_before_drain(level_after_mm: float, x3_mm: float) -> float:
    """Invert ``R_after = R - routed(R)`` (monotone increasing in R) by bisection."""
    low, high = level_after_mm, level_after_mm + 10.0 * x3_mm + 1.0
    while high - routed_flow_mm(high, x3_mm) < level_after_mm:  # pragma: no cover - safety
        high *= 2.0
    for _ in range(_BISECTION_STEPS):
        middle = 0.5 * (low + high)
        if middle - routed_flow_mm(middle, x3_mm) < level_after_mm:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def m3s_to_mm(q_m3s: FloatArray | float, area_km2: float) -> FloatArray | float:
    """Discharge in m³/s → depth over the catchment in mm/h."""
    return q_m3s * 3.6 / area_km2


def mm_to_m3s(q_mm: FloatArray | float, area_km2: float) -> FloatArray | float:
    """Depth over the catchment in mm/h → discharge in m³/s."""
    return q_mm * area_km2 / 3.6


@dataclass
class CatchmentForecaster:
    """GR4H for one catchment with state updating and a per-lead output-error correction.

    ``params``: calibrated GR4H parameters; ``area_km2``: drained area (converts mm/h ↔ m³/s);
    ``gains``: output-error correction gain for leads 1..6 (see :func:`fit_gains`); ``state``:
    the GR4H state after the last stepped hour (None → :func:`initial_state`).
    ``update_state``: correct the state from observations (rain in transit and routing store;
    True in operation; False leaves only the output-error correction).
    The other fields are the correction memory; they travel in :meth:`to_dict`.

    >>> from datetime import datetime, UTC, timedelta
    >>> f = CatchmentForecaster(GR4HParams(300.0, 0.0, 80.0, 3.0), area_km2=100.0)
    >>> t0 = datetime(2014, 10, 10, tzinfo=UTC)
    >>> for h in range(24):
    ...     f.step(t0 + timedelta(hours=h), 0.0, 0.05, 5.0)
    >>> round(float(f.forecast([0.0] * 6, 0.05)[0]))  # updated to the observed 5 m³/s
    5
    """

    params: GR4HParams
    area_km2: float
    gains: tuple[float, ...] = DEFAULT_GAINS
    state: GR4HState | None = None
    update_state: bool = True
    last_hour: datetime | None = None
    last_simulated_m3s: float = float("nan")
    last_error_m3s: float = float("nan")
    error_age_h: int = 0
    #: weight of the model per lead against persistence of the discharge observed this hour:
    #: ``w·model + (1 − w)·Q_obs`` (1 = model only; no observation this hour: model only)
    model_weights: tuple[float, ...] = (1.0,) * LEADS
    last_observed_m3s: float = float("nan")
    last_pet_mm: float = 0.0
    missing_rain_hours: int = 0
    missing_discharge_hours: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.area_km2) and self.area_km2 > 0):
            raise ValueError(f"area_km2 must be a positive number, got {self.area_km2}")
        gains = tuple(float(g) for g in self.gains)
        if len(gains) != LEADS or not all(math.isfinite(g) for g in gains):
            raise ValueError(f"gains must be {LEADS} finite numbers, got {self.gains}")
        self.gains = gains
        weights = tuple(float(w) for w in self.model_weights)
        if len(weights) != LEADS or not all(math.isfinite(w) and 0 <= w <= 1 for w in weights):
            raise ValueError(f"model_weights must be {LEADS} numbers in [0, 1], "
                             f"got {self.model_weights}")
        self.model_weights = weights
        if self.state is None:
            self.state = initial_state(self.params)

    # --- time stepping ----------------------------------------------------------------------

    def step(
        self, hour: datetime, rain_mm: float, pet_mm: float, observed_m3s: float | None
    ) -> None:
        """Advance one hour: the hour ending at ``hour`` had ``rain_mm`` and ``pet_mm`` (mm).

        ``observed_m3s``: discharge observed at ``hour`` (None or NaN: none). Hours must come in
        order; a gap of up to :data:`MAX_GAP_FILL_H` hours is filled with rain-free hours.
        """
        hour = require_utc_hour(hour)
        if self.last_hour is not None:
            if hour <= self.last_hour:
                raise ValueError(
                    f"hour {hour.isoformat()} is not after the last step "
                    f"{self.last_hour.isoformat()}"
                )
            gap = int((hour - self.last_hour) / HOUR) - 1
            if 0 < gap <= MAX_GAP_FILL_H:
                for _ in range(gap):
                    self._advance(float("nan"), float("nan"))
                    self._age_error()
                    self.missing_discharge_hours += 1
        self._advance(rain_mm, pet_mm)
        self.last_hour = hour
        observed = float("nan") if observed_m3s is None else float(observed_m3s)
        if math.isfinite(observed) and observed >= 0.0:
            self._assimilate(observed)
        else:
            self.missing_discharge_hours += 1
            self._age_error()

    def _advance(self, rain_mm: float, pet_mm: float) -> None:
        rain = float(rain_mm)
        if not (math.isfinite(rain) and rain >= 0.0):
            rain = 0.0
            self.missing_rain_hours += 1
        pet = float(pet_mm)
        if math.isfinite(pet) and pet >= 0.0:
            self.last_pet_mm = pet
        else:
            pet = self.last_pet_mm
        # What the updated model forecast for this hour one hour ago, with the rain now known:
        # the one-hour-ahead error of the model itself (the output correction is added apart).
        q_mm, self.state = gr4h([rain], [pet], self.params, self.state)
        self.last_simulated_m3s = float(mm_to_m3s(float(q_mm[0]), self.area_km2))

    def _age_error(self) -> None:
        if math.isfinite(self.last_error_m3s):
            self.error_age_h += 1
            if self.error_age_h >= LEADS:
                self.last_error_m3s = float("nan")
                self.error_age_h = 0

    def _assimilate(self, observed_m3s: float) -> None:
        simulated = self.last_simulated_m3s
        self.last_error_m3s = observed_m3s - simulated
        self.error_age_h = 0
        self.last_observed_m3s = observed_m3s
        if not self.update_state:
            return
        state = self.state
        assert state is not None
        # 1. Rain in transit: the effective rain queued in the unit hydrographs carries the
        #    model's runoff-volume error of the last hours (a too wet or too dry production
        #    store, a biased radar): scale it by the observed/simulated ratio of this hour.
        floor = QUEUE_RATIO_FLOOR * max(observed_m3s, simulated, 1e-9)
        ratio = (observed_m3s + floor) / (max(simulated, 0.0) + floor)
        ratio = min(max(ratio, QUEUE_RATIO_BOUNDS[0]), QUEUE_RATIO_BOUNDS[1])
        uh1 = state.uh1_pending_mm * ratio
        uh2 = state.uh2_pending_mm * ratio
        # 2. Routing store: split the hour's simulated discharge into its routed and direct
        #    parts, and reset the store so that the routed part matches the observation.
        x3 = self.params.x3_mm
        level_before = _level_before_drain(state.routing_store_mm, x3)
        routed = routed_flow_mm(level_before, x3)
        direct = max(float(m3s_to_mm(simulated, self.area_km2)) - routed, 0.0)
        target_routed = max(float(m3s_to_mm(observed_m3s, self.area_km2)) - direct, 0.0)
        new_level = routing_level_for_outflow(target_routed, x3)
        new_after = max(new_level - routed_flow_mm(new_level, x3), 0.0)
        self.state = GR4HState(
            production_store_mm=state.production_store_mm,
            routing_store_mm=new_after,
            uh1_pending_mm=uh1,
            uh2_pending_mm=uh2,
        )

    # --- forecasting ----------------------------------------------------------------------------

    def raw_forecast(self, future_rain_mm: Sequence[float] | FloatArray,
                     pet_mm: float) -> FloatArray:
        """Model discharge (m³/s) for leads 1..6 from the current state, without correction.

        ``future_rain_mm``: rain of the next hours (mm; missing or NaN hours count as 0), or a
        ``(6, 6)`` array whose row L-1 is the rain assumed for lead L (a per-lead scenario,
        :func:`future_rain` with 6 scenarios).
        """
        given = np.asarray(future_rain_mm, dtype=np.float64)
        if given.ndim not in (2, 3):
            return self.raw_forecasts([given.ravel()], pet_mm)[0]
        # One rain series per lead (a per-lead scenario), or an ensemble
        # (:data:`ENSEMBLE_MEMBERS`) where ``given[L-1, m]`` is member m's rain for lead L:
        # lead L is the mean over members of the runs they drive (a per-lead scenario is an
        # ensemble of one member).
        kind = "a per-lead" if given.ndim == 2 else "an ensemble"
        if given.shape[0] != LEADS:
            raise ValueError(f"{kind} future rain needs {LEADS} rows, got {given.shape[0]}")
        members = given[:, np.newaxis] if given.ndim == 2 else given
        runs = np.array(self.raw_forecasts(members.reshape(-1, members.shape[-1]), pet_mm))
        runs = runs.reshape(LEADS, members.shape[1], LEADS)
        return np.asarray(runs[np.arange(LEADS), :, np.arange(LEADS)].mean(axis=1),
                          dtype=np.float64)

    def raw_forecasts(self, rains_mm: Iterable[Sequence[float] | FloatArray],
                      pet_mm: float) -> list[FloatArray]:
        """:meth:`raw_forecast` under each of several rain series (each the rain of the next
        hours); identical series (after NaN and negative hours count as 0) are run once."""
        pet = float(pet_mm)
        if not (math.isfinite(pet) and pet >= 0.0):
            pet = self.last_pet_mm
        done: dict[bytes, FloatArray] = {}
        out = []
        for values in rains_mm:
            given = np.asarray(values, dtype=np.float64)
            if given.ndim > 1:  # a per-lead scenario or an ensemble: its own runs
                out.append(self.raw_forecast(given, pet_mm))
                continue
            rain = _rain_vector(given)
            key = rain.tobytes()
            if key not in done:
                q_mm, _ = gr4h(rain, np.full(LEADS, pet), self.params, self.state)
                done[key] = np.asarray(mm_to_m3s(q_mm, self.area_km2), dtype=np.float64)
            out.append(done[key])
        return out

    def correction(self) -> FloatArray:
        """The output-error correction (m³/s) added to leads 1..6 now."""
        out = np.zeros(LEADS)
        if not math.isfinite(self.last_error_m3s):
            return out
        for lead in range(LEADS):
            index = lead + self.error_age_h
            if index < LEADS:
                out[lead] = self.gains[index] * self.last_error_m3s
        return out

    def forecast(self, future_rain_mm: Sequence[float] | FloatArray,
                 pet_mm: float) -> FloatArray:
        """Corrected discharge forecasts (m³/s, >= 0) for the 6 hours after the last step.

        With ``model_weights`` below 1 and a discharge observed at the last step, lead L is
        ``w_L · corrected model + (1 − w_L) · observed discharge``.
        """
        model = np.maximum(self.raw_forecast(future_rain_mm, pet_mm) + self.correction(), 0.0)
        return combine_with_persistence(model, self.persistence_m3s(), self.model_weights)

    def persistence_m3s(self) -> float:
        """The discharge observed at the last step (NaN if none was)."""
        if self.error_age_h == 0 and math.isfinite(self.last_error_m3s):
            return self.last_observed_m3s
        return float("nan")

    # --- persistence ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot (parameters, gains, state, correction memory) for restarts."""
        state = self.state
        assert state is not None
        return {
            "params": list(self.params.as_tuple()),
            "area_km2": self.area_km2,
            "gains": list(self.gains),
            "update_state": self.update_state,
            "state": {
                "production_store_mm": state.production_store_mm,
                "routing_store_mm": state.routing_store_mm,
                "uh1_pending_mm": state.uh1_pending_mm.tolist(),
                "uh2_pending_mm": state.uh2_pending_mm.tolist(),
            },
            "last_hour": None if self.last_hour is None else self.last_hour.isoformat(),
            "last_simulated_m3s": _json_float(self.last_simulated_m3s),
            "last_error_m3s": _json_float(self.last_error_m3s),
            "error_age_h": self.error_age_h,
            "model_weights": list(self.model_weights),
            "last_observed_m3s": _json_float(self.last_observed_m3s),
            "last_pet_mm": self.last_pet_mm,
            "missing_rain_hours": self.missing_rain_hours,
            "missing_discharge_hours": self.missing_discharge_hours,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CatchmentForecaster:
        """Rebuild from :meth:`to_dict` (raises ValueError on a malformed snapshot)."""
        try:
            raw_state = data.get("state")
            state = None if raw_state is None else GR4HState(
                production_store_mm=float(raw_state["production_store_mm"]),
                routing_store_mm=float(raw_state["routing_store_mm"]),
                uh1_pending_mm=np.asarray(raw_state.get("uh1_pending_mm", []), dtype=float),
                uh2_pending_mm=np.asarray(raw_state.get("uh2_pending_mm", []), dtype=float),
            )
            last_hour = data.get("last_hour")
            return cls(
                params=GR4HParams.from_sequence(data["params"]),
                area_km2=float(data["area_km2"]),
                gains=tuple(float(g) for g in data.get("gains", DEFAULT_GAINS)),
                state=state,
                update_state=bool(data.get("update_state", True)),
                last_hour=None if last_hour is None else datetime.fromisoformat(last_hour),
                last_simulated_m3s=_from_json_float(data.get("last_simulated_m3s")),
                last_error_m3s=_from_json_float(data.get("last_error_m3s")),
                error_age_h=int(data.get("error_age_h", 0)),
                model_weights=tuple(float(w) for w in data.get("model_weights",
                                                               (1.0,) * LEADS)),
                last_observed_m3s=_from_json_float(data.get("last_observed_m3s")),
                last_pet_mm=float(data.get("last_pet_mm", 0.0)),
                missing_rain_hours=int(data.get("missing_rain_hours", 0)),
                missing_discharge_hours=int(data.get("missing_discharge_hours", 0)),
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"malformed CatchmentForecaster snapshot: {error!r}") from None


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _from_json_float(value: object) -> float:
    return float("nan") if value is None else float(value)  # type: ignore[arg-type]


def fit_gains(errors_m3s: ArrayLike, raw_errors_m3s: ArrayLike) -> tuple[float, ...]:
    """Least-squares output-correction gains per lead.

    ``errors_m3s[i]``: the one-hour-ahead error at issue ``i`` (what :meth:`correction` scales);
    ``raw_errors_m3s[i][L-1]``: observed minus raw forecast at lead L from issue ``i``. Returns
    ``k_L = Σ e·d / Σ e²`` over the issues where both are known, clipped to [0, 1.5] (a gain
    outside it would amplify noise); 0 where there is no error to learn from.
    """
    e = np.asarray(errors_m3s, dtype=np.float64)
    d = np.asarray(raw_errors_m3s, dtype=np.float64).reshape(e.size, LEADS)
    gains = []
    for lead in range(LEADS):
        ok = np.isfinite(e) & np.isfinite(d[:, lead])
        denominator = float(np.sum(e[ok] ** 2))
        k = float(np.sum(e[ok] * d[ok, lead]) / denominator) if denominator > 0 else 0.0
        gains.append(min(max(k, GAIN_BOUNDS[0]), GAIN_BOUNDS[1]))
    return tuple(gains)


def parse_scenario(scenario: str) -> tuple[str, float]:
    """``"blend*0.5"`` → ``("blend", 0.5)``; ValueError for an unknown name or a bad factor.

    Names: ``nowcast``, ``persistence``, ``blend``, ``zero``, ``ensemble``; the factor (default 1) must be a
    finite number in [0, 2].
    """
    if not isinstance(scenario, str):
        raise ValueError(f"future-rain scenario must be a string, got {scenario!r}")
    name, star, factor_text = scenario.strip().partition("*")
    name = name.strip()
    if name not in _SCENARIO_NAMES:
        raise ValueError(f"unknown future-rain scenario {scenario!r}: expected one of "
                         f"{', '.join(_SCENARIO_NAMES)}, optionally damped as 'blend*0.5'")
    try:
        factor = float(factor_text) if star else 1.0
    except ValueError:
        factor = float("nan")
    if not (math.isfinite(factor) and 0.0 <= factor <= 2.0):
        raise ValueError(f"bad rain factor in future-rain scenario {scenario!r}: expected a "
                         f"number in [0, 2] after '*'")
    return name, factor


def _rain_vector(values: FloatArray) -> FloatArray:
    rain = np.zeros(LEADS)
    values = np.asarray(values, dtype=np.float64)[:LEADS]
    rain[: values.size] = values
    rain[~np.isfinite(rain) | (rain < 0)] = 0.0
    return rain


def scenario_label(scenario: str | Sequence[str]) -> str | list[str]:
    """A scenario as the config and the ``--json`` output spell it: one name when every lead
    uses the same scenario, else the list of 6 (normalised: ``"blend*1"`` → ``"blend"``)."""
    def one(text: str) -> str:
        name, factor = parse_scenario(text)
        return name if factor == 1.0 else f"{name}*{factor:g}"

    if isinstance(scenario, str):
        return one(scenario)
    names = [one(s) for s in scenario]
    if len(names) != LEADS:
        raise ValueError(f"a per-lead future rain needs {LEADS} scenarios (leads 1..{LEADS} h), "
                         f"got {len(names)}")
    return names[0] if len(set(names)) == 1 else names


def future_rain(
    scenario: str | Sequence[str], last_rain_mm: float, nowcast_mm: ArrayLike
) -> FloatArray:
    """The rain of the next 6 hours (mm per hour) that a scenario assumes.

    ``scenario`` may also be a list of 6 scenarios, one per lead: the result is then a
    ``(6, 6)`` array whose row L-1 is the rain assumed to forecast lead L
    (:meth:`CatchmentForecaster.forecast` accepts both).

    Scenarios: ``nowcast`` (the radar nowcast's basin rain; missing leads count as 0),
    ``persistence`` (the last hour's basin rain), ``blend`` (their mean), ``zero``, and
    ``ensemble``: a ``(6, members, 6)`` array of the :data:`ENSEMBLE_MEMBERS` rains, whose
    forecast is the mean of the members' runs; ``nowcast*0.5`` etc. scale the rain (a damped expectation: the errors of both grow with
    lead, and under squared error a shrunk forecast verifies better).

    >>> future_rain("blend*0.5", 4.0, [2.0, 2.0]).tolist()
    [1.5, 1.5, 1.0, 1.0, 1.0, 1.0]
    """
    if not isinstance(scenario, str):
        label = scenario_label(scenario)
        if isinstance(label, str):
            return future_rain(label, last_rain_mm, nowcast_mm)
        # an ensemble's (6, members, 6) block is the same for every lead: one (members, 6)
        rows = [row[0] if row.ndim == 3 else row
                for row in (future_rain(s, last_rain_mm, nowcast_mm) for s in label)]
        if any(row.ndim == 2 for row in rows):
            # some lead uses the ensemble: every lead becomes a (members, 6) block (a single
            # series repeated, whose mean is itself)
            members = len(ENSEMBLE_MEMBERS)
            return np.array([row if row.ndim == 2 else np.tile(row, (members, 1))
                             for row in rows])
        return np.array(rows)
    name, factor = parse_scenario(scenario)
    if name == "ensemble":
        # (6, members, 6): the same member rains for every lead
        block = np.array([factor * future_rain(member, last_rain_mm, nowcast_mm)
                          for member in ENSEMBLE_MEMBERS])
        return np.asarray(np.tile(block, (LEADS, 1, 1)), dtype=np.float64)
    values = np.asarray(nowcast_mm, dtype=np.float64).reshape(-1)[:LEADS]
    radar = np.zeros(LEADS)
    radar[: values.size] = np.nan_to_num(values, nan=0.0)
    last = float(last_rain_mm) if math.isfinite(float(last_rain_mm)) else 0.0
    persistence = np.full(LEADS, last)
    if name == "nowcast":
        rain = radar
    elif name == "persistence":
        rain = persistence
    elif name == "blend":
        rain = 0.5 * (radar + persistence)
    else:
        rain = np.zeros(LEADS)
    return np.asarray(factor * rain, dtype=np.float64)


def scenario_uses_nowcast(scenario: str | Sequence[str]) -> bool:
    """Whether a scenario (or any of a per-lead list) needs the radar nowcast."""
    names = [scenario] if isinstance(scenario, str) else list(scenario)
    return any(parse_scenario(s)[0] in ("nowcast", "blend", "ensemble") for s in names)


def combine_with_persistence(
    model_m3s: FloatArray, observed_m3s: float, weights: Sequence[float]
) -> FloatArray:
    """``w · model + (1 − w) · observed`` per lead; the model alone if ``observed`` is NaN."""
    model = np.asarray(model_m3s, dtype=np.float64)
    if not math.isfinite(observed_m3s):
        return model
    w = np.asarray(weights, dtype=np.float64)[: model.size]
    return np.asarray(w * model + (1.0 - w) * observed_m3s, dtype=np.float64)


def fit_model_weights(
    model_m3s: FloatArray, persistence_m3s: FloatArray, observed_m3s: FloatArray
) -> tuple[float, ...]:
    """Least-squares weight of the model against persistence per lead, clipped to [0, 1].

    ``model_m3s``/``observed_m3s``: (issues, leads); ``persistence_m3s``: (issues,), the
    discharge at the issue time. ``w_L = Σ (m − p)(o − p) / Σ (m − p)²`` over known triples.
    """
    m = np.asarray(model_m3s, dtype=np.float64)
    o = np.asarray(observed_m3s, dtype=np.float64)
    p = np.asarray(persistence_m3s, dtype=np.float64)[:, None]
    weights = []
    for lead in range(m.shape[1]):
        diff = m[:, lead] - p[:, 0]
        target = o[:, lead] - p[:, 0]
        ok = np.isfinite(diff) & np.isfinite(target)
        denominator = float(np.sum(diff[ok] ** 2))
        w = float(np.sum(diff[ok] * target[ok]) / denominator) if denominator > 0 else 1.0
        weights.append(min(max(w, 0.0), 1.0))
    return tuple(weights)
