"""The flood early-warning app: one cycle every 5 minutes, observations in, warnings out.

Each cycle (:meth:`FloodApp.run_cycle`):

1. reads the rain gauges (``WeatherObserved.precipitation``: mm over the hour ending at its
   ``observedAt``) and water-level gauges (``FloodMonitoring.currentLevel``, converted to
   discharge with the catchment's rating curve) through the :class:`ContextClient`, and checks
   each reading (missing, invalid/NaN, out of range, stale, stuck);
2. reads the last radar frames from its :class:`~cityvisor.apps.flood.sources.RadarSource`;
3. builds basin rainfall per catchment: radar mean over the catchment cells, scaled by a
   mean-field bias from the gauges (Σ gauge / Σ radar at the gauges, clipped to 0.5..2); the
   gauges' mean where the radar frame is missing;
4. steps each catchment's :class:`~cityvisor.apps.flood.forecaster.CatchmentForecaster` for every
   whole hour since the last step (the outlet gauge's discharge updates its state), nowcasts the
   radar 6 h ahead (:func:`~cityvisor.apps.flood.nowcast.nowcast`; without radar, the last hour
   of gauge rain decaying to 0 over 3 h), turns that into the catchment's ``future_rain``
   scenario (default ``blend*0.5``: half the mean of the nowcast and the last hour's rain) and
   forecasts discharge for leads 1..6 h after the last whole hour, with the catchment's
   output-error correction ``gains`` (default 0.3, 0.3, 0, 0, 0, 0);
5. derives each warning point's vigilance with hysteresis (:mod:`.vigilance`) and trend;
6. writes the warning points (``FloodMonitoring``) and their ``Alert`` as docs/data-contracts.md
   says, then saves its state (forecasters, vigilance, gauge history) as JSON in ``data_dir``
   so a restart resumes.

Robustness: a bad gauge or a radar gap lowers ``confidence`` and is listed in
``confidenceIssues``; an exception in one catchment or one write is caught, logged and
reported in the :class:`CycleReport` while the other points go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from cityvisor.apps.flood.config import Catchment, FloodConfig, WarningPoint, is_finite
from cityvisor.apps.flood.forecaster import CatchmentForecaster, future_rain
from cityvisor.apps.flood.hours import HOUR
from cityvisor.apps.flood.hours import iso as _iso
from cityvisor.apps.flood.nowcast import FRAMES as NOWCAST_FRAMES
from cityvisor.apps.flood.nowcast import consecutive_frames, nowcast
from cityvisor.apps.flood.sources import (
    CellMask,
    NoRadar,
    RadarFrame,
    RadarSource,
    catchment_cells,
    cell_index,
    hour_floor,
)
from cityvisor.apps.flood.vigilance import LEVEL_FR, SEVERITY, VigilanceState, rank, trend, update
from cityvisor.client import ContextClient
from cityvisor.ngsild.errors import NonexistentTenant, ResourceNotFound
from cityvisor.ngsild.model import NULL

__all__ = ["FloodApp", "CycleReport", "PointReport", "SDM_ALERT", "SDM_ENVIRONMENT", "SDM_WEATHER"]

log = logging.getLogger("cityvisor.flood")

_SDM = "https://raw.githubusercontent.com/smart-data-models/dataModel.{}/master/context.jsonld"
SDM_WEATHER = _SDM.format("Weather")
SDM_ENVIRONMENT = _SDM.format("Environment")
SDM_ALERT = _SDM.format("Alert")
LIVE_PROVIDER = "cityvisor — prévision des crues"
STATE_FILE = "flood-state.json"
STATE_VERSION = 1
#: Hours caught up with radar rain after an outage (the forecaster fills longer gaps dry).
MAX_CATCH_UP_H = 24
QUERY_CHUNK = 50
BIAS_LIMITS = (0.5, 2.0)
TREND_FR = {"rising": "en hausse", "steady": "stable", "falling": "en baisse"}

Clock = Callable[[], datetime]
Entity = dict[str, Any]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _local_hm(when: datetime) -> str:
    try:
        from zoneinfo import ZoneInfo

        return when.astimezone(ZoneInfo("Europe/Paris")).strftime("%H:%M")
    except Exception:  # no tz database: UTC, said so
        return when.astimezone(UTC).strftime("%H:%M UTC")


def _prop(value: Any, unit: str | None = None, at: datetime | None = None,
          **sub: Any) -> dict[str, Any]:
    attr: dict[str, Any] = {"type": "Property", "value": value}
    if unit:
        attr["unitCode"] = unit
    if at is not None:
        attr["observedAt"] = _iso(at)
    attr.update(sub)
    return attr


def _datetime(when: datetime) -> dict[str, Any]:
    return {"type": "Property", "value": {"@type": "DateTime", "@value": _iso(when)}}


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# --- observations --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """One gauge reading after quality control: ``value`` is None when it is not usable."""

    gauge_id: str
    value: float | None
    observed_at: datetime | None
    issue: str | None = None
    location: tuple[float, float] | None = None


def _label(entity: Entity | None, gauge_id: str) -> str:
    if entity:
        station = entity.get("stationID")
        if isinstance(station, dict) and isinstance(station.get("value"), str):
            return station["value"]
    return gauge_id.removeprefix("urn:ngsi-ld:").split(":", 1)[-1]


def _instance(attr: Any) -> dict[str, Any] | None:
    """The default instance of a normalized attribute (a list for multi-attributes)."""
    if isinstance(attr, list):
        plain = [a for a in attr if isinstance(a, dict) and "datasetId" not in a]
        attr = plain[0] if plain else (attr[0] if attr else None)
    return attr if isinstance(attr, dict) else None


def _location(entity: Entity) -> tuple[float, float] | None:
    loc = _instance(entity.get("location"))
    try:
        lon, lat = loc["value"]["coordinates"][:2]  # type: ignore[index]
        return float(lon), float(lat)
    except (TypeError, KeyError, ValueError):
        return None


# --- reports -------------------------------------------------------------------------------------


@dataclass
class PointReport:
    """What a cycle decided for one warning point."""

    slug: str
    level: str
    previous_level: str
    observed_m3s: float | None
    forecast_m3s: list[float]
    trend: str
    confidence: float
    issues: list[str]
    error: str | None = None
    written: bool = False


@dataclass
class CycleReport:
    """One cycle: issue time, last whole hour, per-point results, errors, timings."""

    issued_at: datetime
    hour: datetime
    points: dict[str, PointReport] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    radar_frames: int = 0
    bias: float = 1.0
    duration_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        """A JSON-able digest (the CLI prints it)."""
        return {
            "issuedAt": _iso(self.issued_at), "hour": _iso(self.hour),
            "durationS": round(self.duration_s, 3), "radarFrames": self.radar_frames,
            "bias": round(self.bias, 3), "errors": self.errors,
            "points": {s: {"level": p.level, "confidence": p.confidence, "trend": p.trend,
                           "peakM3s": round(max(p.forecast_m3s), 2) if p.forecast_m3s else None,
                           "issues": p.issues, "error": p.error}
                       for s, p in self.points.items()},
        }


@dataclass
class _CatchmentResult:
    observed_m3s: float | None
    observed_at: datetime | None
    observed_level_m: float | None
    forecast_m3s: list[float]
    valid_from: datetime  # the last stepped hour: forecasts are for +1..+6 h
    confidence: float
    issues: list[str]


# --- the app ----------------------------------------------------------------------------------------


class FloodApp:
    """The flood early-warning app (see the module docstring).

    ``client``: any :class:`ContextClient` on the app's tenant (its @context does not matter: the
    app derives one client per Smart Data Models domain with ``with_context``); ``radar``: a
    radar source (None: gauges only); ``clock``: returns the current time (a replay passes its
    scenario clock); ``data_dir``: where the state JSON is kept (None: in memory only);
    ``data_provider``: written as ``dataProvider`` on every entity (a replay labels itself).
    """

    def __init__(self, client: ContextClient, config: FloodConfig,
                 radar: RadarSource | None = None, clock: Clock = utc_now, *,
                 data_dir: str | Path | None = None, data_provider: str = LIVE_PROVIDER,
                 cycle_interval_s: float | None = None) -> None:
        self.config = config
        self.radar: RadarSource = radar if radar is not None else NoRadar()
        self.has_radar = radar is not None and not isinstance(radar, NoRadar)
        self.clock = clock
        self.data_provider = data_provider
        self.cycle_interval_s = cycle_interval_s or config.cycle_seconds
        self.weather = client.with_context(SDM_WEATHER)
        self.environment = client.with_context(SDM_ENVIRONMENT)
        self.alerts = client.with_context(SDM_ALERT)
        self.state_path = Path(data_dir) / STATE_FILE if data_dir is not None else None
        self.forecasters: dict[str, CatchmentForecaster] = {}
        self.vigilance: dict[str, VigilanceState] = {}
        self.alert_levels: dict[str, str] = {}  # level last written on each Alert
        self.gauges: dict[str, dict[str, Any]] = {}  # value history for stuck detection
        self._masks: dict[tuple[str, tuple[int, int], Any], CellMask] = {}
        self._last_result: dict[str, _CatchmentResult] = {}
        #: set after each cycle of run_forever (tests and supervisors await it)
        self.cycle_done = asyncio.Event()
        self.last_report: CycleReport | None = None
        self._load_state()

    # --- state ---------------------------------------------------------------------------------

    def _new_forecaster(self, catchment: Catchment) -> CatchmentForecaster:
        return CatchmentForecaster(params=catchment.params, area_km2=catchment.area_km2,
                                   gains=catchment.gains, model_weights=catchment.model_weights)

    def _load_state(self) -> None:
        data: dict[str, Any] = {}
        if self.state_path is not None and self.state_path.exists():
            try:
                data = json.loads(self.state_path.read_text("utf-8"))
                if data.get("version") != STATE_VERSION:
                    raise ValueError(f"unknown state version {data.get('version')!r}")
            except (OSError, ValueError) as error:
                log.warning("flood state %s unreadable (%s): starting afresh",
                            self.state_path, error)
                data = {}
        saved = data.get("forecasters", {})
        for catchment in self.config.catchments:
            forecaster = None
            if catchment.id in saved:
                try:
                    forecaster = CatchmentForecaster.from_dict(saved[catchment.id])
                except ValueError as error:
                    log.warning("flood state of %s unreadable: %s", catchment.id, error)
                if forecaster is not None and (
                        forecaster.params != catchment.params
                        or forecaster.area_km2 != catchment.area_km2):
                    log.info("catchment %s reconfigured: its model restarts", catchment.id)
                    forecaster = None
                if forecaster is not None:  # new correction settings: the state stays valid
                    forecaster.gains = catchment.gains
                    forecaster.model_weights = catchment.model_weights
            self.forecasters[catchment.id] = forecaster or self._new_forecaster(catchment)
        for slug, raw in data.get("vigilance", {}).items():
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                self.vigilance[slug] = VigilanceState.from_dict(raw)
        self.alert_levels = {k: v for k, v in data.get("alerts", {}).items()
                             if isinstance(v, str)}
        self.gauges = {k: v for k, v in data.get("gauges", {}).items() if isinstance(v, dict)}

    def state_snapshot(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "forecasters": {cid: f.to_dict() for cid, f in self.forecasters.items()},
            "vigilance": {slug: v.to_dict() for slug, v in self.vigilance.items()},
            "alerts": self.alert_levels,
            "gauges": self.gauges,
        }

    def save_state(self) -> None:
        """Write the state atomically (temp file + rename)."""
        if self.state_path is None:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.state_snapshot()), "utf-8")
        os.replace(tmp, self.state_path)

    # --- reading -------------------------------------------------------------------------------

    async def _entities(self, client: ContextClient, ids: list[str], attrs: str,
                        errors: list[str]) -> dict[str, Entity] | None:
        if not ids:
            return {}
        found: list[Entity] = []
        try:
            for start in range(0, len(ids), QUERY_CHUNK):  # bounded URLs and result pages
                chunk = ids[start:start + QUERY_CHUNK]
                found += await client.query_entities(id=",".join(chunk), attrs=attrs,
                                                     limit=len(chunk))
        except NonexistentTenant:
            return {}  # an empty tenant: every gauge is absent
        except Exception as error:  # broker down: every gauge is missing this cycle
            errors.append(f"lecture des capteurs impossible : {error}")
            log.warning("flood: reading gauges failed: %s", error)
            return None
        return {e["id"]: e for e in found if isinstance(e, dict) and "id" in e}

    def _check(self, gauge_id: str, kind: str, entity: Entity | None, attr: str,
               now: datetime, upper: float) -> Reading:
        """Quality control of one reading (missing, invalid, out of range, stale, stuck)."""
        quality = self.config.quality
        label = f"{kind} {_label(entity, gauge_id)}"
        if entity is None:
            return Reading(gauge_id, None, None, f"{label} absent")
        location = _location(entity)
        instance = _instance(entity.get(attr))
        if instance is None:
            return Reading(gauge_id, None, None, f"{label} : pas de mesure", location)
        value = instance.get("value")
        observed_at = _parse_time(instance.get("observedAt"))
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)  # "NaN" strings become NaN, then rejected below
        if not is_finite(value):
            return Reading(gauge_id, None, observed_at, f"{label} : valeur invalide ({value!r})",
                           location)
        value = float(value)
        if not 0.0 <= value <= upper:
            return Reading(gauge_id, None, observed_at,
                           f"{label} : valeur hors plage ({value:g})", location)
        if observed_at is not None and now - observed_at > quality.max_age:
            return Reading(gauge_id, None, observed_at,
                           f"{label} : pas de mesure depuis {_local_hm(observed_at)}", location)
        stamp = observed_at or now
        history = self.gauges.get(gauge_id)
        if history is None or history.get("value") != value:
            history = {"value": value, "since": _iso(stamp), "rain_mm": 0.0}
            self.gauges[gauge_id] = history
        since = _parse_time(history.get("since")) or stamp
        unchanged = stamp - since
        stuck_for = timedelta(hours=quality.stuck_after_hours)
        rain = float(history.get("rain_mm", 0.0))
        stuck_nonzero_rain = kind == "pluviomètre" and value > 0 and unchanged >= stuck_for
        if unchanged >= stuck_for and (rain >= quality.stuck_rain_mm or stuck_nonzero_rain):
            hours = unchanged.total_seconds() / 3600
            return Reading(gauge_id, None, observed_at,
                           f"{label} bloqué : {value:g} depuis {hours:.1f} h", location)
        return Reading(gauge_id, value, observed_at, None, location)

    # --- rain ------------------------------------------------------------------------------------

    def _mask(self, catchment: Catchment, frame: RadarFrame) -> CellMask:
        assert frame.values is not None and frame.transform is not None
        key = (catchment.id, frame.values.shape, frame.transform)
        mask = self._masks.get(key)
        if mask is None:
            mask = catchment_cells(catchment.course, catchment.area_km2, frame.transform,
                                   frame.values.shape)  # type: ignore[arg-type]
            self._masks[key] = mask
        return mask

    def _bias(self, frame: RadarFrame | None, rain: dict[str, Reading]) -> float:
        """Mean-field bias Σ gauge / Σ radar over the gauges (1 when not measurable)."""
        if frame is None or frame.values is None or frame.transform is None:
            return 1.0
        gauge_sum = radar_sum = 0.0
        pairs = 0
        flat = frame.values.reshape(-1)
        for reading in rain.values():
            if reading.value is None or reading.location is None:
                continue
            index = cell_index(*reading.location, frame.transform, frame.values.shape)  # type: ignore[arg-type]
            if index is None or not math.isfinite(flat[index]):
                continue
            gauge_sum += reading.value
            radar_sum += float(flat[index])
            pairs += 1
        if pairs < 2 or radar_sum < 1.0 or gauge_sum < 1.0:
            return 1.0
        return float(min(max(gauge_sum / radar_sum, BIAS_LIMITS[0]), BIAS_LIMITS[1]))

    def _radar_rain(self, catchment: Catchment, frame: RadarFrame | None, bias: float) -> float:
        if frame is None or frame.values is None:
            return float("nan")
        mask = self._mask(catchment, frame)
        if mask.coverage(frame.values) < 0.5:
            return float("nan")
        return mask.mean(frame.values) * bias

    # --- one cycle ------------------------------------------------------------------------------

    async def run_cycle(self, now: datetime | None = None) -> CycleReport:
        """Run one cycle at ``now`` (default: the clock) and write its results."""
        started = time.perf_counter()
        now = (now or self.clock()).astimezone(UTC)
        hour = hour_floor(now)
        report = CycleReport(issued_at=now, hour=hour)
        config = self.config

        rain_ids = [g for c in config.catchments for g in c.rain_gauges]
        level_ids = [g for c in config.catchments for g in c.level_gauges]
        rain_entities = await self._entities(self.weather, rain_ids, "precipitation,location,"
                                             "stationID", report.errors)
        level_entities = await self._entities(self.environment, level_ids,
                                              "currentLevel,stationID", report.errors)
        rain = {g: self._check(g, "pluviomètre", (rain_entities or {}).get(g), "precipitation",
                               now, config.quality.max_rain_mm_per_h) for g in rain_ids}
        levels = {g: self._check(g, "limnimètre", (level_entities or {}).get(g), "currentLevel",
                                 now, config.quality.max_level_m) for g in level_ids}

        frames: dict[datetime, RadarFrame] = {}
        radar_issue: str | None = None
        if self.has_radar:
            try:
                for frame in self.radar.frames(hour, max(MAX_CATCH_UP_H, NOWCAST_FRAMES)):
                    frames[frame.hour] = frame
            except Exception as error:
                radar_issue = f"radar indisponible : {error}"
                report.errors.append(radar_issue)
            missing = [h for h in sorted(frames) if frames[h].values is None
                       and h > hour - NOWCAST_FRAMES * HOUR]
            if missing and radar_issue is None:
                radar_issue = "lacune radar " + ", ".join(_local_hm(h) for h in missing)
            report.radar_frames = sum(1 for f in frames.values() if f.values is not None)
        latest = frames.get(hour)
        report.bias = self._bias(latest, rain)
        future_grids = self._nowcast(frames, hour, report)

        for catchment in config.catchments:
            points = config.points_of(catchment.id)
            try:
                result = self._process(catchment, hour, now, rain, levels, frames, report.bias,
                                       future_grids, radar_issue)
            except Exception as error:
                log.exception("flood: catchment %s failed", catchment.id)
                report.errors.append(f"{catchment.id}: {error!r}")
                for point in points:
                    previous = self.vigilance.get(point.slug, VigilanceState())
                    report.points[point.slug] = PointReport(
                        point.slug, previous.level, previous.level, None, [], "steady", 0.0,
                        [f"calcul impossible : {error}"], error=repr(error))
                continue
            for point in points:
                report.points[point.slug] = self._decide(point, result)
                report.points[point.slug].issues = list(result.issues)
        for point in config.points:
            point_report = report.points[point.slug]
            try:
                await self._write(point, point_report, now, self._last_result.get(point.catchment))
                point_report.written = True
            except Exception as error:
                log.warning("flood: writing %s failed: %s", point.slug, error)
                report.errors.append(f"écriture {point.slug} : {error}")
        try:
            self.save_state()
        except OSError as error:
            report.errors.append(f"état non sauvegardé : {error}")
        report.duration_s = time.perf_counter() - started
        return report

    def _nowcast(self, frames: dict[datetime, RadarFrame], hour: datetime,
                 report: CycleReport) -> tuple[np.ndarray, RadarFrame] | None:
        """Rain grids for the next hours from the last frames (None without a current frame)."""
        latest = frames.get(hour)
        if latest is None or latest.values is None:
            return None
        recent = consecutive_frames([(h, frames[h].values) for h in sorted(frames) if h <= hour])
        try:
            grids = nowcast(recent, leads=self.config.leads_h)
        except Exception as error:
            report.errors.append(f"prévision radar impossible : {error}")
            return None
        return np.asarray(grids, dtype=np.float64), latest

    def _process(self, catchment: Catchment, hour: datetime, now: datetime,
                 rain: dict[str, Reading], levels: dict[str, Reading],
                 frames: dict[datetime, RadarFrame], bias: float,
                 future_grids: tuple[np.ndarray, RadarFrame] | None,
                 radar_issue: str | None) -> _CatchmentResult:
        forecaster = self.forecasters[catchment.id]
        issues: list[str] = []
        confidence = 1.0

        readings = [rain[g] for g in catchment.rain_gauges]
        for reading in readings:
            if reading.issue:
                issues.append(reading.issue)
                confidence *= 0.95 if self.has_radar else 0.85
        valid_rain = [r.value for r in readings if r.value is not None]
        gauge_rain = float(np.mean(valid_rain)) if valid_rain else float("nan")

        outlet_reading: Reading | None = None
        for index, gauge in enumerate(catchment.level_gauges):
            reading = levels[gauge]
            if index == 0:
                outlet_reading = reading
            if reading.issue:
                issues.append(reading.issue)
                confidence *= 0.6 if index == 0 else 0.95
        observed_level = outlet_reading.value if outlet_reading else None
        observed = (catchment.rating.discharge(observed_level)
                    if observed_level is not None else None)
        if radar_issue and self.has_radar:
            issues.append(radar_issue)
            confidence *= 0.75

        # Step every whole hour since the last step (radar rain for the hours missed).
        last = forecaster.last_hour
        if last is None or last < hour - MAX_CATCH_UP_H * HOUR:
            steps = [hour] if last is None else [
                hour - k * HOUR for k in range(MAX_CATCH_UP_H - 1, -1, -1)]
        else:
            steps = [last + k * HOUR for k in range(1, int((hour - last) / HOUR) + 1)]
        current_rain = float("nan")
        for step_hour in steps:
            radar_rain = self._radar_rain(catchment, frames.get(step_hour), bias)
            if step_hour == hour:
                step_rain = radar_rain if math.isfinite(radar_rain) else gauge_rain
                current_rain = step_rain
                step_observed = observed
            else:
                step_rain, step_observed = radar_rain, None
            forecaster.step(step_hour, step_rain, catchment.pet_mm_per_h, step_observed)
            if math.isfinite(step_rain):
                for gauge in [*catchment.rain_gauges, *catchment.level_gauges]:
                    if gauge in self.gauges:
                        self.gauges[gauge]["rain_mm"] = (
                            float(self.gauges[gauge].get("rain_mm", 0.0)) + step_rain)
        if steps and not math.isfinite(current_rain):
            issues.append("aucune pluie mesurée sur le bassin")
            confidence *= 0.5

        leads = self.config.leads_h
        last_rain = current_rain if math.isfinite(current_rain) else (
            gauge_rain if math.isfinite(gauge_rain) else 0.0)
        nowcast_rain: list[float] | None = None
        if future_grids is not None:
            grids, latest = future_grids
            mask = self._mask(catchment, latest)
            if mask.coverage(latest.values) >= 0.5:  # type: ignore[arg-type]
                nowcast_rain = [mask.mean(grids[k]) * bias
                                for k in range(min(leads, len(grids)))]
            else:
                issues.append("bassin hors de la couverture radar")
                confidence *= 0.8
        if nowcast_rain is None:
            # No radar nowcast: the last hour's rain, decaying to nothing over 3 h.
            nowcast_rain = [last_rain * max(0.0, 1.0 - k / 3.0) for k in range(leads)]
        # The catchment's scenario (damped blend by default, as chosen by the evaluation).
        future = future_rain(catchment.future_rain, last_rain, nowcast_rain)
        forecast = forecaster.forecast(future, catchment.pet_mm_per_h)[:leads]
        valid_from = forecaster.last_hour or hour
        result = _CatchmentResult(
            observed_m3s=observed, observed_at=outlet_reading.observed_at if outlet_reading
            else None, observed_level_m=observed_level,
            forecast_m3s=[float(v) for v in forecast], valid_from=valid_from,
            confidence=round(max(0.0, min(1.0, confidence)), 2), issues=issues)
        self._last_result[catchment.id] = result
        return result

    def _decide(self, point: WarningPoint, result: _CatchmentResult) -> PointReport:
        share = point.discharge_share
        observed = result.observed_m3s * share if result.observed_m3s is not None else None
        forecast = [q * share for q in result.forecast_m3s]
        previous = self.vigilance.get(point.slug, VigilanceState())
        state = update(previous, observed, forecast, point.thresholds, self.config.hysteresis)
        self.vigilance[point.slug] = state
        return PointReport(point.slug, state.level, previous.level, observed, forecast,
                           trend(observed, forecast, self.config.hysteresis),
                           result.confidence, list(result.issues))

    # --- writing ---------------------------------------------------------------------------------

    def _common(self, point: WarningPoint) -> dict[str, Any]:
        return {
            "location": {"type": "GeoProperty",
                         "value": {"type": "Point", "coordinates": [point.lon, point.lat]}},
            "address": _prop({"addressCountry": "FR", "addressRegion": "Occitanie",
                              "addressLocality": point.commune,
                              "postalCode": point.postal_code}),
            "inseeCode": _prop(point.insee_code),
            "visibility": _prop("public"),
            "dataProvider": _prop(self.data_provider),
        }

    async def _upsert(self, client: ContextClient, entity: Entity) -> None:
        fragment = {k: v for k, v in entity.items() if k not in ("id", "type")}
        try:
            await client.merge_entity(entity["id"], fragment)
        except (ResourceNotFound, NonexistentTenant):  # first write: create (nothing to delete yet)
            await client.create_entity({k: v for k, v in entity.items()
                                        if v != NULL})

    async def _write(self, point: WarningPoint, report: PointReport, now: datetime,
                     result: _CatchmentResult | None) -> None:
        entity: Entity = {
            "id": point.entity_id, "type": "FloodMonitoring",
            "name": _prop(point.name), **self._common(point),
            "vigilanceLevel": _prop(report.level, at=now),
            "confidence": _prop(report.confidence, "C62", now),
            "confidenceIssues": _prop(report.issues, at=now),
            "trend": _prop(report.trend, at=now),
        }
        if point.alert_level_m is not None:
            entity["alertLevel"] = _prop(point.alert_level_m, "MTR")
        if point.danger_level_m is not None:
            entity["dangerLevel"] = _prop(point.danger_level_m, "MTR")
        catchment = self.config.catchment(point.catchment)
        if result is not None and report.error is None:
            if report.observed_m3s is not None and result.observed_at is not None:
                entity["flow"] = _prop(round(report.observed_m3s, 3), "MQS", result.observed_at)
                entity["currentLevel"] = _prop(
                    round(catchment.rating.level(report.observed_m3s), 3), "MTR",
                    result.observed_at)
            if report.forecast_m3s:
                issued = _datetime(now)
                flows, stages = [], []
                for lead, q in enumerate(report.forecast_m3s, start=1):
                    valid = result.valid_from + lead * HOUR
                    dataset = f"urn:ngsi-ld:Dataset:lead:PT{lead}H"
                    flows.append(_prop(round(q, 3), "MQS", valid, datasetId=dataset,
                                       issuedAt=issued))
                    stages.append(_prop(round(catchment.rating.level(q), 3), "MTR", valid,
                                        datasetId=dataset, issuedAt=issued))
                entity["forecastFlow"] = flows
                entity["forecastLevel"] = stages
                peak_index = int(np.argmax(report.forecast_m3s))
                peak_time = result.valid_from + (peak_index + 1) * HOUR
                entity["forecastPeak"] = _prop(
                    round(report.forecast_m3s[peak_index], 3), "MQS", now,
                    peakTime=_datetime(peak_time),
                    leadMinutes=_prop(max(0, round((peak_time - now).total_seconds() / 60))))
        await self._upsert(self.environment, entity)
        await self._write_alert(point, report, now)

    async def _write_alert(self, point: WarningPoint, report: PointReport,
                           now: datetime) -> None:
        level = report.level
        written = self.alert_levels.get(point.slug)
        if level == "green" and written in (None, "green"):
            return  # never alerted, or already closed
        if level == written:
            return
        raised = written in (None, "green") or rank(level) > rank(written or "green")
        known = [q for q in (report.observed_m3s, *report.forecast_m3s) if q is not None]
        peak = max(known) if known else None
        if level == "green":
            description = (f"Fin de vigilance crue — {point.name} ({point.commune}) : "
                           f"le débit est revenu sous les seuils.")
        else:
            threshold = point.thresholds.by_level()[level]
            peak_text = f"{peak:.1f} m³/s" if peak is not None else "inconnu"
            description = (
                f"Vigilance {LEVEL_FR[level]} crue — {point.name} ({point.commune}) : débit "
                f"observé ou prévu jusqu'à {peak_text} (seuil {LEVEL_FR[level]} {threshold:g} m³/s), "
                f"tendance {TREND_FR[report.trend]}, confiance {report.confidence:.0%}.")
        alert: Entity = {
            "id": point.alert_id, "type": "Alert",
            "name": _prop(f"Crue — {point.name}"),
            "category": _prop("weather"), "subCategory": _prop("flood"),
            "severity": _prop(SEVERITY[level]), "vigilanceLevel": _prop(level, at=now),
            "alertSource": {"type": "Relationship", "object": point.entity_id},
            "description": _prop(description), "dateIssued": _datetime(now),
            "domain": _prop("flood"), **self._common(point),
        }
        if level == "green":
            alert["validTo"] = _datetime(now)
        elif written in (None, "green"):  # a new episode: starts now, no end yet
            alert["validFrom"] = _datetime(now)
            alert["validTo"] = NULL
        if raised and level != "green":
            alert["workflowState"] = _prop("new", at=now)
        try:
            await self._upsert(self.alerts, alert)
        except Exception:
            if alert.get("validTo") != NULL:
                raise
            alert.pop("validTo")  # a broker without NGSI-LD null deletion
            await self._upsert(self.alerts, alert)
        self.alert_levels[point.slug] = level

    # --- running -------------------------------------------------------------------------------

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Cycle every ``cycle_interval_s`` until ``stop`` is set; a failed cycle is logged and
        the next one runs on time."""
        while not stop.is_set():
            try:
                report = self.last_report = await self.run_cycle()
                log.info("flood cycle %s: %s", _iso(report.issued_at),
                         {s: p.level for s, p in report.points.items()})
            except Exception:
                log.exception("flood cycle failed")
            self.cycle_done.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.cycle_interval_s)



# --- inside `cityvisor serve` / `demo` ---------------------------------------------------------


class RunningApp:
    """A background task running an app's ``run_forever``; ``close`` stops it."""

    def __init__(self, app: FloodApp) -> None:
        self.app = app
        self.stop = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(app.run_forever(self.stop),
                                                           name="cityvisor-flood")

    async def close(self) -> None:
        self.stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def start_in_server(services: Any, *, replay: Any = None) -> RunningApp:
    """Hook of ``Services.start`` (setting ``apps = ["flood"]``): the app on an in-process
    client, its config from ``flood_config`` (default: bundled Nîmes), radar GeoTIFFs from
    ``flood_radar_dir`` (optional), state in ``<data_dir>/apps/flood``.

    ``replay``: a started :class:`~cityvisor.apps.flood.replay.Flood2014Replay` (the demo's
    ``--scenario flood-2014``): the app then runs on the scenario clock and moved radar, cycles
    ``acceleration`` × more often, labels what it writes, and keeps its state in memory only
    (each replay is a new scenario; a restart must not resume a previous one).
    """
    from cityvisor.apps.flood.config import load_config
    from cityvisor.apps.flood.sources import FileRadarSource
    from cityvisor.client import LocalContextClient

    settings = services.settings
    config = replay.config if replay is not None else load_config(settings.flood_config)
    client = LocalContextClient(services.broker, tenant=config.tenant)
    if replay is not None:
        from cityvisor.apps.flood.replay import LABEL

        app = FloodApp(client, config, replay.radar_source(), replay.clock(utc_now),
                       data_dir=None, data_provider=LABEL,
                       cycle_interval_s=config.cycle_seconds / replay.acceleration)
        return RunningApp(app)
    radar = (FileRadarSource(settings.flood_radar_dir)
             if settings.flood_radar_dir is not None else None)
    app = FloodApp(client, config, radar, data_dir=settings.data_dir / "apps" / "flood")
    return RunningApp(app)
