"""Flood science core: the GR4H rainfall-runoff model and forecast scores.

Pure functions on numpy arrays, no I/O. All series are hourly; water amounts are in millimetres
over the catchment (mm per hour for fluxes, mm for store levels).

GR4H is the hourly version of GR4J (Perrin, Michel & Andréassian 2003; Mathevet 2005;
Le Moine 2008), implemented here from the published equations. Its constants are those of the
reference implementation (airGR's ``RunModel_GR4H``) so that results agree with it: percolation
constant 21/4 and unit-hydrograph S-curve exponent 5/4 (GR4J uses 9/4 and 5/2). See
``docs/flood-models.md`` for the equations and references.

>>> import numpy as np
>>> params = GR4HParams(x1_mm=350.0, x2_mm_per_h=0.0, x3_mm=90.0, x4_h=3.0)
>>> rain_mm = np.zeros(48)
>>> rain_mm[2] = 30.0
>>> q_mm, state = gr4h(rain_mm, np.full(48, 0.05), params)
>>> int(np.argmax(q_mm))  # the peak comes a few hours after the rain
4
>>> round(float(state.production_store_mm), 2)
130.05
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "GR4HParams",
    "GR4HState",
    "gr4h",
    "initial_state",
    "kge",
    "nse",
    "persistence_forecast",
    "rmse",
    "routed_flow_mm",
    "routing_level_for_outflow",
    "state_for_discharge",
    "unit_hydrograph_ordinates",
]

FloatArray = NDArray[np.float64]

#: Percolation constant of GR4H: percolation = S (1 - (1 + (S / (21/4 · X1))^4)^(-1/4)).
#: GR4J's daily 9/4 rescaled to an hourly step (the percolation rate near empty scales with
#: the 4th power of 1/constant: (21/4)^4 / (9/4)^4 ≈ 29.6, about 24 hours to a day).
PERCOLATION_CONSTANT = 21.0 / 4.0
#: Exponent of the hourly unit-hydrograph S-curves (5/2 in GR4J's daily version).
UNIT_HYDROGRAPH_EXPONENT = 5.0 / 4.0
#: Share of effective rainfall routed through UH1 and the routing store (the rest: UH2, direct).
ROUTED_FRACTION = 0.9
#: Cap on Pn/X1 and En/X1 before tanh, as in airGR (tanh(13) = 1 - 1e-11: no visible change).
_TANH_ARGUMENT_CAP = 13.0


@dataclass(frozen=True, slots=True)
class GR4HParams:
    """The four GR4H parameters.

    ``x1_mm``: production store capacity (mm, > 0); ``x2_mm_per_h``: groundwater exchange
    coefficient (mm/h, negative = losses); ``x3_mm``: routing store capacity (mm, > 0);
    ``x4_h``: unit-hydrograph time base (hours, > 0).

    >>> GR4HParams.from_sequence([521.113, -2.918, 218.009, 4.124]).x4_h
    4.124
    """

    x1_mm: float
    x2_mm_per_h: float
    x3_mm: float
    x4_h: float

    def __post_init__(self) -> None:
        values = (self.x1_mm, self.x2_mm_per_h, self.x3_mm, self.x4_h)
        if not all(math.isfinite(value) for value in values):
            raise ValueError(f"GR4H parameters must be finite, got {values}")
        if self.x1_mm <= 0 or self.x3_mm <= 0 or self.x4_h <= 0:
            raise ValueError(
                f"GR4H needs X1 > 0 mm, X3 > 0 mm and X4 > 0 h, got X1={self.x1_mm}, "
                f"X3={self.x3_mm}, X4={self.x4_h}"
            )

    @classmethod
    def from_sequence(cls, values: Sequence[float]) -> GR4HParams:
        """Build from ``[X1, X2, X3, X4]`` (airGR's parameter order)."""
        if len(values) != 4:
            raise ValueError(f"GR4H has 4 parameters (X1, X2, X3, X4), got {len(values)}")
        x1, x2, x3, x4 = (float(value) for value in values)
        return cls(x1_mm=x1, x2_mm_per_h=x2, x3_mm=x3, x4_h=x4)

    def as_tuple(self) -> tuple[float, float, float, float]:
        """``(X1, X2, X3, X4)``."""
        return (self.x1_mm, self.x2_mm_per_h, self.x3_mm, self.x4_h)


@dataclass(frozen=True, slots=True, eq=False)  # eq on numpy arrays would be ambiguous
class GR4HState:
    """Everything GR4H carries from one hour to the next.

    ``production_store_mm`` (S) and ``routing_store_mm`` (R) are store levels.
    ``uh1_pending_mm[j]`` / ``uh2_pending_mm[j]`` are the amounts (mm) already inside unit
    hydrograph 1 / 2 that will leave it ``j + 1`` hours after the last simulated hour.
    Passing the final state of one run as the ``state`` of the next run on the following hours
    gives exactly the same discharge as one run over both periods.
    """

    production_store_mm: float
    routing_store_mm: float
    uh1_pending_mm: FloatArray = field(default_factory=lambda: np.zeros(0))
    uh2_pending_mm: FloatArray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        # Own read-only copies, so a state can be kept and reused safely.
        for name in ("uh1_pending_mm", "uh2_pending_mm"):
            array = np.array(getattr(self, name), dtype=np.float64).reshape(-1)
            array.flags.writeable = False
            object.__setattr__(self, name, array)
        values = (self.production_store_mm, self.routing_store_mm)
        if not all(math.isfinite(value) and value >= 0 for value in values):
            raise ValueError(f"GR4H store levels must be finite and >= 0 mm, got {values}")


def initial_state(
    params: GR4HParams | Sequence[float],
    production_fill: float = 0.3,
    routing_fill: float = 0.5,
) -> GR4HState:
    """The default starting state: stores at fractions of their capacity, unit hydrographs empty.

    The defaults (production store at 30 % of X1, routing store at 50 % of X3) are airGR's
    default ``IniResLevels`` for the GR models; a warm-up period should follow.

    >>> initial_state([500.0, 0.0, 200.0, 4.0]).routing_store_mm
    100.0
    """
    params = _as_params(params)
    return GR4HState(
        production_store_mm=production_fill * params.x1_mm,
        routing_store_mm=routing_fill * params.x3_mm,
    )


def routed_flow_mm(level_mm: float, x3_mm: float) -> float:
    """GR4H routing-store outflow for a store at ``level_mm`` (after inflow): R(1-(1+(R/X3)⁴)^-¼)."""
    ratio = level_mm / x3_mm
    return level_mm * (1.0 - (1.0 + ratio**4) ** -0.25)


def routing_level_for_outflow(outflow_mm: float, x3_mm: float) -> float:
    """The store level (before draining) whose outflow is ``outflow_mm`` (monotone: bisection).

    The outflow is at least ``R - X3`` (the drained store never exceeds X3), so the level lies
    in ``[0, outflow + X3]``.
    """
    low, high = 0.0, outflow_mm + x3_mm
    for _ in range(80):
        middle = 0.5 * (low + high)
        if routed_flow_mm(middle, x3_mm) < outflow_mm:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def state_for_discharge(
    params: GR4HParams | Sequence[float], discharge_mm: float, production_fill: float = 0.3
) -> GR4HState:
    """A starting state whose routing store releases ``discharge_mm`` (mm/h) in the next hour.

    For a run that starts from an observed flow instead of a long warm-up: the routing store
    (which gives 90 % of GR4H's flow and its slow recession) is set to the level whose outflow
    is the observed discharge; the production store at ``production_fill`` of X1.

    >>> state = state_for_discharge([300.0, 0.0, 80.0, 3.0], 0.5)
    >>> round(routed_flow_mm(state.routing_store_mm, 80.0), 6)
    0.5
    """
    params = _as_params(params)
    if not (math.isfinite(discharge_mm) and discharge_mm >= 0):
        raise ValueError(f"discharge_mm must be finite and >= 0, got {discharge_mm}")
    return GR4HState(
        production_store_mm=production_fill * params.x1_mm,
        routing_store_mm=routing_level_for_outflow(discharge_mm, params.x3_mm),
    )


def unit_hydrograph_ordinates(x4_h: float) -> tuple[FloatArray, FloatArray]:
    """Ordinates of the hourly unit hydrographs UH1 (base X4) and UH2 (base 2·X4).

    Successive differences of the S-curves, with d = 5/4 and t in hours:
    SH1(t) = (t/X4)^d for t < X4, 1 after; SH2(t) = ½(t/X4)^d for t <= X4,
    1 - ½(2 - t/X4)^d for X4 < t < 2·X4, 1 after. Each sums to 1.

    >>> uh1, uh2 = unit_hydrograph_ordinates(2.0)
    >>> [round(float(value), 4) for value in uh1]
    [0.4204, 0.5796]
    >>> round(float(uh2.sum()), 12), len(uh2)
    (1.0, 4)
    """
    if not (math.isfinite(x4_h) and x4_h > 0):
        raise ValueError(f"X4 must be a positive number of hours, got {x4_h}")
    return _ordinates(float(x4_h))


@functools.lru_cache(maxsize=256)
def _ordinates(x4_h: float) -> tuple[FloatArray, FloatArray]:
    """The ordinates for one X4, computed once: the live forecaster runs GR4H hour by hour
    with the same X4 (read-only arrays, shared by every caller)."""
    d = UNIT_HYDROGRAPH_EXPONENT
    hours1 = np.arange(0, max(1, math.ceil(x4_h)) + 1, dtype=np.float64)
    s1 = np.where(hours1 < x4_h, (hours1 / x4_h) ** d, 1.0)
    hours2 = np.arange(0, max(1, math.ceil(2.0 * x4_h)) + 1, dtype=np.float64)
    ratio = hours2 / x4_h
    s2 = np.where(
        hours2 <= x4_h,
        0.5 * ratio**d,
        np.where(hours2 < 2.0 * x4_h, 1.0 - 0.5 * np.abs(2.0 - ratio) ** d, 1.0),
    )
    uh1, uh2 = np.diff(s1), np.diff(s2)
    uh1.flags.writeable = False
    uh2.flags.writeable = False
    return uh1, uh2


def gr4h(
    precip_mm: ArrayLike,
    pet_mm: ArrayLike,
    params: GR4HParams | Sequence[float],
    state: GR4HState | None = None,
) -> tuple[FloatArray, GR4HState]:
    """Run GR4H over hourly rainfall and potential evapotranspiration.

    ``precip_mm`` and ``pet_mm``: rainfall and PET of each hour (mm, finite, >= 0, same length).
    ``params``: a :class:`GR4HParams` or ``[X1 mm, X2 mm/h, X3 mm, X4 h]``.
    ``state``: the state before the first hour; default :func:`initial_state`.
    Returns the simulated discharge of each hour (mm/h over the catchment) and the state after
    the last hour, to continue the run later (chunk by chunk gives the same result as one run).

    >>> q_mm, state = gr4h([0.0, 12.0, 3.0, 0.0], [0.1, 0.0, 0.0, 0.1], [300, 0.5, 80, 1.5])
    >>> [round(float(value), 4) for value in q_mm]
    [0.6491, 0.6906, 0.7171, 0.6763]
    >>> len(state.uh1_pending_mm), len(state.uh2_pending_mm)
    (1, 2)
    """
    params = _as_params(params)
    precip = _hourly_series(precip_mm, "precip_mm")
    pet = _hourly_series(pet_mm, "pet_mm")
    if precip.shape != pet.shape:
        raise ValueError(
            f"precip_mm and pet_mm must have the same length, got {precip.size} and {pet.size}"
        )
    if state is None:
        state = initial_state(params)
    x1, x2, x3, x4 = params.as_tuple()

    effective_mm, production_end = _production(precip, pet, x1, state.production_store_mm)
    uh1, uh2 = unit_hydrograph_ordinates(x4)
    uh1_out, uh1_pending = _convolve_with_queue(
        ROUTED_FRACTION * effective_mm, uh1, state.uh1_pending_mm
    )
    uh2_out, uh2_pending = _convolve_with_queue(
        (1.0 - ROUTED_FRACTION) * effective_mm, uh2, state.uh2_pending_mm
    )
    q_mm, routing_end = _routing(uh1_out, uh2_out, x2, x3, state.routing_store_mm)
    final = GR4HState(
        production_store_mm=production_end,
        routing_store_mm=routing_end,
        uh1_pending_mm=uh1_pending,
        uh2_pending_mm=uh2_pending,
    )
    return q_mm, final


def _production(
    precip: FloatArray, pet: FloatArray, x1: float, store_mm: float
) -> tuple[FloatArray, float]:
    """Interception, production store and percolation: effective rainfall Pr of each hour.

    The production part does not depend on the routing part, so it runs first as one loop.
    """
    tanh = math.tanh
    cap = _TANH_ARGUMENT_CAP
    percolation_scale = 1.0 / PERCOLATION_CONSTANT**4
    s = store_mm
    effective = np.empty(precip.size)
    for i, (p, e) in enumerate(zip(precip.tolist(), pet.tolist(), strict=True)):
        if p <= e:
            # Net evaporation draws on the production store.
            t = tanh(min((e - p) / x1, cap))
            fill = s / x1
            s -= s * (2.0 - fill) * t / (1.0 + (1.0 - fill) * t)
            pr = 0.0
        else:
            # Net rainfall: part fills the store (Ps), the rest runs off (Pn - Ps).
            net = p - e
            t = tanh(min(net / x1, cap))
            fill = s / x1
            ps = x1 * (1.0 - fill * fill) * t / (1.0 + fill * t)
            s += ps
            pr = net - ps
        if s < 0.0:
            s = 0.0
        fill = s / x1
        fill *= fill
        percolation = s * (1.0 - 1.0 / math.sqrt(math.sqrt(1.0 + fill * fill * percolation_scale)))
        s -= percolation
        effective[i] = pr + percolation
    return effective, s


def _convolve_with_queue(
    inflow: FloatArray, ordinates: FloatArray, pending: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Route ``inflow`` through a unit hydrograph whose queue already holds ``pending``.

    Contributions are added oldest rain first, exactly as a step-by-step queue does, so the
    result does not depend on where a run is split into chunks (bit for bit).
    """
    hours = inflow.size
    tail = max(ordinates.size - 1, pending.size)
    buffer = np.zeros(hours + tail)
    buffer[: pending.size] = pending
    for lag in range(ordinates.size - 1, -1, -1):
        buffer[lag : lag + hours] += ordinates[lag] * inflow
    return buffer[:hours], buffer[hours:].copy()


def _routing(
    uh1_out: FloatArray, uh2_out: FloatArray, x2: float, x3: float, store_mm: float
) -> tuple[FloatArray, float]:
    """Groundwater exchange, routing store and direct flow: discharge of each hour."""
    r = store_mm
    discharge = np.empty(uh1_out.size)
    for i, (q9, q1) in enumerate(zip(uh1_out.tolist(), uh2_out.tolist(), strict=True)):
        level = r / x3
        exchange = x2 * level * level * level * math.sqrt(level)
        r += q9 + exchange
        if r < 0.0:
            r = 0.0
        level = r / x3
        level *= level
        qr = r * (1.0 - 1.0 / math.sqrt(math.sqrt(1.0 + level * level)))
        r -= qr
        qd = q1 + exchange
        if qd < 0.0:
            qd = 0.0
        discharge[i] = qr + qd
    return discharge, r


def _as_params(params: GR4HParams | Sequence[float]) -> GR4HParams:
    if isinstance(params, GR4HParams):
        return params
    return GR4HParams.from_sequence(params)


def _hourly_series(values: ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D hourly series, got shape {array.shape}")
    bad = ~np.isfinite(array) | (array < 0)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must be finite and >= 0 mm; hour {index} is {array[index]} "
            f"({int(bad.sum())} bad values): fill gaps before running the model"
        )
    return array


# --- Scores -------------------------------------------------------------------------------


def _paired(simulated: ArrayLike, observed: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Both series as float arrays, keeping only the hours where both are finite."""
    sim = np.asarray(simulated, dtype=np.float64).reshape(-1)
    obs = np.asarray(observed, dtype=np.float64).reshape(-1)
    if sim.shape != obs.shape:
        raise ValueError(f"series lengths differ: {sim.size} simulated, {obs.size} observed")
    keep = np.isfinite(sim) & np.isfinite(obs)
    if not keep.any():
        raise ValueError("no hour has both a simulated and an observed value")
    return sim[keep], obs[keep]


def rmse(simulated: ArrayLike, observed: ArrayLike) -> float:
    """Root-mean-square error, in the unit of the series. Hours with a NaN are left out.

    >>> rmse([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    1.1547005383792515
    """
    sim, obs = _paired(simulated, observed)
    return float(np.sqrt(np.mean((sim - obs) ** 2)))


def nse(simulated: ArrayLike, observed: ArrayLike) -> float:
    """Nash-Sutcliffe efficiency: 1 - Σ(sim - obs)² / Σ(obs - mean obs)² (1 is perfect).

    Nash & Sutcliffe (1970), J. Hydrol. 10(3), 282-290. Hours with a NaN are left out.

    >>> nse([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    1.0
    >>> nse([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])  # the observed mean scores 0
    0.0
    """
    sim, obs = _paired(simulated, observed)
    spread = float(np.sum((obs - obs.mean()) ** 2))
    if spread == 0.0:
        raise ValueError("NSE is undefined for a constant observed series")
    return 1.0 - float(np.sum((sim - obs) ** 2)) / spread


def kge(simulated: ArrayLike, observed: ArrayLike) -> float:
    """Kling-Gupta efficiency, 2009 form: 1 - √((r-1)² + (α-1)² + (β-1)²) (1 is perfect).

    r: linear correlation, α = σ_sim/σ_obs, β = μ_sim/μ_obs. Gupta, Kling, Yilmaz & Martinez
    (2009), J. Hydrol. 377(1-2), 80-91. Hours with a NaN are left out.

    >>> kge([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    1.0
    >>> round(kge([2.0, 4.0, 6.0], [1.0, 2.0, 3.0]), 4)  # right timing, twice too big
    -0.4142
    """
    sim, obs = _paired(simulated, observed)
    obs_mean, obs_std = float(obs.mean()), float(obs.std())
    if obs_mean == 0.0 or obs_std == 0.0:
        raise ValueError("KGE is undefined for an observed series with zero mean or spread")
    sim_std = float(sim.std())
    r = float(np.corrcoef(sim, obs)[0, 1]) if sim_std > 0 else 0.0
    alpha = sim_std / obs_std
    beta = float(sim.mean()) / obs_mean
    return 1.0 - math.sqrt((r - 1.0) ** 2 + (alpha - 1.0) ** 2 + (beta - 1.0) ** 2)


def persistence_forecast(observed: ArrayLike, lead_h: int) -> FloatArray:
    """The persistence forecast for ``lead_h`` hours ahead, aligned on the verified hour.

    Element ``t`` is the forecast *for* hour ``t``, issued at hour ``t - lead_h``: the value
    observed then. The first ``lead_h`` hours have no forecast (NaN). Compare it directly with
    ``observed`` (the scores above leave the NaN hours out).

    >>> persistence_forecast([1.0, 2.0, 4.0, 8.0], lead_h=2).tolist()
    [nan, nan, 1.0, 2.0]
    >>> nse(persistence_forecast([1.0, 2.0, 4.0, 8.0, 16.0], 1), [1.0, 2.0, 4.0, 8.0, 16.0])
    0.26086956521739135
    """
    if isinstance(lead_h, bool) or not isinstance(lead_h, int | np.integer) or lead_h < 0:
        raise ValueError(f"lead_h must be a whole number of hours >= 0, got {lead_h!r}")
    obs = np.asarray(observed, dtype=np.float64).reshape(-1)
    forecast = np.full(obs.size, np.nan)
    if lead_h < obs.size:
        forecast[lead_h:] = obs[: obs.size - lead_h]
    return forecast
