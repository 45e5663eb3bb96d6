"""`cityvisor flood evaluate`: score functions, the CSV and the command."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from cityvisor.apps.flood.evaluation import (
    CSV_COLUMNS,
    peak_scores,
    run_evaluation,
    skill,
    warning_scores,
)

HOUR = timedelta(hours=1)


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
