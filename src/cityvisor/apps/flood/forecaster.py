"""The live per-catchment forecaster: GR4H + state updating + output-error correction by lead.

One :class:`CatchmentForecaster` per warning point. It is used both by the evaluation replay
(``cityvisor flood evaluate``) and by the running app, so what is scored is what runs.

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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cityvisor.apps.flood.algorithms import (
    GR4HParams,
    GR4HState,
    gr4h,
    initial_state,
    routed_flow_mm,
    routing_level_for_outflow,
)

__all__ = ["LEADS", "CatchmentForecaster", "fit_gains"]

FloatArray = NDArray[np.float64]
LEADS = 6
HOUR = timedelta(hours=1)
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


def _m3s_to_mm(q_m3s: float, area_km2: float) -> float:
    return q_m3s * 3.6 / area_km2


def _mm_to_m3s(q_mm: float, area_km2: float) -> float:
    return q_mm * area_km2 / 3.6


def _utc_hour(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError(f"hour must be timezone-aware (UTC), got naive {when}")
    when = when.astimezone(UTC)
    if (when.minute, when.second, when.microsecond) != (0, 0, 0):
        raise ValueError(f"hour must be a whole hour, got {when.isoformat()}")
    return when


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
    >>> round(float(f.forecast([0.0] * 6, 0.05)[0]), 1)  # updated to the observed 5 m³/s
    5.0
    """

    params: GR4HParams
    area_km2: float
    gains: tuple[float, ...] = (1.0,) * LEADS
    state: GR4HState | None = None
    update_state: bool = True
    last_hour: datetime | None = None
    last_simulated_m3s: float = float("nan")
    last_error_m3s: float = float("nan")
    error_age_h: int = 0
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
        hour = _utc_hour(hour)
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
        self.last_simulated_m3s = _mm_to_m3s(float(q_mm[0]), self.area_km2)

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
        direct = max(_m3s_to_mm(simulated, self.area_km2) - routed, 0.0)
        target_routed = max(_m3s_to_mm(observed_m3s, self.area_km2) - direct, 0.0)
        new_level = routing_level_for_outflow(target_routed, x3)
        new_after = max(new_level - routed_flow_mm(new_level, x3), 0.0)
        self.state = GR4HState(
            production_store_mm=state.production_store_mm,
            routing_store_mm=new_after,
            uh1_pending_mm=uh1,
            uh2_pending_mm=uh2,
        )

    # --- forecasting ----------------------------------------------------------------------------

    def raw_forecast(self, future_rain_mm: Sequence[float], pet_mm: float) -> FloatArray:
        """Model discharge (m³/s) for leads 1..6 from the current state, without correction.

        ``future_rain_mm``: rain of the next hours (mm; missing or NaN hours count as 0).
        """
        rain = np.zeros(LEADS)
        values = np.asarray(list(future_rain_mm)[:LEADS], dtype=np.float64)
        rain[: values.size] = values
        rain[~np.isfinite(rain) | (rain < 0)] = 0.0
        pet = float(pet_mm)
        if not (math.isfinite(pet) and pet >= 0.0):
            pet = self.last_pet_mm
        q_mm, _ = gr4h(rain, np.full(LEADS, pet), self.params, self.state)
        return np.asarray(q_mm * self.area_km2 / 3.6, dtype=np.float64)

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

    def forecast(self, future_rain_mm: Sequence[float], pet_mm: float) -> FloatArray:
        """Corrected discharge forecasts (m³/s, >= 0) for the 6 hours after the last step."""
        return np.maximum(self.raw_forecast(future_rain_mm, pet_mm) + self.correction(), 0.0)

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
                gains=tuple(float(g) for g in data.get("gains", (1.0,) * LEADS)),
                state=state,
                update_state=bool(data.get("update_state", True)),
                last_hour=None if last_hour is None else datetime.fromisoformat(last_hour),
                last_simulated_m3s=_from_json_float(data.get("last_simulated_m3s")),
                last_error_m3s=_from_json_float(data.get("last_error_m3s")),
                error_age_h=int(data.get("error_age_h", 0)),
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


def fit_gains(
    errors_m3s: Sequence[float], raw_errors_m3s: Sequence[Sequence[float]]
) -> tuple[float, ...]:
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
        gains.append(min(max(k, 0.0), 1.5))
    return tuple(gains)
