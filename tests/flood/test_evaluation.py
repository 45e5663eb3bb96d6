"""`cityvisor flood evaluate`: score functions, the no-peeking replay, the CSV and the command."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from cityvisor.apps.flood import forecast as forecast_module
from cityvisor.apps.flood.algorithms import GR4HParams
from cityvisor.apps.flood.dataset import RadarArchive, Raster
from cityvisor.apps.flood.evaluation import (
    CSV_COLUMNS,
    peak_scores,
    run_evaluation,
    skill,
    warning_scores,
)
from cityvisor.apps.flood.forecast import ForecastModel, ObservedDischarge, prepare, replay

CANCE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "flood" / "cance"
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def cance() -> Path:
    if not (CANCE / "gauge_attributes.csv").is_file():
        pytest.fail(f"Cance data set not found at {CANCE} (read from the sibling shared/ folder)")
    return CANCE


# --- score functions against hand-computed values -----------------------------------------------


def test_skill() -> None:
    assert skill(0.9, 0.8) == pytest.approx(0.5)  # 1 - 0.1 / 0.2
    assert skill(0.8, 0.8) == pytest.approx(0.0)
    assert skill(0.6, 0.8) == pytest.approx(-1.0)


def test_peak_scores() -> None:
    observed = [1.0, 2.0, 10.0, 4.0, 1.0]
    forecast = [np.nan, 1.0, 3.0, 8.0, 2.0]
    scores = peak_scores(forecast, observed, window_h=2)
    assert scores is not None
    assert scores["observed_peak_index"] == 2
    assert scores["forecast_peak_m3s"] == 8.0
    assert scores["peak_error_pct"] == pytest.approx(-20.0)
    assert scores["timing_error_h"] == 1


def test_warning_scores() -> None:
    # Hours 0..11; threshold 5; the observation crosses at hour 4 and again at hour 10.
    observed = np.array([1, 1, 2, 3, 6, 7, 4, 2, 1, 1, 6, 2], dtype=float)
    forecasts = np.zeros((6, 6))
    forecasts[1, 2] = 5.5  # issued at 1 for hour 4: warns the crossing at 4, 3 h ahead
    forecasts[2, 1] = 6.0  # same episode (issue times 1-2)
    forecasts[5, 0] = 9.0  # a warning on at 5, within 6 h before the crossing at 10: warned
    scores = warning_scores(forecasts, observed, 5.0)
    assert scores["crossings"] == 2  # hours 4 and 10 (10 is within the last issue + 6 h)
    assert scores["warned"] == 2  # leads 4 - 1 = 3 h and 10 - 5 = 5 h
    assert scores["warning_episodes"] == 2
    assert scores["false_alarms"] == 0
    assert scores["pod"] == pytest.approx(1.0)
    assert scores["far"] == pytest.approx(0.0)
    assert scores["csi"] == pytest.approx(1.0)
    assert scores["median_warning_lead_min"] == pytest.approx(240.0)


def test_warning_scores_false_alarm_and_zero_lead() -> None:
    observed = np.array([1, 1, 1, 1, 6, 1, 1, 1, 1, 1, 1, 1, 1], dtype=float)
    forecasts = np.zeros((7, 6))
    forecasts[4, 0] = 7.0  # at the crossing hour itself: missed, and nothing above in 5..10
    forecasts[6, 0] = 7.0  # nothing above threshold in hours 7..12: a false alarm
    scores = warning_scores(forecasts, observed, 5.0)
    assert (scores["crossings"], scores["warned"]) == (1, 0)
    assert (scores["warning_episodes"], scores["false_alarms"]) == (2, 2)
    assert scores["pod"] == 0.0 and scores["far"] == pytest.approx(1.0)
    assert scores["csi"] == pytest.approx(0.0)
    assert scores["median_warning_lead_min"] is None


# --- no future data ---------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["persistence", "nowcast", "blend*0.5", "ensemble"])
def test_replay_never_reads_after_the_issue_time(cance: Path, monkeypatch: pytest.MonkeyPatch,
                                                 scenario: str) -> None:
    latest: dict[str, datetime] = {}

    def note(kind: str, hour: datetime) -> None:
        if kind not in latest or hour > latest[kind]:
            latest[kind] = hour

    class RecordingArchive(RadarArchive):
        def _check(self, hour: datetime) -> datetime:  # the guard is off: only record
            note("radar", hour)
            return hour

        def grid(self, hour: datetime) -> Raster | None:
            return super().grid(hour)

    original_at = ObservedDischarge.at

    def recording_at(self: ObservedDischarge, hour: datetime) -> float:
        note("discharge", hour)
        return original_at(self, hour)

    monkeypatch.setattr(ObservedDischarge, "at", recording_at)
    setup = prepare(cance)
    models = {
        g.code: ForecastModel(g.code, g.area_km2, GR4HParams(300.0, -0.5, 80.0, 3.0), 0.0,
                              (1.0,) * 6, scenario, {})
        for g in setup.gauges
    }
    start = datetime(2014, 10, 10, 6, tzinfo=UTC)
    until = start + 8 * HOUR
    seen = 0
    for issued in replay(setup, models, start, until, spin_up_from=start - 24 * HOUR,
                         archive_factory=RecordingArchive):
        issue_time = issued[0].issue_time
        assert {item.issue_time for item in issued} == {issue_time}
        assert latest["radar"] <= issue_time
        assert latest["discharge"] <= issue_time
        assert latest["radar"] == issue_time  # it does use the latest hour
        seen += 1
    assert seen == 9
    assert forecast_module.LEADS == 6


def test_observed_discharge_refuses_the_future() -> None:
    start = datetime(2014, 10, 1, tzinfo=UTC)
    source = ObservedDischarge(start, np.arange(10.0), until=start + 2 * HOUR)
    assert source.at(start + 2 * HOUR) == 2.0
    with pytest.raises(forecast_module.FutureDataError):
        source.at(start + 3 * HOUR)


# --- the CSV and the command -----------------------------------------------------------------


def test_forecasts_csv_columns_and_rows(cance: Path, tmp_path: Path) -> None:
    out = tmp_path / "forecasts.csv"
    result = run_evaluation(
        cance,
        datetime(2014, 10, 1, tzinfo=UTC), datetime(2014, 10, 5, 23, tzinfo=UTC),
        datetime(2014, 10, 10, 12, tzinfo=UTC), datetime(2014, 10, 10, 17, tzinfo=UTC),
        out, thresholds={"V3524010": 100.0}, max_evals=200,
    )
    with out.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS
    body = rows[1:]
    assert len(body) == 6 * 3 * 6  # issue times x gauges x leads
    keys = {(r[0], r[1], int(r[2])) for r in body}
    assert len(keys) == len(body)
    assert {r[0] for r in body} == {f"2014-10-10T{h:02d}:00:00Z" for h in range(12, 18)}
    assert {int(r[2]) for r in body} == set(range(1, 7))
    assert all(float(r[3]) >= 0 for r in body)
    assert result["issue_times"] == 6
    assert "warnings" in result["gauges"]["V3524010"]


def test_evaluate_command_on_real_data(cance: Path, tmp_path: Path) -> None:
    out, scores = tmp_path / "f.csv", tmp_path / "scores.json"
    command = [
        sys.executable, "-c", "from cityvisor.cli import main; main()", "flood", "evaluate", "--dataset", str(cance),
        "--train-from", "2014-09-28T00:00Z", "--train-until", "2014-10-05T23:00Z",
        "--test-from", "2014-10-10T00:00Z", "--test-until", "2014-10-12T23:00Z",
        "--forecasts-out", str(out), "--json", str(scores), "--threshold", "V3524010=100",
        "--max-evals", "200",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(scores.read_text())
    assert result["issue_times"] == 72
    lead = result["gauges"]["V3524010"]["leads"]["3"]
    for key in ("nse", "kge", "nse_persistence", "kge_persistence", "skill_vs_persistence"):
        assert isinstance(lead[key], float)
    assert lead["peak"]["observed_peak_m3s"] > 100
    warnings = result["gauges"]["V3524010"]["warnings"]["model"]
    assert set(warnings) >= {"pod", "far", "csi", "median_warning_lead_min"}
    assert len(out.read_text().splitlines()) == 1 + 72 * 3 * 6


def test_a_gauge_without_training_record_still_forecasts(cance: Path, tmp_path: Path) -> None:
    # A copy of the data set (links) whose 25 km² gauge lost its record before 6 October.
    root = tmp_path / "dataset"
    root.mkdir()
    for name in ("prcp", "pet", "France_flwdir.tif", "gauge_attributes.csv"):
        (root / name).symlink_to(cance / name)
    (root / "qobs").mkdir()
    for source in (cance / "qobs").glob("*.csv"):
        lines = source.read_text().splitlines()
        if source.stem == "V3517010":
            start = datetime.strptime(lines[0], "%Y%m%d%H%M").replace(tzinfo=UTC)
            cut = int((datetime(2014, 10, 6, tzinfo=UTC) - start) / HOUR)
            lines = [lines[0]] + ["-99.000"] * cut + lines[1 + cut :]
        (root / "qobs" / source.name).write_text("\n".join(lines) + "\n")
    out = tmp_path / "f.csv"
    result = run_evaluation(
        root,
        datetime(2014, 10, 1, tzinfo=UTC), datetime(2014, 10, 5, 23, tzinfo=UTC),
        datetime(2014, 10, 10, 12, tzinfo=UTC), datetime(2014, 10, 10, 17, tzinfo=UTC),
        out, max_evals=200,
    )
    entry = result["gauges"]["V3517010"]
    assert entry["calibration_score"] is None
    assert all(value is None for value in entry["training_mean_nse_by_scenario"].values())
    json.dumps(result, allow_nan=False)  # valid JSON, no NaN/Infinity
    rows = [r for r in csv.DictReader(out.open()) if r["gauge"] == "V3517010"]
    assert len(rows) == 6 * 6 and all(float(r["forecast_m3s"]) >= 0 for r in rows)


def test_unknown_gauge_or_missing_record_is_a_clear_error(cance: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not in gauge_attributes"):
        prepare(cance, ["V0000000"])
    root = tmp_path / "dataset"
    root.mkdir()
    for name in ("France_flwdir.tif", "gauge_attributes.csv"):
        (root / name).symlink_to(cance / name)
    with pytest.raises(ValueError, match="cannot read the discharge"):
        prepare(root)


# --- the experiments that stay off (docs/flood-models.md): they still run ---------------------


@pytest.mark.parametrize("per_lead", ["any", "damping"])
def test_per_lead_scenarios_and_small_basin_calibrations(
        cance: Path, monkeypatch: pytest.MonkeyPatch, per_lead: str) -> None:
    monkeypatch.setattr(forecast_module, "PER_LEAD_SCENARIO", per_lead)
    monkeypatch.setattr(forecast_module, "SMALL_BASIN_KM2", 150.0)
    setup = prepare(cance, ["V3515010"])  # 107 km²
    models = forecast_module.calibrate(setup, datetime(2014, 10, 1, tzinfo=UTC),
                                       datetime(2014, 10, 5, 23, tzinfo=UTC), max_evals=200)
    model = models["V3515010"]
    # four candidate calibrations scored on the training window; the best one is kept
    assert len(model.training_nse_by_calibration) == 4
    assert any("X4<=2.6h" in name for name in model.training_nse_by_calibration)
    best = max(model.training_nse_by_calibration.values())
    assert model.training_nse_by_calibration[model.calibration] == best
    if "X4" in model.calibration:
        assert model.params.x4_h <= 2.6
    scenarios = [model.scenario] * 6 if isinstance(model.scenario, str) else model.scenario
    assert len(scenarios) == 6
    assert set(scenarios) <= set(forecast_module.SCENARIOS)
    if per_lead == "damping":
        assert len({forecast_module.parse_scenario(s)[0] for s in scenarios}) == 1
    if not isinstance(model.scenario, str):
        # leads chosen one by one never score below the best single scenario on training
        single = max(v for k, v in model.training_nse_by_scenario.items() if k != "per lead")
        assert model.training_nse_by_scenario["per lead"] >= single - 1e-9
    # the replay runs the per-lead model
    start = datetime(2014, 10, 10, 6, tzinfo=UTC)
    issued = list(replay(setup, models, start, start + 2 * HOUR, spin_up_from=start - 12 * HOUR))
    assert len(issued) == 3 and all(np.all(item[0].forecast_m3s >= 0) for item in issued)


def test_compose_takes_each_lead_from_its_scenario() -> None:
    def run(value: float) -> forecast_module._TrainingRun:
        return forecast_module._TrainingRun(
            errors=np.zeros(2), ages=np.zeros(2, dtype=np.int64), raw=np.full((2, 6), value),
            persistence=np.zeros(2), target=np.zeros((2, 6)))

    runs = {"zero": run(0.0), "blend": run(1.0)}
    mixed = forecast_module._compose(runs, ("zero",) * 3 + ("blend",) * 3)
    assert mixed.raw[0].tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert forecast_module._compose(runs, ("blend",) * 6) is runs["blend"]


def test_the_ensemble_candidate_is_scored_on_training_and_kept_only_if_it_wins(
        cance: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setup = prepare(cance, ["V3517010"])  # 25 km²
    window = (datetime(2014, 10, 1, tzinfo=UTC), datetime(2014, 10, 5, 23, tzinfo=UTC))
    off = forecast_module.calibrate(setup, *window, max_evals=200)["V3517010"]
    assert "ensemble" not in off.training_nse_by_scenario  # off by default
    monkeypatch.setattr(forecast_module, "ENSEMBLE_CANDIDATE", True)
    on = forecast_module.calibrate(setup, *window, max_evals=200)["V3517010"]
    scores = on.training_nse_by_scenario
    assert set(scores) == set(forecast_module.SCENARIOS)
    assert np.isfinite(scores["ensemble"])
    # the choice is the training argmax; without the ensemble it is what the "off" run chose
    assert scores[str(on.scenario)] == max(scores.values())
    if on.scenario != "ensemble":
        assert on.scenario == off.scenario and on.gains == off.gains
    else:
        assert scores["ensemble"] > max(v for k, v in scores.items() if k != "ensemble")
