"""Configuration of the flood early-warning app: catchments, warning points, thresholds.

A TOML file (the Nîmes one ships as ``nimes.toml`` in this package) validated by pydantic. Any
error (unknown key, threshold order, a warning point on an unknown catchment, a gauge fed to two
catchments...) raises :class:`FloodConfigError` with every problem listed.

>>> config = load_config()  # the bundled Nîmes configuration
>>> config.catchment("ales").rating.discharge(1.0) > 0
True
"""

from __future__ import annotations

import math
import tomllib
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeGuard

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cityvisor.apps.flood.algorithms import GR4HParams
from cityvisor.apps.flood.forecaster import (
    DEFAULT_FUTURE_RAIN,
    DEFAULT_GAINS,
    GAIN_BOUNDS,
    LEADS,
    scenario_label,
)

__all__ = [
    "Catchment",
    "FloodConfig",
    "FloodConfigError",
    "Hysteresis",
    "Quality",
    "RatingCurve",
    "Thresholds",
    "WarningPoint",
    "load_config",
]

NIMES_CONFIG = "nimes.toml"
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
EntityId = Annotated[str, Field(pattern=r"^urn:ngsi-ld:[A-Za-z0-9_.:-]+$")]
INSEE_PATTERN = r"^(\d{5}|2[AB]\d{3})$"


class FloodConfigError(ValueError):
    """The flood configuration is invalid; the message lists every problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RatingCurve(_Model):
    """Stage–discharge relation ``Q = a · (h − h0)^b`` (m³/s, h in m; Q = 0 below ``h0``)."""

    a: float = Field(gt=0, description="Coefficient (m³/s per m^b)")
    b: float = Field(gt=0.5, le=5, description="Exponent (1.5..2.5 for natural sections)")
    h0_m: float = Field(0.0, description="Level of zero flow (m)")

    def discharge(self, level_m: float) -> float:
        """Discharge (m³/s) for a water level (m)."""
        depth = level_m - self.h0_m
        return self.a * depth**self.b if depth > 0 else 0.0

    def level(self, discharge_m3s: float) -> float:
        """Water level (m) for a discharge (m³/s): the inverse of :meth:`discharge`."""
        if discharge_m3s <= 0:
            return self.h0_m
        return self.h0_m + (discharge_m3s / self.a) ** (1.0 / self.b)


class Thresholds(_Model):
    """Vigilance thresholds in m³/s at a warning point: yellow < orange < red."""

    yellow_m3s: float = Field(gt=0)
    orange_m3s: float = Field(gt=0)
    red_m3s: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if not self.yellow_m3s < self.orange_m3s < self.red_m3s:
            raise ValueError(f"thresholds must satisfy yellow < orange < red, got "
                             f"{self.yellow_m3s} / {self.orange_m3s} / {self.red_m3s}")
        return self

    def by_level(self) -> dict[str, float]:
        return {"yellow": self.yellow_m3s, "orange": self.orange_m3s, "red": self.red_m3s}


class Hysteresis(_Model):
    """A level is lowered only after the value stays below threshold × (1 − margin) for
    ``cycles`` consecutive cycles; it is raised at once."""

    margin: float = Field(0.15, ge=0, lt=1)
    cycles: int = Field(6, ge=1, le=1000)
    #: trend: rising/falling if the 3 h forecast moves by more than this share of the flow …
    trend_relative: float = Field(0.1, ge=0)
    #: … and by more than this many m³/s
    trend_absolute_m3s: float = Field(0.2, ge=0)


class Quality(_Model):
    """When an observation is not trusted (it then lowers ``confidence``)."""

    max_age_minutes: float = Field(90.0, gt=0, description="Older observations are stale")
    stuck_after_hours: float = Field(3.0, gt=0, description="Same value for this long: stuck")
    stuck_rain_mm: float = Field(10.0, gt=0,
                                 description="A level unchanged while this much rain fell: stuck")
    max_rain_mm_per_h: float = Field(250.0, gt=0, description="Above: not a valid rain reading")
    max_level_m: float = Field(15.0, gt=0, description="Above: not a valid level reading")

    @property
    def max_age(self) -> timedelta:
        return timedelta(minutes=self.max_age_minutes)


class Catchment(_Model):
    """A cadereau's catchment upstream of its outlet gauge."""

    id: Slug
    name: str = Field(min_length=1)
    area_km2: float = Field(gt=0, le=10_000)
    #: GR4H parameters [X1 mm, X2 mm/h, X3 mm, X4 h]
    gr4h: tuple[float, float, float, float]
    rating: RatingCurve
    #: approximate course (lon, lat), upstream first: the catchment's radar cells are those
    #: within ``area / (2 · length)`` of it (at least the nearest cell of each vertex)
    course: list[tuple[float, float]] = Field(min_length=2)
    rain_gauges: list[EntityId] = Field(default_factory=list)
    #: water-level gauges, the outlet gauge (used for state updating) first
    level_gauges: list[EntityId] = Field(default_factory=list)
    pet_mm_per_h: float = Field(0.06, ge=0, le=2, description="Potential evapotranspiration")
    #: output-error correction gain per lead 1..6 (lead L adds gains[L-1] × the last one-hour
    #: error); default: what the evaluation fitted on the Cance, ≈ 0.3 at 1–2 h and 0 beyond
    gains: tuple[float, float, float, float, float, float] = DEFAULT_GAINS  # type: ignore[assignment]
    #: rain assumed for the next hours: ``nowcast`` (radar extrapolation; without radar, the
    #: last hour's rain decaying to 0 over 3 h), ``persistence`` (the last hour's basin rain),
    #: ``blend`` (their mean), ``zero`` or ``ensemble`` (the mean of the forecasts under zero,
    #: persistence×0.5, blend×0.5 and nowcast rain), optionally damped: ``"blend*0.5"``
    #: (factor 0..2);
    #: or a list of 6 such scenarios, one per lead 1..6 h (as ``cityvisor flood evaluate``
    #: chooses them)
    future_rain: str | tuple[str, str, str, str, str, str] = DEFAULT_FUTURE_RAIN
    #: weight of the model against persistence of the observed discharge per lead (0..1;
    #: default 1: the model alone); ``cityvisor flood evaluate`` fits them with the gains
    model_weights: tuple[float, float, float, float, float, float] = (1.0,) * LEADS  # type: ignore[assignment]

    @field_validator("gr4h")
    @classmethod
    def _valid_gr4h(cls, value: tuple[float, float, float, float]) -> tuple[float, ...]:
        GR4HParams.from_sequence(value)  # raises ValueError with the reason
        return value

    @field_validator("gains")
    @classmethod
    def _valid_gains(cls, gains: tuple[float, ...]) -> tuple[float, ...]:
        low, high = GAIN_BOUNDS
        bad = [g for g in gains if not (math.isfinite(g) and low <= g <= high)]
        if len(gains) != LEADS or bad:
            raise ValueError(f"gains must be {LEADS} numbers in [{low:g}, {high:g}] (leads "
                             f"1..{LEADS} h), got {list(gains)}")
        return gains

    @field_validator("model_weights")
    @classmethod
    def _valid_weights(cls, weights: tuple[float, ...]) -> tuple[float, ...]:
        if not all(math.isfinite(w) and 0.0 <= w <= 1.0 for w in weights):
            raise ValueError(f"model_weights must be {LEADS} numbers in [0, 1], "
                             f"got {list(weights)}")
        return weights

    @field_validator("future_rain")
    @classmethod
    def _valid_future_rain(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        label = scenario_label(value)  # raises ValueError with the reason
        return label if isinstance(label, str) else tuple(label)

    @field_validator("course")
    @classmethod
    def _lon_lat(cls, course: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for lon, lat in course:
            if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                raise ValueError(f"({lon}, {lat}) is not a (lon, lat) pair in degrees")
        return course

    @property
    def params(self) -> GR4HParams:
        return GR4HParams.from_sequence(self.gr4h)


class WarningPoint(_Model):
    """A place where vigilance is decided and published."""

    slug: Slug
    name: str = Field(min_length=1)
    catchment: Slug
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    insee_code: str = Field(pattern=INSEE_PATTERN)
    commune: str = Field(min_length=1)
    postal_code: str = Field(pattern=r"^\d{5}$")
    #: share of the catchment's discharge passing this point (1 = at the outlet)
    discharge_share: float = Field(1.0, gt=0, le=1)
    thresholds: Thresholds
    alert_level_m: float | None = Field(None, gt=0)
    danger_level_m: float | None = Field(None, gt=0)

    @property
    def entity_id(self) -> str:
        return f"urn:ngsi-ld:FloodMonitoring:nimes:point:{self.slug}"

    @property
    def alert_id(self) -> str:
        return f"urn:ngsi-ld:Alert:flood:{self.slug}"


class FloodConfig(_Model):
    """The whole app configuration."""

    name: str = "Nîmes"
    tenant: str | None = Field("nimes", description="Tenant the app reads and writes")
    cycle_minutes: float = Field(5.0, gt=0, le=60)
    leads_h: int = Field(6, ge=1, le=6)
    hysteresis: Hysteresis = Hysteresis()
    quality: Quality = Quality()
    catchments: list[Catchment] = Field(min_length=1)
    points: list[WarningPoint] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> FloodConfig:
        problems: list[str] = []
        ids = [c.id for c in self.catchments]
        for dup in sorted({i for i in ids if ids.count(i) > 1}):
            problems.append(f"catchment id {dup!r} is used twice")
        slugs = [p.slug for p in self.points]
        for dup in sorted({s for s in slugs if slugs.count(s) > 1}):
            problems.append(f"warning point slug {dup!r} is used twice")
        for point in self.points:
            if point.catchment not in ids:
                problems.append(f"warning point {point.slug!r}: unknown catchment "
                                f"{point.catchment!r} (known: {', '.join(ids)})")
        seen: dict[str, str] = {}
        for catchment in self.catchments:
            for gauge in [*catchment.rain_gauges, *catchment.level_gauges]:
                if gauge in seen and seen[gauge] != catchment.id:
                    problems.append(f"gauge {gauge} feeds both {seen[gauge]!r} and "
                                    f"{catchment.id!r}")
                seen[gauge] = catchment.id
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def catchment(self, catchment_id: str) -> Catchment:
        for catchment in self.catchments:
            if catchment.id == catchment_id:
                return catchment
        raise KeyError(catchment_id)

    def points_of(self, catchment_id: str) -> list[WarningPoint]:
        return [p for p in self.points if p.catchment == catchment_id]

    @property
    def cycle_seconds(self) -> float:
        return self.cycle_minutes * 60.0


def parse_config(data: dict[str, Any], source: str = "configuration") -> FloodConfig:
    """Validate a configuration mapping; :class:`FloodConfigError` lists every problem."""
    try:
        return FloodConfig.model_validate(data)
    except ValidationError as error:
        lines = []
        for item in error.errors():
            where = ".".join(str(part) for part in item["loc"]) or "(top level)"
            lines.append(f"  {where}: {item['msg']}")
        raise FloodConfigError(f"invalid flood {source}:\n" + "\n".join(lines)) from None


def load_config(path: str | Path | None = None) -> FloodConfig:
    """Read a TOML configuration (default: the bundled Nîmes one)."""
    if path is None:
        text = resources.files("cityvisor.apps.flood").joinpath(NIMES_CONFIG).read_text("utf-8")
        source = f"configuration {NIMES_CONFIG} (bundled)"
    else:
        try:
            text = Path(path).read_text("utf-8")
        except OSError as error:
            raise FloodConfigError(f"cannot read flood configuration {path}: "
                                   f"{error.strerror}") from None
        source = f"configuration {path}"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise FloodConfigError(f"{source} is not valid TOML: {error}") from None
    return parse_config(data, source)


def is_finite(value: object) -> TypeGuard[float]:
    """A real number (not bool, not NaN/inf)."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))
