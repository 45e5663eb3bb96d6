"""Occitanie weather simulator: observations and forecasts for all 4,485 communes of the region.

:class:`OccitanieWeather` follows the living demo's simulator protocol (``sim/live.py``)::

    weather = OccitanieWeather(seed=2026)
    batches = weather.initial(now)   # every WeatherObserved and WeatherForecast entity, in full
    batches = weather.tick(later)    # fragments: only the attributes that changed since the last call

A *batch* is ``(context_urls, entities)`` as in :mod:`cityvisor.sim.nimes`: entities are
normalized NGSI-LD in compact form for the Smart Data Models Weather @context. ``tick`` gives
fragments (``id``, ``type`` and the changed attributes) for a merge/update; every observed
property carries ``observedAt``. Call it every :attr:`OccitanieWeather.period_s` simulated
seconds (600 s: one observation per commune every 10 minutes, ``nominal_rate`` ~7.5 entity
updates/s); forecasts are re-issued at 04, 10, 16 and 22 UTC, as Météo-France does four times
a day. A tick late by several periods covers the whole gap (it diffs against what it last
returned). ``LiveCity`` (``sim/live.py``) runs it as is::

    live = LiveCity(clients, [OccitanieWeather(seed=2026), ...])

Cost (whole region, embedded broker, loaded 2-core machine): ``initial`` 1.4 s to compute,
~12 s to write (4,485 observations + 13,455 forecasts; ``forecast_days=1`` writes a third);
a tick ~20 ms to compute and ~1.2 s to merge.

Entities (all with ``visibility`` ``public``, ``inseeCode``, ``address``, ``location``, and
``dataProvider`` = :data:`PROVIDER` so nobody mistakes them for real measurements):

* ``urn:ngsi-ld:WeatherObserved:occitanie:<INSEE>`` — one per commune, at a point inside it:
  ``temperature`` (CEL), ``relativeHumidity`` (C62, 0..1), ``windSpeed`` (MTS),
  ``windDirection`` (DD, where the wind comes from), ``precipitation`` (MMT, last hour),
  ``atmosphericPressure`` (A97, reduced to sea level), ``weatherType``, ``dateObserved``;
* ``urn:ngsi-ld:WeatherForecast:occitanie:<INSEE>:d<k>`` — ``k`` = 1..``forecast_days``, the
  local day ``k`` days after the issue time: ``validFrom``/``validTo`` (local midnight to
  midnight, in UTC), ``dateIssued``, ``dayMinimum``/``dayMaximum`` (``temperature``,
  ``relativeHumidity``), ``precipitation`` (day total, mm), ``precipitationProbability``,
  ``windSpeed`` (mean), ``weatherType`` (the day's dominant one).

The weather is a deterministic function of ``(seed, commune, time)``, built to look right on a
map rather than to forecast anything:

* **climate**: a sea-level annual mean of ~15 °C on the coast to ~13.5 °C in the north-west,
  a seasonal cycle (coldest mid-January), **+1.5 °C near the Mediterranean** (decaying over
  ~30 km from the coast) and a smaller daily range there; **−6.5 °C per km of altitude** from an
  approximate relief (Gaussian ranges for the Pyrenees, the Massif Central — Aubrac,
  Margeride, Mont Lozère, Aigoual, Causses, Lévézou — the Montagne Noire and the Monts de
  Lacaune; ±300 m, no DEM ships with cityvisor);
* **daily cycle**: minimum near sunrise, maximum mid-afternoon (solar time), damped under
  rain; humidity moves the other way;
* **weather systems**: a few travelling waves (hundreds of km, periods of days, moving
  west to east) drive temperature anomalies, sea-level pressure, wind (from the pressure
  gradient, turned towards the low) and a wetness field; rain falls where the wetness is high,
  more on relief and, in autumn, on the Cévennes' Mediterranean slopes (the *épisodes
  cévenols*); snow below ~1 °C.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import shapely

from cityvisor.data.geo.occitanie import Commune, communes, departements_by_code
from cityvisor.ngsild.build import date_time, geo_point, prop
from cityvisor.ngsild.context import sdm_context
from cityvisor.ngsild.time import format_utc_seconds
from cityvisor.sim.nimes import Batch, Entity

WEATHER_CONTEXT = sdm_context("Weather")
PROVIDER = "cityvisor simulator (synthetic data)"
LOCAL = ZoneInfo("Europe/Paris")
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
FORECAST_HOURS_UTC = (4, 10, 16, 22)

#: Mediterranean coastline of Occitanie, Cerbère to the Camargue (lon, lat)
COAST = [(3.17, 42.44), (3.05, 42.55), (3.04, 42.75), (3.03, 42.95), (3.10, 43.08),
         (3.25, 43.22), (3.48, 43.27), (3.70, 43.39), (3.93, 43.52), (4.13, 43.53),
         (4.25, 43.46), (4.45, 43.45)]
#: approximate mountain ranges: (lon, lat, height m, sigma lon°, sigma lat°)
RANGES = [
    (3.05, 44.65, 900, 0.25, 0.20),   # Aubrac
    (3.45, 44.70, 900, 0.35, 0.25),   # Margeride
    (3.75, 44.40, 900, 0.25, 0.15),   # Mont Lozère
    (3.60, 44.12, 850, 0.20, 0.12),   # Aigoual
    (3.20, 44.20, 650, 0.40, 0.30),   # Causses
    (2.80, 44.20, 600, 0.20, 0.20),   # Lévézou
    (2.40, 44.35, 300, 0.50, 0.40),   # Ségala
    (2.35, 43.45, 550, 0.35, 0.12),   # Montagne Noire
    (2.75, 43.65, 650, 0.30, 0.15),   # Monts de Lacaune / Espinouse
    (3.20, 43.90, 500, 0.35, 0.15),   # Larzac
]
WEATHER_TYPES = ("clearNight", "sunnyDay", "slightlyCloudy", "cloudy", "overcast", "fog",
                 "drizzle", "lightRain", "heavyRain", "thunder", "lightSnow", "heavySnow")


def altitude(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Approximate altitude (m) of points of Occitanie (see the module doc: ±300 m)."""
    height = np.full_like(lon, 120.0)
    # The Pyrenees: a ridge from the Bigorre to the Albères, the crest turning south-east;
    # heights are those of the valleys' villages, not of the peaks
    crest = np.interp(lon, [-0.4, 0.2, 1.5, 2.5, 3.1], [42.80, 42.78, 42.64, 42.52, 42.47])
    ridge = np.interp(lon, [-0.4, 2.2, 2.6, 3.1], [1500, 1600, 1000, 350])
    height += ridge * np.exp(-(((lat - crest) / 0.18) ** 2))
    for x, y, h, sx, sy in RANGES:
        height += h * np.exp(-(((lon - x) / sx) ** 2) - ((lat - y) / sy) ** 2)
    return height


def coast_distance_km(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Distance (km) to the Mediterranean coast."""
    line = shapely.LineString(COAST)
    degrees = shapely.distance(shapely.points(lon, lat), line)
    return np.asarray(degrees) * 90.0  # ~111 km per degree of latitude, ~80 of longitude


@dataclass(frozen=True)
class Wave:
    """A travelling sinusoid over (lon°, lat°, hours): amplitude · sin(kx·x + ky·y − ω·t + φ)."""

    kx: float
    ky: float
    omega: float
    phase: float
    amplitude: float

    def value(self, lon: np.ndarray, lat: np.ndarray, hours: np.ndarray | float) -> np.ndarray:
        return self.amplitude * np.sin(self.kx * lon + self.ky * lat - self.omega * hours
                                       + self.phase)

    def gradient(self, lon: np.ndarray, lat: np.ndarray,
                 hours: float) -> tuple[np.ndarray, np.ndarray]:
        c = self.amplitude * np.cos(self.kx * lon + self.ky * lat - self.omega * hours + self.phase)
        return self.kx * c, self.ky * c


def _waves(rng: np.random.Generator, n: int, amplitude: float) -> list[Wave]:
    out = []
    for _ in range(n):
        wavelength = rng.uniform(5.0, 14.0)  # degrees: 400..1,100 km
        angle = rng.uniform(-0.6, 0.6)  # mostly west to east
        k = 2 * math.pi / wavelength
        period_h = rng.uniform(60, 200)
        out.append(Wave(k * math.cos(angle), k * math.sin(angle), 2 * math.pi / period_h,
                        rng.uniform(0, 2 * math.pi), amplitude * rng.uniform(0.5, 1.0)))
    return out


def _hours(t: datetime) -> float:
    return (t - EPOCH).total_seconds() / 3600.0


@dataclass
class Fields:
    """The simulated state of every commune at one instant (arrays aligned with communes)."""

    temperature: np.ndarray
    humidity: np.ndarray
    wind_speed: np.ndarray
    wind_direction: np.ndarray
    precipitation: np.ndarray  # mm in the last hour
    pressure: np.ndarray
    cloud: np.ndarray  # 0..1
    daylight: np.ndarray  # bool


class OccitanieWeather:
    """Weather of every commune of Occitanie (or of ``only``: a list of INSEE codes, for tests).

    ``forecast_days``: forecast entities per commune (0 disables forecasts).
    """

    name = "weather-occitanie"
    period_s = 600.0

    def __init__(self, seed: int = 2026, *, only: list[str] | None = None,
                 forecast_days: int = 3) -> None:
        if not 0 <= forecast_days <= 10:
            raise ValueError(f"forecast_days must be between 0 and 10, got {forecast_days}")
        everything = communes()
        if only is not None:
            wanted = set(only)
            unknown = wanted - {c.code for c in everything}
            if unknown:
                raise ValueError(f"Unknown INSEE codes: {sorted(unknown)}")
            everything = tuple(c for c in everything if c.code in wanted)
        self.seed = seed
        self.forecast_days = forecast_days
        self.communes: tuple[Commune, ...] = everything
        self.lon = np.array([c.lon for c in everything])
        self.lat = np.array([c.lat for c in everything])
        self.altitude = altitude(self.lon, self.lat)
        coast = coast_distance_km(self.lon, self.lat)
        self.maritime = np.exp(-coast / 30.0)  # 1 on the coast, ~0 beyond 100 km
        # autumn Mediterranean rain on the south-east slopes of the Massif Central
        self.cevenol = np.exp(-(((self.lon - 3.85) / 0.45) ** 2) - ((self.lat - 44.1) / 0.3) ** 2)
        rng = np.random.default_rng([seed, 1])
        self.temperature_waves = _waves(rng, 3, 2.5)
        self.pressure_waves = _waves(rng, 3, 7.0)
        self.wet_waves = _waves(rng, 4, 0.5)
        #: reports per simulated second the runner should see (one per commune per period)
        self.nominal_rate = len(everything) / self.period_s
        self._last_observed: dict[str, np.ndarray] | None = None
        self._last_issue: datetime | None = None
        self._last_forecast: list[dict[int, dict[str, Any]]] | None = None

    # ------------------------------------------------------------------ the model

    def fields(self, t: datetime, *, noise_key: int = 0) -> Fields:
        """The weather of every commune at ``t`` (UTC-aware)."""
        if t.tzinfo is None:
            raise ValueError("times must be timezone-aware")
        lon, lat = self.lon, self.lat
        hours = _hours(t)
        doy = t.timetuple().tm_yday + t.hour / 24
        season = -math.cos(2 * math.pi * (doy - 15) / 365.25)  # -1 mid-January, +1 mid-July
        solar_hour = (t.hour + t.minute / 60 + lon / 15.0) % 24
        # wetness in 0..1: travelling systems + local noise that changes every hour
        rng = np.random.default_rng([self.seed, 2, int(hours), noise_key])
        wet = 0.45 + sum(w.value(lon, lat, hours) for w in self.wet_waves) / 1.6
        wet = wet + rng.normal(0, 0.06, lon.shape)
        autumn = math.exp(-(((doy - 290) / 35) ** 2))  # late Sept .. Nov
        wet = wet + 0.25 * autumn * self.cevenol + 0.00008 * self.altitude - 0.12 * max(season, 0)
        cloud = np.clip((wet - 0.32) / 0.45, 0, 1)
        excess = np.clip(wet - 0.72, 0, None)
        orographic = 1 + self.altitude / 800 + 2.5 * autumn * self.cevenol
        precipitation = np.round(excess * 14 * orographic * rng.uniform(0.6, 1.4, lon.shape), 1)
        rain = precipitation > 0
        # temperature
        mean = (15.0 - 0.9 * (lat - 43.3) + 1.5 * self.maritime
                + (8.5 - 1.0 * self.maritime) * season)
        mean = mean - 0.0065 * self.altitude + sum(w.value(lon, lat, hours)
                                                   for w in self.temperature_waves)
        daily_range = (11.0 - 4.0 * self.maritime + 2.0 * season) * (1 - 0.55 * cloud)
        diurnal = 0.5 * daily_range * np.cos(2 * np.pi * (solar_hour - 15) / 24)
        temperature = mean + diurnal - 1.5 * rain + rng.normal(0, 0.3, lon.shape)
        # humidity: high at dawn, low in the afternoon, saturated under rain
        humidity = (0.62 + 0.18 * np.cos(2 * np.pi * (solar_hour - 5) / 24) + 0.12 * cloud
                    + 0.06 * self.maritime - 0.05 * season)
        humidity = np.where(rain, np.maximum(humidity, 0.9), humidity)
        humidity = np.clip(humidity + rng.normal(0, 0.02, lon.shape), 0.15, 1.0)
        # pressure and wind (the gradient turned 90° + friction towards the low)
        pressure = np.asarray(1015.0 + sum(w.value(lon, lat, hours) for w in self.pressure_waves))
        gradients = [w.gradient(lon, lat, hours) for w in self.pressure_waves]
        gx = sum(g[0] for g in gradients)
        gy = sum(g[1] for g in gradients)
        gradient = np.hypot(gx, gy)  # hPa per degree
        # wind blows towards (-gy, gx) rotated 30° towards the low (-gx, -gy)
        towards = np.arctan2(-gy, gx) + np.radians(30)
        u, v = np.cos(towards), np.sin(towards)
        direction_from = (np.degrees(np.arctan2(-u, -v)) + 360) % 360  # meteorological
        exposure = 1 + self.altitude / 1500 + 0.3 * self.maritime
        wind_speed = (1.0 + 0.35 * gradient) * exposure * rng.uniform(0.8, 1.2, lon.shape)
        daylight = (solar_hour > 7 - 1.5 * season) & (solar_hour < 17 + 1.5 * season)
        return Fields(temperature, humidity, wind_speed, direction_from, precipitation,
                      pressure, cloud, daylight)

    @staticmethod
    def weather_type(f: Fields) -> list[str]:
        """The SDM ``weatherType`` of each commune."""
        out = []
        for temp, rain, cloud, day, hum, wind in zip(
                f.temperature.tolist(), f.precipitation.tolist(), f.cloud.tolist(),
                f.daylight.tolist(), f.humidity.tolist(), f.wind_speed.tolist(), strict=True):
            if rain > 0:
                if temp < 1.0:
                    out.append("heavySnow" if rain >= 2 else "lightSnow")
                elif rain >= 8:
                    out.append("thunder")
                elif rain >= 2.5:
                    out.append("heavyRain")
                else:
                    out.append("lightRain" if rain >= 0.5 else "drizzle")
            elif hum > 0.97 and wind < 2.5:
                out.append("fog")
            elif cloud > 0.8:
                out.append("overcast")
            elif cloud > 0.5:
                out.append("cloudy")
            elif cloud > 0.25:
                out.append("slightlyCloudy")
            else:
                out.append("sunnyDay" if day else "clearNight")
        return out

    # ------------------------------------------------------------------ entities

    def _observed_values(self, t: datetime) -> dict[str, np.ndarray]:
        f = self.fields(t)
        return {
            "temperature": np.round(f.temperature, 1),
            "relativeHumidity": np.round(f.humidity, 2),
            "windSpeed": np.round(f.wind_speed, 1),
            "windDirection": np.round(f.wind_direction / 10).astype(int) * 10 % 360,
            "precipitation": np.round(f.precipitation, 1),
            "atmosphericPressure": np.round(f.pressure, 1),
            "weatherType": np.array(self.weather_type(f), dtype=object),
        }

    def _forecast_values(self, issued: datetime) -> list[dict[int, dict[str, Any]]]:
        """Per commune, per day ahead: the forecast attributes (plain values)."""
        out: list[dict[int, dict[str, Any]]] = [{} for _ in self.communes]
        today = issued.astimezone(LOCAL).date()
        for k in range(1, self.forecast_days + 1):
            day = today + timedelta(days=k)
            start = datetime(day.year, day.month, day.day, tzinfo=LOCAL).astimezone(UTC)
            end = (datetime(day.year, day.month, day.day, tzinfo=LOCAL)
                   + timedelta(days=1)).astimezone(UTC)
            hourly = [self.fields(start + timedelta(hours=h), noise_key=1)
                      for h in range(0, 24, 2)]
            temperature = np.stack([f.temperature for f in hourly])
            humidity = np.stack([f.humidity for f in hourly])
            rain = np.stack([f.precipitation for f in hourly]) * 2  # 2-hour steps
            wind = np.stack([f.wind_speed for f in hourly])
            # the further ahead, the less sure: a forecast error that grows with lead time
            rng = np.random.default_rng([self.seed, 3, int(_hours(issued)), k])
            error = rng.normal(0, 0.6 + 0.5 * k, len(self.communes))
            minimum = np.round(temperature.min(axis=0) + error, 1)
            maximum = np.round(temperature.max(axis=0) + error, 1)
            total = np.round(rain.sum(axis=0), 1)
            wet_share = (rain > 0).mean(axis=0)
            probability = np.round(np.clip(0.1 + 0.9 * wet_share + 0.05 * k, 0, 0.95)
                                   * (wet_share > 0) + 0.05 * k * (wet_share == 0), 2)
            midday = hourly[6]
            types = self.weather_type(midday)
            for i in range(len(self.communes)):
                kind = types[i]
                if total[i] >= 1 and kind not in ("lightRain", "heavyRain", "thunder",
                                                  "lightSnow", "heavySnow"):
                    kind = "lightSnow" if minimum[i] < 0 and maximum[i] < 2 else "lightRain"
                out[i][k] = {
                    "validFrom": format_utc_seconds(start), "validTo": format_utc_seconds(end),
                    "dayMinimum": {"temperature": float(minimum[i]),
                                   "relativeHumidity": float(np.round(humidity[:, i].min(), 2))},
                    "dayMaximum": {"temperature": float(maximum[i]),
                                   "relativeHumidity": float(np.round(humidity[:, i].max(), 2))},
                    "precipitation": float(total[i]),
                    "precipitationProbability": float(probability[i]),
                    "windSpeed": float(np.round(wind[:, i].mean(), 1)),
                    "weatherType": kind,
                }
        return out

    def _static(self, c: Commune) -> Entity:
        departement = departements_by_code()[c.departement].name
        return {
            "name": prop(f"Météo — {c.name}"),
            "location": geo_point(c.lon, c.lat),
            "address": prop({"addressLocality": c.name, "addressRegion": "Occitanie",
                             "addressCountry": "FR", "district": departement}),
            "inseeCode": prop(c.code),
            "visibility": prop("public"),
            "dataProvider": prop(PROVIDER),
        }

    def initial(self, now: datetime) -> list[Batch]:
        """Every entity in full: one WeatherObserved per commune and its forecasts."""
        values = self._observed_values(now)
        at = format_utc_seconds(now)
        observed = []
        for i, c in enumerate(self.communes):
            entity: Entity = {"id": observed_id(c.code), "type": "WeatherObserved",
                              **self._static(c), "dateObserved": date_time(at)}
            for name, column in values.items():
                entity[name] = prop(_plain(column[i]), unit=UNITS.get(name), at=at)
            observed.append(entity)
        self._last_observed = values
        batches: list[Batch] = [([WEATHER_CONTEXT], observed)]
        if self.forecast_days:
            issued = issue_time(now)
            forecasts = self._forecast_values(issued)
            entities = []
            for i, c in enumerate(self.communes):
                for k, attrs in forecasts[i].items():
                    entity = {"id": forecast_id(c.code, k), "type": "WeatherForecast",
                              **self._static(c), "dateIssued": date_time(issued)}
                    entity["name"] = prop(f"Prévisions J+{k} — {c.name}")
                    entity.update(_forecast_attrs(attrs))
                    entities.append(entity)
            self._last_issue, self._last_forecast = issued, forecasts
            batches.append(([WEATHER_CONTEXT], entities))
        return batches

    def tick(self, now: datetime) -> list[Batch]:
        """Fragments with the attributes that changed since the last call (and the dates)."""
        values = self._observed_values(now)
        at = format_utc_seconds(now)
        last = self._last_observed
        fragments = []
        for i, c in enumerate(self.communes):
            changed = {name: prop(_plain(column[i]), unit=UNITS.get(name), at=at)
                       for name, column in values.items()
                       if last is None or column[i] != last[name][i]}
            if changed:
                fragments.append({"id": observed_id(c.code), "type": "WeatherObserved",
                                  "dateObserved": date_time(at), **changed})
        self._last_observed = values
        batches: list[Batch] = [([WEATHER_CONTEXT], fragments)] if fragments else []
        issued = issue_time(now)
        if self.forecast_days and issued != self._last_issue:
            forecasts = self._forecast_values(issued)
            previous = self._last_forecast
            entities = []
            for i, c in enumerate(self.communes):
                for k, attrs in forecasts[i].items():
                    old = previous[i].get(k, {}) if previous is not None else {}
                    diff = {name: value for name, value in attrs.items() if old.get(name) != value}
                    entity = {"id": forecast_id(c.code, k), "type": "WeatherForecast",
                              "dateIssued": date_time(issued), **_forecast_attrs(diff)}
                    entities.append(entity)
            self._last_issue, self._last_forecast = issued, forecasts
            batches.append(([WEATHER_CONTEXT], entities))
        return batches


UNITS = {"temperature": "CEL", "relativeHumidity": "C62", "windSpeed": "MTS",
         "windDirection": "DD", "precipitation": "MMT", "atmosphericPressure": "A97"}


def observed_id(insee: str) -> str:
    return f"urn:ngsi-ld:WeatherObserved:occitanie:{insee}"


def forecast_id(insee: str, days_ahead: int) -> str:
    return f"urn:ngsi-ld:WeatherForecast:occitanie:{insee}:d{days_ahead}"


def issue_time(now: datetime) -> datetime:
    """The latest forecast issue time (04, 10, 16 or 22 UTC) at or before ``now``."""
    t = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    for back in range(0, 7):
        candidate = t - timedelta(hours=back)
        if candidate.hour in FORECAST_HOURS_UTC:
            return candidate
    raise AssertionError("unreachable: issue hours are 6 h apart")


def _forecast_attrs(attrs: dict[str, Any]) -> Entity:
    out: Entity = {}
    for name, value in attrs.items():
        if name in ("validFrom", "validTo"):
            out[name] = date_time(value)
        elif name in ("precipitation", "windSpeed"):
            out[name] = prop(value, unit=UNITS[name])
        elif name == "precipitationProbability":
            out[name] = prop(value, unit="C62")
        else:
            out[name] = prop(value)
    return out


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
