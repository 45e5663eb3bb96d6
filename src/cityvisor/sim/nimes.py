"""Demo city: a synthetic but plausible sensor estate for Nîmes Métropole (Gard, Occitanie).

``build_city()`` returns ~39,000 NGSI-LD entities in *normalized, compact* form (no
``@context`` member), grouped in batches by Smart Data Models domain::

    [([sdm_context("Streetlighting")], [{"id": ..., "type": ...}, ...]), ...]

so that ``cityvisor demo`` can hand each batch to the broker's batch-create path with its
``@context`` (the NGSI-LD core context is implied). Ids are ``urn:ngsi-ld:<Type>:nimes:<n>``
(n from 1), and the whole output is a pure function of ``(counts, seed, observed_at)``.

Geography is real: the 39 commune polygons of the agglomeration (IGN Admin Express COG 2018,
Licence Ouverte 2.0), see :mod:`cityvisor.sim.geography`. Every located entity lies inside the
commune named in its ``address.addressLocality``. Observations describe a wet late-November
evening (18:30 local time, light Mediterranean rain, ~9 °C), when street lights are on.

Units are UN/CEFACT common codes: CEL (°C), MTR (m), MMT (mm), KMH (km/h), MTS (m/s),
A97 (hPa), DD (degree), WTT (W), C62 (dimensionless "one", used for SDM ratios in 0..1 such as
``relativeHumidity``, ``fillingLevel``, ``illuminanceLevel``, ``occupancy``, ``batteryLevel``).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from cityvisor.ngsild.build import date_time, geo_point, prop, relationship
from cityvisor.ngsild.context import sdm_context
from cityvisor.ngsild.time import format_utc_seconds
from cityvisor.sim import geography as geo

CITY = "nimes"
#: Default observation time: Thursday 27 November 2025, 18:30 CET (sunset was ~16:55).
OBSERVED_AT = datetime(2025, 11, 27, 17, 30, tzinfo=UTC)

Entity = dict[str, Any]
Batch = tuple[list[str], list[Entity]]


@dataclass(frozen=True)
class DemoCounts:
    """How many entities of each kind to generate (orders of magnitude for ~260,000 people).

    * ``streetlights`` 35,000 — French towns run roughly one light point per 7–8 inhabitants;
      Nîmes alone maintains some 20,000, the 38 other communes the rest (Streetlight, plus one
      StreetlightGroup per commune).
    * ``cameras`` 1,300 — the metropole's video-protection network as the supervision centre
      counts it (Nîmes has one of the densest municipal CCTV networks in France; neighbouring
      communes run a few dozen each). Smart Data Models ``Camera`` (Device domain).
    * ``rain_gauges`` 25 / ``water_level_gauges`` 25 — the flood-warning network along the
      cadereaux, densified after the 1988 and 2005 floods (WeatherObserved / FloodMonitoring).
    * ``weather_stations`` 8 — Météo-France (Nîmes-Courbessac, Nîmes-Garons) plus municipal
      stations (WeatherObserved).
    * ``seismometers`` 10 — the Gard is in seismic zone 2–3 (moderate); a small accelerometric
      network spread over the territory (Device).
    * ``ev_stations`` 150 — about one public charging point per 500–1,000 inhabitants in 2024
      (EVChargingStation).
    * ``waste_containers`` 2,500 — voluntary-drop containers (glass, paper, packaging) and
      underground bins, about one per 100 inhabitants (WasteContainer).
    * ``traffic_counters`` 150 — permanent loop / radar counting points (TrafficFlowObserved).
    """

    streetlights: int = 35000
    cameras: int = 1300
    rain_gauges: int = 25
    water_level_gauges: int = 25
    weather_stations: int = 8
    seismometers: int = 10
    ev_stations: int = 150
    waste_containers: int = 2500
    traffic_counters: int = 150


# --------------------------------------------------------------------------- helpers


def urn(etype: str, n: int) -> str:
    """Stable entity id ``urn:ngsi-ld:<Type>:nimes:<n>``."""
    return f"urn:ngsi-ld:{etype}:{CITY}:{n}"


def _address_at(lon: float, lat: float) -> dict:
    """The address of a point of the metropole (the gauges are placed inside it)."""
    commune = geo.commune_at(lon, lat)
    if commune is None:
        raise ValueError(f"({lon}, {lat}) is outside the metropole")
    return _address(commune)


def _address(c: geo.Commune) -> dict:
    return prop({"addressCountry": "FR", "addressRegion": "Occitanie",
                 "addressLocality": c.name, "postalCode": c.postal_code})


def _timestamps(t: datetime, days_before: np.ndarray) -> list[str]:
    """ISO UTC timestamps ``days_before`` (array of floats) days before ``t``."""
    base = np.datetime64(t.astimezone(UTC).replace(tzinfo=None), "s")
    secs = (days_before * 86400).astype("int64").astype("timedelta64[s]")
    return [s + "Z" for s in np.datetime_as_string(base - secs, unit="s").tolist()]


def _days_before(rng: np.random.Generator, t: datetime, lo: float, hi: float, n: int) -> list:
    """``n`` ISO timestamps uniformly between ``lo`` and ``hi`` days before ``t``."""
    return _timestamps(t, rng.uniform(lo, hi, n))


def _pick(rng: np.random.Generator, choices: list, probs: list[float], n: int) -> list:
    return [choices[i] for i in rng.choice(len(choices), size=n, p=probs).tolist()]


def _placed(rng, total, weights, core_share=0.0):
    """Sample points; returns (lon list, lat list, Commune list)."""
    communes = geo.load_communes()
    pts, idx = geo.sample_communes(rng, total, weights, core_share)
    return pts[:, 0].tolist(), pts[:, 1].tolist(), [communes[i] for i in idx.tolist()]


# --------------------------------------------------------------------------- builders


def _streetlighting(rng, n: int, at: str, t: datetime) -> list[Entity]:
    communes = geo.load_communes()
    pop = np.array([c.population for c in communes], float)
    area = np.array([c.area for c in communes])
    weights = 0.75 * pop / pop.sum() + 0.25 * area / area.sum()
    sunset = format_utc_seconds(t.astimezone(UTC).replace(hour=15, minute=55, second=0))
    out = []
    for c in communes:
        x, y = c.geometry.representative_point().coords[0]
        out.append({
            "id": urn("StreetlightGroup", c.index + 1), "type": "StreetlightGroup",
            "name": prop(f"Éclairage public — {c.name}"), "areaServed": prop(c.name),
            "location": geo_point(round(x, 6), round(y, 6)), "address": _address(c),
            "powerState": prop("on", at=at), "dateLastSwitchingOn": date_time(sunset),
        })
    lon, lat, where = _placed(rng, n, weights, core_share=0.45)
    status = _pick(rng, ["ok", "defectiveLamp", "brokenLantern", "columnIssue"],
                   [0.97, 0.02, 0.005, 0.005], n)
    power = _pick(rng, ["on", "low", "off", "bootingUp"], [0.955, 0.03, 0.01, 0.005], n)
    height = _pick(rng, [4, 6, 8, 10, 12], [0.1, 0.35, 0.3, 0.17, 0.08], n)
    rated = rng.choice([36, 54, 70, 100, 150], size=n).tolist()
    changed = _days_before(rng, t, 30, 8 * 365, n)
    for i in range(n):
        state = "off" if status[i] != "ok" else power[i]
        level = {"on": 1.0, "low": 0.5, "off": 0.0, "bootingUp": 0.2}[state]
        c = where[i]
        out.append({
            "id": urn("Streetlight", i + 1), "type": "Streetlight",
            "location": geo_point(lon[i], lat[i]), "address": _address(c),
            "status": prop(status[i], at=at), "powerState": prop(state, at=at),
            "illuminanceLevel": prop(level, unit="C62", at=at),
            "powerConsumption": prop(round(rated[i] * level, 1), unit="WTT", at=at),
            "lanternHeight": prop(height[i], unit="MTR"),
            "dateLastLampChange": date_time(changed[i]),
            "refStreetlightGroup": relationship(urn("StreetlightGroup", c.index + 1)),
        })
    return out


def _cameras(rng, n: int, at: str) -> list[Entity]:
    pop = np.array([c.population for c in geo.load_communes()], float)
    lon, lat, where = _placed(rng, n, pop, core_share=0.5)
    kind = _pick(rng, ["FIXED", "DOME", "PTZ", "BULLET"], [0.45, 0.3, 0.2, 0.05], n)
    usage = _pick(rng, ["SURVEILLANCE", "TRAFFIC", "ANPR/LPR"], [0.85, 0.1, 0.05], n)
    on = (rng.random(n) > 0.02).tolist()
    out = []
    for i in range(n):
        name = f"CAM-{where[i].code}-{i + 1:04d}"
        out.append({
            "id": urn("Camera", i + 1), "type": "Camera",
            "location": geo_point(lon[i], lat[i]), "address": _address(where[i]),
            "cameraName": prop(name), "cameraNum": prop(i + 1), "cameraType": prop(kind[i]),
            "cameraUsage": prop(usage[i]), "on": prop(on[i], at=at),
            "streamName": prop(f"nimes-metropole/{name.lower()}"),
        })
    return out


def _along_cadereaux(rng, n: int) -> list[tuple[str, float, float]]:
    """``n`` (cadereau name, lon, lat) spread over the cadereaux, proportional to length."""
    names = list(geo.CADEREAUX)
    lengths = np.array([np.hypot(*np.diff(np.array(geo.CADEREAUX[k]), axis=0).T).sum()
                        for k in names])
    out = []
    for name, k in zip(names, geo.allocate(n, lengths), strict=False):
        for x, y in geo.points_along(rng, geo.CADEREAUX[name], int(k)).tolist():
            out.append((name, x, y))
    return out


def _weather(rng, n_rain: int, n_stations: int, at: str) -> list[Entity]:
    out = []
    for i, (river, x, y) in enumerate(_along_cadereaux(rng, n_rain)):
        rain = max(0.0, round(rng.normal(1.2 + 25 * (y - 43.83), 0.4) / 0.2) * 0.2)
        out.append({
            "id": urn("WeatherObserved", i + 1), "type": "WeatherObserved",
            "name": prop(f"{river} — pluviomètre {i + 1}"),
            "location": geo_point(x, y), "address": _address_at(x, y),
            "precipitation": prop(round(rain, 1), unit="MMT", at=at), "dateObserved": date_time(at),
        })
    weights = np.sqrt([c.population for c in geo.load_communes()])
    lon, lat, where = _placed(rng, n_stations, weights)
    for j in range(n_stations):
        i = n_rain + j
        out.append({
            "id": urn("WeatherObserved", i + 1), "type": "WeatherObserved",
            "name": prop(f"Station météo {where[j].name} {j + 1}"),
            "location": geo_point(lon[j], lat[j]), "address": _address(where[j]),
            "dateObserved": date_time(at),
            "temperature": prop(round(float(rng.normal(9.0, 0.8)), 1), unit="CEL", at=at),
            "relativeHumidity": prop(round(float(rng.uniform(0.82, 0.95)), 2), unit="C62", at=at),
            "precipitation": prop(round(float(rng.uniform(0.4, 2.4)), 1), unit="MMT", at=at),
            "windSpeed": prop(round(float(rng.uniform(1.5, 5.5)), 1), unit="MTS", at=at),
            "windDirection": prop(int(rng.integers(90, 180)), unit="DD", at=at),
            "atmosphericPressure": prop(round(float(rng.normal(1009, 1.5)), 1), unit="A97", at=at),
        })
    return out


def _flood(rng, n: int, at: str) -> list[Entity]:
    out = []
    for i, (river, x, y) in enumerate(_along_cadereaux(rng, n)):
        big = river == "Vistre"
        level = rng.uniform(0.45, 0.9) if big else (
            rng.uniform(0.25, 0.5) if "Agau" in river else rng.uniform(0.0, 0.25))
        ref = 4.5 if big else 3.0
        out.append({
            "id": urn("FloodMonitoring", i + 1), "type": "FloodMonitoring",
            "name": prop(f"{river} — limnimètre {i + 1}"), "stationID": prop(f"NIM-LIM-{i + 1:02d}"),
            "location": geo_point(x, y), "address": _address_at(x, y),
            "currentLevel": prop(round(float(level), 2), unit="MTR", at=at),
            "alertLevel": prop(2.5 if big else 1.2, unit="MTR"),
            "dangerLevel": prop(3.5 if big else 2.0, unit="MTR"),
            "referenceLevel": prop(ref, unit="MTR"),
            "measuredDistance": prop(round(ref - float(level), 2), unit="MTR", at=at),
            "floodLevelStatus": prop("Normal", at=at), "observationDateTime": date_time(at),
        })
    return out


def _seismometers(rng, n: int, at: str, t: datetime) -> list[Entity]:
    area = [c.area for c in geo.load_communes()]
    lon, lat, where = _placed(rng, n, area)
    installed = _days_before(rng, t, 365, 10 * 365, n)
    return [{
        "id": urn("Device", i + 1), "type": "Device",
        "name": prop(f"Sismomètre {where[i].name}"), "description": prop("Accelerometric station"),
        "location": geo_point(lon[i], lat[i]), "address": _address(where[i]),
        "deviceCategory": prop(["sensor"]), "controlledProperty": prop(["vibration"]),
        "serialNumber": prop(f"NIM-SIS-{i + 1:02d}"), "deviceState": prop("ok", at=at),
        "batteryLevel": prop(round(float(rng.uniform(0.7, 1.0)), 2), unit="C62", at=at),
        "dateInstalled": date_time(installed[i]), "dateLastValueReported": date_time(at),
    } for i in range(n)]


def _ev_stations(rng, n: int, at: str) -> list[Entity]:
    pop = [c.population for c in geo.load_communes()]
    lon, lat, where = _placed(rng, n, pop, core_share=0.3)
    cap = _pick(rng, [2, 4, 6, 8], [0.65, 0.2, 0.1, 0.05], n)
    sockets = _pick(rng, [["Type2"], ["Type2", "CCS/SAE"], ["CCS/SAE", "CHAdeMO"]],
                    [0.7, 0.2, 0.1], n)
    operator = _pick(rng, ["Nîmes Métropole", "Izivia", "TotalEnergies", "Freshmile", "Ionity"],
                     [0.45, 0.2, 0.15, 0.15, 0.05], n)
    out_of_service = rng.random(n) < 0.04
    out = []
    for i in range(n):
        avail = 0 if out_of_service[i] else int(rng.integers(0, cap[i] + 1))
        status = ("outOfService" if out_of_service[i] else "full" if avail == 0
                  else "working")
        out.append({
            "id": urn("EVChargingStation", i + 1), "type": "EVChargingStation",
            "name": prop(f"Borne de recharge {where[i].name} {i + 1}"),
            "location": geo_point(lon[i], lat[i]), "address": _address(where[i]),
            "operator": prop(operator[i]), "allowedVehicleType": prop(["car"]),
            "socketType": prop(sockets[i]), "chargeType": prop(["other"]),
            "capacity": prop(cap[i]), "availableCapacity": prop(avail, at=at),
            "status": prop(status, at=at),
        })
    return out


def _waste(rng, n: int, at: str, t: datetime) -> list[Entity]:
    pop = [c.population for c in geo.load_communes()]
    lon, lat, where = _placed(rng, n, pop, core_share=0.35)
    kind = _pick(rng, ["glass", "paper", "plastic", "inorganic"], [0.4, 0.25, 0.25, 0.1], n)
    cat = _pick(rng, ["ground", "underground"], [0.65, 0.35], n)
    status = _pick(rng, ["ok", "lidOpen", "vandalized", "moved"], [0.97, 0.015, 0.01, 0.005], n)
    days = rng.uniform(0.2, 14.0, n)
    emptied = _timestamps(t, days)
    fill = np.clip(days / 14 + rng.normal(0, 0.08, n), 0.02, 1.0).round(2).tolist()
    return [{
        "id": urn("WasteContainer", i + 1), "type": "WasteContainer",
        "location": geo_point(lon[i], lat[i]), "address": _address(where[i]),
        "serialNumber": prop(f"NM-{where[i].code}-{i + 1:05d}"),
        "category": prop([cat[i]]), "storedWasteKind": prop(kind[i]),
        "fillingLevel": prop(fill[i], unit="C62", at=at), "status": prop(status[i], at=at),
        "dateLastEmptying": date_time(emptied[i]),
    } for i in range(n)]


def _traffic(rng, n: int, at: str, t: datetime) -> list[Entity]:
    pop = [c.population for c in geo.load_communes()]
    lon, lat, where = _placed(rng, n, pop, core_share=0.3)
    start = format_utc_seconds(t - timedelta(minutes=15))
    speed = np.clip(rng.normal(42, 14, n), 8, 90).round(1).tolist()
    lanes = rng.integers(1, 4, n).tolist()
    out = []
    for i in range(n):
        slow = speed[i] < 20
        out.append({
            "id": urn("TrafficFlowObserved", i + 1), "type": "TrafficFlowObserved",
            "name": prop(f"Point de comptage {where[i].name} {i + 1}"),
            "location": geo_point(lon[i], lat[i]), "address": _address(where[i]),
            "laneId": prop(lanes[i]), "laneDirection": prop("forward" if i % 2 else "backward"),
            "intensity": prop(int(rng.integers(40, 420)), at=at),
            "averageVehicleSpeed": prop(speed[i], unit="KMH", at=at),
            "occupancy": prop(round(float(rng.uniform(0.25, 0.6) if slow
                                          else rng.uniform(0.04, 0.25)), 2), unit="C62", at=at),
            "congested": prop(slow, at=at), "dateObserved": date_time(at),
            "dateObservedFrom": date_time(start), "dateObservedTo": date_time(at),
        })
    return out


# --------------------------------------------------------------------------- entry point


def build_city(counts: DemoCounts = DemoCounts(), seed: int = 1988,
               observed_at: datetime = OBSERVED_AT) -> list[Batch]:
    """Generate the demo city: a list of ``(context_urls, entities)`` batches, one per
    Smart Data Models domain. Deterministic for a given ``(counts, seed, observed_at)``;
    each entity kind draws from its own random stream, so changing one count does not move
    the others."""
    at = format_utc_seconds(observed_at)
    # ~40k small dicts: the cyclic GC would rescan them repeatedly (2-3x slower); none of
    # them form cycles, so pause it while building and restore the caller's setting.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _build(counts, seed, observed_at, at)
    finally:
        if gc_was_enabled:
            gc.enable()


def _build(counts: DemoCounts, seed: int, observed_at: datetime, at: str) -> list[Batch]:
    def rng(k: int) -> np.random.Generator:
        return np.random.default_rng([seed, k])

    by_domain = {
        "Streetlighting": _streetlighting(rng(1), counts.streetlights, at, observed_at),
        "Device": _cameras(rng(2), counts.cameras, at)
        + _seismometers(rng(3), counts.seismometers, at, observed_at),
        "Weather": _weather(rng(4), counts.rain_gauges, counts.weather_stations, at),
        "Environment": _flood(rng(5), counts.water_level_gauges, at),
        "Transportation": _ev_stations(rng(6), counts.ev_stations, at)
        + _traffic(rng(7), counts.traffic_counters, at, observed_at),
        "WasteManagement": _waste(rng(8), counts.waste_containers, at, observed_at),
    }
    return [([sdm_context(d)], ents) for d, ents in by_domain.items() if ents]
