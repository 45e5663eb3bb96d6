"""One flood cycle: observations in, warnings out (:class:`FloodCoordinator`).

Each cycle (:meth:`FloodCoordinator.run_cycle`):

1. reads the rain gauges (``WeatherObserved.precipitation``: mm over the hour ending at its
   ``observedAt``) and water-level gauges (``FloodMonitoring.currentLevel``, converted to
   discharge with the catchment's rating curve) through the :class:`ContextClient`, and checks
   each reading (missing, invalid/NaN, out of range, stale, stuck);
2. reads the last radar frames from its :class:`~cityvisor.apps.flood.sources.RadarSource`;
3. builds basin rainfall per catchment (:mod:`.rainfall`): radar mean over the catchment cells,
   scaled by a mean-field bias from the gauges; the gauges' mean where the radar frame is
   missing;
4. steps each catchment's :class:`~cityvisor.apps.flood.forecaster.CatchmentForecaster` for every
   whole hour since the last step (the outlet gauge's discharge updates its state), nowcasts the
   radar 6 h ahead (without radar, the last hour of gauge rain decaying to 0 over 3 h), turns
   that into the catchment's ``future_rain`` scenario (default ``blend*0.5``: half the mean of
   the nowcast and the last hour's rain) and forecasts discharge for leads 1..6 h after the
   last whole hour, with the catchment's output-error correction ``gains``;
5. derives each warning point's vigilance with hysteresis (:mod:`.vigilance`) and trend;
6. writes the warning points (``FloodMonitoring``) and their ``Alert``
   (:mod:`.entities`), then saves its state (:mod:`.state`) so a restart resumes.

Failures: every source of a cycle (the broker, read or written; the radar; the radar nowcast;
a catchment's model) reports its failure as one :class:`FloodUpdateFailed`. The cycle goes on
without that source: a bad gauge or a radar gap lowers ``confidence`` and is listed in
``confidenceIssues``, a failed catchment gives its points confidence 0, a failed write is
reported, and the :class:`~cityvisor.apps.flood.models.CycleReport` lists every failure.
"""

from __future__ import annotations

import contextlib
import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from cityvisor.apps.flood.config import Catchment, FloodConfig, WarningPoint, is_finite
from cityvisor.apps.flood.const import (
    LIVE_PROVIDER,
    LOG,
    MAX_CATCH_UP_H,
    QUERY_CHUNK,
    SDM_ALERT,
    SDM_ENVIRONMENT,
    SDM_WEATHER,
)
from cityvisor.apps.flood.entities import alert_entity, monitoring_entity
from cityvisor.apps.flood.forecaster import future_rain
from cityvisor.apps.flood.hours import HOUR, hour_floor
from cityvisor.apps.flood.models import (
    CatchmentResult,
    Clock,
    CycleReport,
    Entity,
    PointReport,
    Reading,
)
from cityvisor.apps.flood.nowcast import FRAMES as NOWCAST_FRAMES
from cityvisor.apps.flood.rainfall import BasinRainfall, NowcastGrids, gauge_bias, nowcast_grids
from cityvisor.apps.flood.sources import NoRadar, RadarFrame, RadarSource
from cityvisor.apps.flood.state import STATE_FILE, FloodState, load_state, save_state
from cityvisor.apps.flood.vigilance import VigilanceState, trend, update
from cityvisor.client import ContextClient
from cityvisor.ngsild.errors import NgsiLdError, NonexistentTenant, ResourceNotFound
from cityvisor.ngsild.model import NULL
from cityvisor.ngsild.time import format_utc_seconds, parse_utc_or_none, utc_now

__all__ = ["CLIENT_ERRORS", "MODEL_ERRORS", "RADAR_ERRORS", "FloodCoordinator",
           "FloodUpdateFailed"]

#: what a ContextClient raises when the broker refuses a request or cannot be reached
#: (``NgsiLdError`` for a ProblemDetails answer, ``ConnectionError``/``TimeoutError``, both
#: ``OSError``, for the network, ``ValueError`` for a body that is not JSON)
CLIENT_ERRORS: tuple[type[Exception], ...] = (NgsiLdError, OSError, ValueError)
#: what a RadarSource raises when a frame cannot be read (a file, a decoder, a frame after the
#: scenario time: ``FutureDataError`` is a ``LookupError``)
RADAR_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, LookupError)
#: what the model code raises on inputs it cannot use (hours that do not move forward, grids
#: of another shape, arithmetic out of range)
MODEL_ERRORS: tuple[type[Exception], ...] = (ValueError, ArithmeticError)


class FloodUpdateFailed(Exception):
    """One source of a cycle failed: reading the gauges, reading the radar, the nowcast, a
    catchment's model, or a write. The message says which, in French, as the cycle report and
    the points' ``confidenceIssues`` show it; ``__cause__`` is the original error."""


def local_hm(when: datetime) -> str:
    """``when`` as ``HH:MM`` in Nîmes' time (in UTC, said so, without a time zone database)."""
    try:
        return when.astimezone(ZoneInfo("Europe/Paris")).strftime("%H:%M")
    except ZoneInfoNotFoundError:
        return when.astimezone(UTC).strftime("%H:%M UTC")


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


class FloodCoordinator:
    """Runs the flood cycle (see the module docstring) against one tenant.

    ``client``: any :class:`ContextClient` on the app's tenant (its @context does not matter:
    the coordinator derives one client per Smart Data Models domain with ``with_context``);
    ``radar``: a radar source (None: gauges only); ``clock``: returns the current time (the
    storm scenario passes its scenario clock); ``data_dir``: where the state JSON is kept
    (None: in memory only); ``data_provider``: written as ``dataProvider`` on every entity.
    """

    def __init__(self, client: ContextClient, config: FloodConfig,
                 radar: RadarSource | None = None, clock: Clock = utc_now, *,
                 data_dir: str | Path | None = None,
                 data_provider: str = LIVE_PROVIDER) -> None:
        self.config = config
        self.radar: RadarSource = radar if radar is not None else NoRadar()
        self.has_radar = radar is not None and not isinstance(radar, NoRadar)
        self.clock = clock
        self.data_provider = data_provider
        self.weather = client.with_context(SDM_WEATHER)
        self.environment = client.with_context(SDM_ENVIRONMENT)
        self.alerts = client.with_context(SDM_ALERT)
        self.state_path = Path(data_dir) / STATE_FILE if data_dir is not None else None
        self.state: FloodState = load_state(self.state_path, config)
        self.rainfall = BasinRainfall()

    def save_state(self) -> None:
        """Write the state file (nothing without ``data_dir``); OSError if it cannot."""
        if self.state_path is not None:
            save_state(self.state_path, self.state)

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
        rain_entities = await self._read_or_report(
            self.weather, rain_ids, "precipitation,location,stationID", report)
        level_entities = await self._read_or_report(
            self.environment, level_ids, "currentLevel,stationID", report)
        rain = {g: self._check(g, "pluviomètre", rain_entities.get(g), "precipitation",
                               now, config.quality.max_rain_mm_per_h) for g in rain_ids}
        levels = {g: self._check(g, "limnimètre", level_entities.get(g), "currentLevel",
                                 now, config.quality.max_level_m) for g in level_ids}

        frames: dict[datetime, RadarFrame] = {}
        radar_issue: str | None = None
        if self.has_radar:
            try:
                frames = self._read_radar(hour)
            except FloodUpdateFailed as error:
                radar_issue = str(error)
                report.errors.append(radar_issue)
            missing = [h for h in sorted(frames) if frames[h].values is None
                       and h > hour - NOWCAST_FRAMES * HOUR]
            if missing and radar_issue is None:
                radar_issue = "lacune radar " + ", ".join(local_hm(h) for h in missing)
            report.radar_frames = sum(1 for f in frames.values() if f.values is not None)
        report.bias = gauge_bias(frames.get(hour), rain)
        future_grids: NowcastGrids | None = None
        try:
            future_grids = self._nowcast(frames, hour)
        except FloodUpdateFailed as error:
            report.errors.append(str(error))

        results: dict[str, CatchmentResult] = {}
        for catchment in config.catchments:
            points = config.points_of(catchment.id)
            try:
                result = self._forecast(catchment, hour, rain, levels, frames, report.bias,
                                        future_grids, radar_issue)
            except FloodUpdateFailed as failure:
                cause = failure.__cause__ or failure
                LOG.error("flood: catchment %s failed: %s", catchment.id, cause, exc_info=cause)
                report.errors.append(f"{catchment.id}: {cause!r}")
                for point in points:
                    previous = self.state.vigilance.get(point.slug, VigilanceState())
                    report.points[point.slug] = PointReport(
                        point.slug, previous.level, previous.level, None, [], "steady", 0.0,
                        [f"calcul impossible : {cause}"], error=repr(cause))
                continue
            results[catchment.id] = result
            for point in points:
                report.points[point.slug] = self._decide(point, result)
        for point in config.points:
            point_report = report.points[point.slug]
            try:
                await self._write(point, point_report, now, results.get(point.catchment))
                point_report.written = True
            except FloodUpdateFailed as error:
                LOG.warning("flood: writing %s failed: %s", point.slug, error)
                report.errors.append(f"écriture {point.slug} : {error}")
        try:
            self.save_state()
        except OSError as error:
            report.errors.append(f"état non sauvegardé : {error}")
        report.duration_s = time.perf_counter() - started
        return report

    # --- reading --------------------------------------------------------------------------------

    async def _read_or_report(self, client: ContextClient, ids: list[str], attrs: str,
                              report: CycleReport) -> dict[str, Entity]:
        """The gauges ``ids`` by id; none when the broker fails (every gauge is then missing
        this cycle, and the report says why)."""
        try:
            return await self.read_gauges(client, ids, attrs)
        except FloodUpdateFailed as error:
            LOG.warning("flood: reading gauges failed: %s", error.__cause__)
            report.errors.append(str(error))
            return {}

    async def read_gauges(self, client: ContextClient, ids: list[str],
                          attrs: str) -> dict[str, Entity]:
        """The entities ``ids`` (those that exist), by id; FloodUpdateFailed if the broker
        fails. An empty tenant holds none of them."""
        found: list[Entity] = []
        try:
            for start in range(0, len(ids), QUERY_CHUNK):  # bounded URLs and result pages
                chunk = ids[start:start + QUERY_CHUNK]
                found += await client.query_entities(id=",".join(chunk), attrs=attrs,
                                                     limit=len(chunk))
        except NonexistentTenant:
            return {}
        except CLIENT_ERRORS as error:
            raise FloodUpdateFailed(f"lecture des capteurs impossible : {error}") from error
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
        raw = instance.get("value")
        observed_at = parse_utc_or_none(instance.get("observedAt"))
        if isinstance(raw, str):
            with contextlib.suppress(ValueError):
                raw = float(raw)  # "NaN" strings become NaN, then rejected below
        if not is_finite(raw):
            return Reading(gauge_id, None, observed_at, f"{label} : valeur invalide ({raw!r})",
                           location)
        value = float(raw)
        if not 0.0 <= value <= upper:
            return Reading(gauge_id, None, observed_at,
                           f"{label} : valeur hors plage ({value:g})", location)
        if observed_at is not None and now - observed_at > quality.max_age:
            return Reading(gauge_id, None, observed_at,
                           f"{label} : pas de mesure depuis {local_hm(observed_at)}", location)
        stamp = observed_at or now
        history = self.state.gauges.get(gauge_id)
        if history is None or history.get("value") != value:
            history = {"value": value, "since": format_utc_seconds(stamp), "rain_mm": 0.0}
            self.state.gauges[gauge_id] = history
        since = parse_utc_or_none(history.get("since")) or stamp
        unchanged = stamp - since
        stuck_for = timedelta(hours=quality.stuck_after_hours)
        rain = float(history.get("rain_mm", 0.0))
        stuck_nonzero_rain = kind == "pluviomètre" and value > 0 and unchanged >= stuck_for
        if unchanged >= stuck_for and (rain >= quality.stuck_rain_mm or stuck_nonzero_rain):
            hours = unchanged.total_seconds() / 3600
            return Reading(gauge_id, None, observed_at,
                           f"{label} bloqué : {value:g} depuis {hours:.1f} h", location)
        return Reading(gauge_id, value, observed_at, None, location)

    def _read_radar(self, hour: datetime) -> dict[datetime, RadarFrame]:
        """The radar frames up to ``hour`` that a cycle needs (catch-up and nowcast), by hour."""
        try:
            return {frame.hour: frame
                    for frame in self.radar.frames(hour, max(MAX_CATCH_UP_H, NOWCAST_FRAMES))}
        except RADAR_ERRORS as error:
            raise FloodUpdateFailed(f"radar indisponible : {error}") from error

    def _nowcast(self, frames: dict[datetime, RadarFrame], hour: datetime) -> NowcastGrids | None:
        """Rain grids for the next hours (None without a current frame)."""
        try:
            return nowcast_grids(frames, hour, self.config.leads_h)
        except MODEL_ERRORS as error:
            raise FloodUpdateFailed(f"prévision radar impossible : {error}") from error

    # --- the models -----------------------------------------------------------------------------

    def _forecast(self, catchment: Catchment, hour: datetime, rain: dict[str, Reading],
                  levels: dict[str, Reading], frames: dict[datetime, RadarFrame], bias: float,
                  future_grids: NowcastGrids | None,
                  radar_issue: str | None) -> CatchmentResult:
        """Step a catchment's model up to ``hour`` and forecast; FloodUpdateFailed if its
        model cannot run on these inputs."""
        try:
            return self._run_model(catchment, hour, rain, levels, frames, bias, future_grids,
                                   radar_issue)
        except MODEL_ERRORS as error:
            raise FloodUpdateFailed(f"calcul impossible : {error}") from error

    def _run_model(self, catchment: Catchment, hour: datetime, rain: dict[str, Reading],
                   levels: dict[str, Reading], frames: dict[datetime, RadarFrame], bias: float,
                   future_grids: NowcastGrids | None,
                   radar_issue: str | None) -> CatchmentResult:
        forecaster = self.state.forecasters[catchment.id]
        gauges = self.state.gauges
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
            radar_rain = self.rainfall.radar_rain(catchment, frames.get(step_hour), bias)
            if step_hour == hour:
                step_rain = radar_rain if math.isfinite(radar_rain) else gauge_rain
                current_rain = step_rain
                step_observed = observed
            else:
                step_rain, step_observed = radar_rain, None
            forecaster.step(step_hour, step_rain, catchment.pet_mm_per_h, step_observed)
            if math.isfinite(step_rain):
                for gauge in [*catchment.rain_gauges, *catchment.level_gauges]:
                    if gauge in gauges:
                        gauges[gauge]["rain_mm"] = (
                            float(gauges[gauge].get("rain_mm", 0.0)) + step_rain)
        if steps and not math.isfinite(current_rain):
            issues.append("aucune pluie mesurée sur le bassin")
            confidence *= 0.5

        leads = self.config.leads_h
        last_rain = current_rain if math.isfinite(current_rain) else (
            gauge_rain if math.isfinite(gauge_rain) else 0.0)
        nowcast_rain: list[float] | None = None
        if future_grids is not None:
            nowcast_rain = self.rainfall.nowcast_rain(catchment, future_grids, bias, leads)
            if nowcast_rain is None:
                issues.append("bassin hors de la couverture radar")
                confidence *= 0.8
        if nowcast_rain is None:
            # No radar nowcast: the last hour's rain, decaying to nothing over 3 h.
            nowcast_rain = [last_rain * max(0.0, 1.0 - k / 3.0) for k in range(leads)]
        # The catchment's scenario (damped blend by default, as chosen by the evaluation).
        future = future_rain(catchment.future_rain, last_rain, nowcast_rain)
        forecast = forecaster.forecast(future, catchment.pet_mm_per_h)[:leads]
        return CatchmentResult(
            observed_m3s=observed,
            observed_at=outlet_reading.observed_at if outlet_reading else None,
            observed_level_m=observed_level,
            forecast_m3s=[float(v) for v in forecast],
            valid_from=forecaster.last_hour or hour,
            confidence=round(max(0.0, min(1.0, confidence)), 2), issues=issues)

    def _decide(self, point: WarningPoint, result: CatchmentResult) -> PointReport:
        share = point.discharge_share
        observed = result.observed_m3s * share if result.observed_m3s is not None else None
        forecast = [q * share for q in result.forecast_m3s]
        previous = self.state.vigilance.get(point.slug, VigilanceState())
        state = update(previous, observed, forecast, point.thresholds, self.config.hysteresis)
        self.state.vigilance[point.slug] = state
        return PointReport(point.slug, state.level, previous.level, observed, forecast,
                           trend(observed, forecast, self.config.hysteresis),
                           result.confidence, list(result.issues))

    # --- writing --------------------------------------------------------------------------------

    async def _write(self, point: WarningPoint, report: PointReport, now: datetime,
                     result: CatchmentResult | None) -> None:
        catchment = self.config.catchment(point.catchment)
        await self.upsert(self.environment, monitoring_entity(
            point, catchment, report, result, now, self.data_provider))
        written = self.state.alert_levels.get(point.slug)
        alert = alert_entity(point, report, now, written, self.data_provider)
        if alert is None:
            return
        try:
            await self.upsert(self.alerts, alert)
        except FloodUpdateFailed:
            if alert.get("validTo") != NULL:
                raise
            alert.pop("validTo")  # a broker without NGSI-LD null deletion
            await self.upsert(self.alerts, alert)
        self.state.alert_levels[point.slug] = report.level

    @staticmethod
    async def upsert(client: ContextClient, entity: Entity) -> None:
        """Merge ``entity`` into the broker, or create it the first time; FloodUpdateFailed if
        the broker refuses or cannot be reached."""
        fragment = {k: v for k, v in entity.items() if k not in ("id", "type")}
        try:
            try:
                await client.merge_entity(entity["id"], fragment)
            except (ResourceNotFound, NonexistentTenant):  # first write: nothing to delete yet
                await client.create_entity({k: v for k, v in entity.items() if v != NULL})
        except CLIENT_ERRORS as error:
            raise FloodUpdateFailed(str(error)) from error
