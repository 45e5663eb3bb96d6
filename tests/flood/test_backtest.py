"""The back-test of `cityvisor flood evaluate`: it never reads after the issue time, and the
experiments that stay off still run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from cityvisor.apps.flood import backtest as backtest_module
from cityvisor.apps.flood.algorithms import GR4HParams
from cityvisor.apps.flood.backtest import ForecastModel, backtest, prepare_backtest
from cityvisor.apps.flood.dataset import ObservedDischarge, RadarArchive, Raster
from cityvisor.apps.flood.forecaster import LEADS, SCENARIOS, parse_scenario

HOUR = timedelta(hours=1)


# --- no future data ---------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["persistence", "nowcast", "blend*0.5", "ensemble"])
def test_the_backtest_never_reads_after_the_issue_time(cance: Path, monkeypatch: pytest.MonkeyPatch,
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
    setup = prepare_backtest(cance)
    models = {
        g.code: ForecastModel(g.code, g.area_km2, GR4HParams(300.0, -0.5, 80.0, 3.0), 0.0,
                              (1.0,) * 6, scenario, {})
        for g in setup.gauges
    }
    start = datetime(2014, 10, 10, 6, tzinfo=UTC)
    until = start + 8 * HOUR
    seen = 0
    for issued in backtest(setup, models, start, until, spin_up_from=start - 24 * HOUR,
                         archive_factory=RecordingArchive):
        issue_time = issued[0].issue_time
        assert {item.issue_time for item in issued} == {issue_time}
        assert latest["radar"] <= issue_time
        assert latest["discharge"] <= issue_time
        assert latest["radar"] == issue_time  # it does use the latest hour
        seen += 1
    assert seen == 9
    assert LEADS == 6


def test_unknown_gauge_or_missing_record_is_a_clear_error(cance: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not in gauge_attributes"):
        prepare_backtest(cance, ["V0000000"])
    root = tmp_path / "dataset"
    root.mkdir()
    for name in ("France_flwdir.tif", "gauge_attributes.csv"):
        (root / name).symlink_to(cance / name)
    with pytest.raises(ValueError, match="cannot read the discharge"):
        prepare_backtest(root)


# --- the experiments that stay off (docs/flood-models.md): they still run ---------------------


@pytest.mark.parametrize("per_lead", ["any", "damping"])
def test_per_lead_scenarios_and_small_basin_calibrations(
        cance: Path, monkeypatch: pytest.MonkeyPatch, per_lead: str) -> None:
    monkeypatch.setattr(backtest_module, "PER_LEAD_SCENARIO", per_lead)
    monkeypatch.setattr(backtest_module, "SMALL_BASIN_KM2", 150.0)
    setup = prepare_backtest(cance, ["V3515010"])  # 107 km²
    models = backtest_module.train_forecast_models(setup, datetime(2014, 10, 1, tzinfo=UTC),
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
    assert set(scenarios) <= set(SCENARIOS)
    if per_lead == "damping":
        assert len({parse_scenario(s)[0] for s in scenarios}) == 1
    if not isinstance(model.scenario, str):
        # leads chosen one by one never score below the best single scenario on training
        single = max(v for k, v in model.training_nse_by_scenario.items() if k != "per lead")
        assert model.training_nse_by_scenario["per lead"] >= single - 1e-9
    # the back-test runs the per-lead model
    start = datetime(2014, 10, 10, 6, tzinfo=UTC)
    issued = list(backtest(setup, models, start, start + 2 * HOUR, spin_up_from=start - 12 * HOUR))
    assert len(issued) == 3 and all(np.all(item[0].forecast_m3s >= 0) for item in issued)


def test_compose_takes_each_lead_from_its_scenario() -> None:
    def run(value: float) -> backtest_module._TrainingRun:
        return backtest_module._TrainingRun(
            errors=np.zeros(2), ages=np.zeros(2, dtype=np.int64), raw=np.full((2, 6), value),
            persistence=np.zeros(2), target=np.zeros((2, 6)))

    runs = {"zero": run(0.0), "blend": run(1.0)}
    mixed = backtest_module._compose(runs, ("zero",) * 3 + ("blend",) * 3)
    assert mixed.raw[0].tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert backtest_module._compose(runs, ("blend",) * 6) is runs["blend"]


def test_the_ensemble_candidate_is_scored_on_training_and_kept_only_if_it_wins(
        cance: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setup = prepare_backtest(cance, ["V3517010"])  # 25 km²
    window = (datetime(2014, 10, 1, tzinfo=UTC), datetime(2014, 10, 5, 23, tzinfo=UTC))
    off = backtest_module.train_forecast_models(setup, *window, max_evals=200)["V3517010"]
    assert "ensemble" not in off.training_nse_by_scenario  # off by default
    monkeypatch.setattr(backtest_module, "ENSEMBLE_CANDIDATE", True)
    on = backtest_module.train_forecast_models(setup, *window, max_evals=200)["V3517010"]
    scores = on.training_nse_by_scenario
    assert set(scores) == set(SCENARIOS)
    assert np.isfinite(scores["ensemble"])
    # the choice is the training argmax; without the ensemble it is what the "off" run chose
    assert scores[str(on.scenario)] == max(scores.values())
    if on.scenario != "ensemble":
        assert on.scenario == off.scenario and on.gains == off.gains
    else:
        assert scores["ensemble"] > max(v for k, v in scores.items() if k != "ensemble")
