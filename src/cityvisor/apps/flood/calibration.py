"""Calibration of GR4H against observed discharge.

A global search (scipy's differential evolution, Storn & Price 1997) in a transformed parameter
space, then a local polish (L-BFGS-B) of the best point; both share one budget of model runs.
Why: GR4H's objective surface is cheap to evaluate but has flat valleys and kinks (store
clamps, the exchange term), which trap a local search started from a single guess; differential
evolution is derivative-free, bounded, seedable (reproducible) and ships with scipy (BSD).

Needs the ``flood`` extra (``pip install cityvisor[flood]``) for scipy.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from cityvisor.apps.flood.algorithms import (
    GR4HParams,
    gr4h,
    initial_state,
    kge,
    nse,
    state_for_discharge,
)

__all__ = ["DEFAULT_BOUNDS", "Objective", "calibrate_gr4h", "high_flow_nse"]

Objective = Literal["kge", "nse", "nse+kge", "hfnse", "hfnse+kge"]
_OBJECTIVES = ("kge", "nse", "nse+kge", "hfnse", "hfnse+kge")

#: Default search ranges for an hourly model: (low, high) for X1 (mm), X2 (mm/h), X3 (mm),
#: X4 (h). Wide enough for small Mediterranean catchments (X4 of a few hours) up to slow
#: rivers; pass ``bounds`` to narrow them when the catchment is known.
DEFAULT_BOUNDS: Mapping[str, tuple[float, float]] = {
    "x1_mm": (10.0, 2500.0),
    "x2_mm_per_h": (-10.0, 5.0),
    "x3_mm": (5.0, 1000.0),
    "x4_h": (0.5, 72.0),
}
_NAMES = ("x1_mm", "x2_mm_per_h", "x3_mm", "x4_h")
_POPULATION_PER_PARAMETER = 10


def calibrate_gr4h(
    precip_mm: ArrayLike,
    pet_mm: ArrayLike,
    q_obs_mm: ArrayLike,
    warmup_h: int,
    *,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    objective: Objective = "kge",
    seed: int = 0,
    max_evals: int = 3000,
    initial_discharge_mm: float | None = None,
) -> tuple[GR4HParams, float]:
    """Find the GR4H parameters that best reproduce ``q_obs_mm``.

    ``precip_mm``, ``pet_mm``: hourly rainfall and PET (mm); ``q_obs_mm``: observed discharge
    (mm/h over the catchment; NaN = missing, left out of the score). The model starts from
    :func:`~cityvisor.apps.flood.algorithms.initial_state` and the first ``warmup_h`` hours are
    not scored. ``bounds``: search ranges by parameter name (see :data:`DEFAULT_BOUNDS`; the
    names given replace the defaults). ``objective``: ``"kge"`` (2009 form), ``"nse"``, or
    ``"nse+kge"`` (their mean: NSE weighs the flood peaks, KGE also the volume and variability),
    ``"hfnse"`` (NSE with every hour weighted by its observed flow: high flows count more) or
    ``"hfnse+kge"`` (its mean with KGE).
    ``seed`` makes the search reproducible; ``max_evals`` caps the number of model runs
    (about; the local polish stops when the budget is spent). ``initial_discharge_mm``: start
    each run from :func:`~cityvisor.apps.flood.algorithms.state_for_discharge` (the routing
    store releasing this observed flow) instead of the default state, so a short warm-up is
    enough.

    Returns the best parameters and their score (KGE or NSE over the scored hours).
    """
    from scipy import optimize  # optional dependency: the `flood` extra

    precip = np.asarray(precip_mm, dtype=np.float64)
    pet = np.asarray(pet_mm, dtype=np.float64)
    q_obs = np.asarray(q_obs_mm, dtype=np.float64)
    if not (precip.shape == pet.shape == q_obs.shape and precip.ndim == 1):
        raise ValueError(
            "precip_mm, pet_mm and q_obs_mm must be 1-D series of the same length, got "
            f"{precip.shape}, {pet.shape}, {q_obs.shape}"
        )
    if not 0 <= warmup_h < precip.size:
        raise ValueError(f"warmup_h must be in [0, {precip.size}), got {warmup_h}")
    scored_obs = q_obs[warmup_h:]
    if np.count_nonzero(np.isfinite(scored_obs)) < 2:
        raise ValueError("fewer than 2 observed discharges after the warm-up")
    if objective not in _OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(_OBJECTIVES)}, got {objective!r}")
    if max_evals < 20 * _POPULATION_PER_PARAMETER:
        raise ValueError(f"max_evals must be at least {20 * _POPULATION_PER_PARAMETER}")
    score_function = {"kge": kge, "nse": nse, "nse+kge": _nse_kge, "hfnse": high_flow_nse,
                      "hfnse+kge": _hfnse_kge}[objective]
    value_bounds = _value_bounds(bounds)
    search_bounds = [_to_search_space(name, value_bounds[name]) for name in _NAMES]

    evaluations = 0

    def loss(transformed: np.ndarray) -> float:
        nonlocal evaluations
        evaluations += 1
        params = _from_search_space(transformed, value_bounds)
        start = (
            initial_state(params) if initial_discharge_mm is None
            else state_for_discharge(params, initial_discharge_mm)
        )
        simulated, _ = gr4h(precip, pet, params, start)
        score = score_function(simulated[warmup_h:], scored_obs)
        # A flat, finite penalty keeps both optimisers well-behaved on degenerate runs.
        return 1.0 - score if math.isfinite(score) else 1e6

    population = _POPULATION_PER_PARAMETER * len(_NAMES)
    global_budget = int(max_evals * 0.8)
    seed_argument = (
        "rng" if "rng" in inspect.signature(optimize.differential_evolution).parameters else "seed"
    )
    search = optimize.differential_evolution(
        loss,
        search_bounds,
        popsize=_POPULATION_PER_PARAMETER,
        maxiter=max(1, global_budget // population - 1),
        tol=1e-8,
        mutation=(0.5, 1.0),
        recombination=0.7,
        init="latinhypercube",
        polish=False,
        **{seed_argument: seed},
    )
    best_x, best_loss = search.x, float(search.fun)
    remaining = max_evals - evaluations
    if remaining > 10:
        polish = optimize.minimize(
            loss,
            best_x,
            method="L-BFGS-B",
            bounds=search_bounds,
            options={"maxfun": remaining, "eps": 1e-7},
        )
        if float(polish.fun) < best_loss:
            best_x, best_loss = polish.x, float(polish.fun)
    return _from_search_space(best_x, value_bounds), 1.0 - best_loss


def _nse_kge(simulated: np.ndarray, observed: np.ndarray) -> float:
    """Mean of NSE (weighs the flood peaks) and KGE (also weighs volume and variability)."""
    return 0.5 * (nse(simulated, observed) + kge(simulated, observed))


def high_flow_nse(simulated: ArrayLike, observed: ArrayLike) -> float:
    """NSE with each hour weighted by its observed flow (NaN observations left out).

    ``1 − Σ q·(s − q)² / Σ q·(q − q̄_w)²`` with ``q̄_w`` the flow-weighted mean: the hours of a
    flood dominate both sums, so a model is judged on its rising limbs and peaks rather than
    on the weeks of base flow that make up most of a window.
    """
    s = np.asarray(simulated, dtype=np.float64)
    o = np.asarray(observed, dtype=np.float64)
    ok = np.isfinite(s) & np.isfinite(o)
    s, o = s[ok], np.maximum(o[ok], 0.0)
    total = float(o.sum())
    if s.size < 2 or total <= 0:
        raise ValueError("high_flow_nse needs at least 2 observations with some flow")
    mean = float((o * o).sum() / total)
    spread = float((o * (o - mean) ** 2).sum())
    if spread <= 0:
        raise ValueError("high_flow_nse is undefined for a constant observed series")
    return 1.0 - float((o * (s - o) ** 2).sum()) / spread


def _hfnse_kge(simulated: np.ndarray, observed: np.ndarray) -> float:
    """Mean of the flow-weighted NSE and KGE."""
    return 0.5 * (high_flow_nse(simulated, observed) + kge(simulated, observed))


def _value_bounds(
    bounds: Mapping[str, tuple[float, float]] | None,
) -> dict[str, tuple[float, float]]:
    merged = dict(DEFAULT_BOUNDS)
    if bounds:
        unknown = set(bounds) - set(_NAMES)
        if unknown:
            raise ValueError(f"unknown GR4H parameter names in bounds: {sorted(unknown)}")
        merged.update(bounds)
    for name, (low, high) in merged.items():
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"bounds for {name} must be finite with low < high, got {low, high}")
        if name != "x2_mm_per_h" and low <= 0:
            raise ValueError(f"bounds for {name} must be > 0, got {low, high}")
    return merged


def _to_search_space(name: str, interval: tuple[float, float]) -> tuple[float, float]:
    """Capacities and time base vary over orders of magnitude: search their logarithm.

    X2 is signed and usually near zero: search asinh(X2), fine near 0 and coarse far away.
    """
    low, high = interval
    if name == "x2_mm_per_h":
        return (math.asinh(low), math.asinh(high))
    return (math.log(low), math.log(high))


def _from_search_space(
    transformed: Sequence[float] | np.ndarray, value_bounds: Mapping[str, tuple[float, float]]
) -> GR4HParams:
    log_x1, asinh_x2, log_x3, log_x4 = (float(value) for value in transformed)
    values = (math.exp(log_x1), math.sinh(asinh_x2), math.exp(log_x3), math.exp(log_x4))
    # exp(log(b)) can land one ulp outside b: clip, so results always honour the bounds.
    clipped = (
        min(max(value, value_bounds[name][0]), value_bounds[name][1])
        for name, value in zip(_NAMES, values, strict=True)
    )
    return GR4HParams.from_sequence(list(clipped))
