"""Flood forecasts: how much of the error is the rain forecast's? (a diagnostic)

    .venv/bin/python benchmarks/flood_rain_ceiling.py                 # split A and B
    .venv/bin/python benchmarks/flood_rain_ceiling.py --split A --gauge V3515010

Trains exactly as ``cityvisor flood evaluate`` does (training window only), then back-tests the
test window three times with the same live forecaster, state updating and gains, changing only
the rain assumed for the next 6 hours:

* ``chosen``: the future-rain scenario chosen on training (what the evaluation scores);
* ``observed``: the rain that actually fell over the basin in the next 6 hours. **Not a
  forecast**: it reads the radar after the issue time on purpose, to give the skill a perfect
  rain forecast would reach with this model (the rain-forecast ceiling);
* ``zero``: no more rain.

Skill against persistence per lead, ``1 - (1 - NSE) / (1 - NSE_persistence)``, one JSON line
per split and gauge. Where ``observed`` is far above ``chosen``, better rain forecasts would
pay; where ``observed`` is itself low, the model (its calibration on one storm) is at fault.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from cityvisor.apps.flood.algorithms import nse
from cityvisor.apps.flood.backtest import (
    MAX_WARMUP_H,
    _Forcing,
    _hours,
    prepare_backtest,
    train_forecast_models,
)
from cityvisor.apps.flood.dataset import HOUR, ObservedDischarge, RadarArchive
from cityvisor.apps.flood.evaluation import skill
from cityvisor.apps.flood.forecaster import LEADS, future_rain

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "flood" / "cance"


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


#: The two splits of docs/flood-models.md: train, then test (first and last issue time).
SPLITS = {
    "A": (_t("2014-09-15T00:00"), _t("2014-10-11T23:00"),
          _t("2014-10-12T00:00"), _t("2014-10-31T17:00")),
    "B": (_t("2014-10-12T00:00"), _t("2014-10-31T23:00"),
          _t("2014-09-16T00:00"), _t("2014-10-11T17:00")),
}


def run_split(root: Path, name: str, gauges: list[str] | None) -> list[dict[str, object]]:
    train_from, train_until, test_from, test_until = SPLITS[name]
    setup = prepare_backtest(root, gauges)
    models = train_forecast_models(setup, train_from, train_until)
    warmup = min(MAX_WARMUP_H, int((train_until - train_from) / HOUR) // 3)
    spin_up = train_from if train_until < test_from else test_from - warmup * HOUR
    hours = _hours(spin_up, test_until + LEADS * HOUR)
    # Every grid up to 6 h after the last issue time, read up front (the diagnostic's point).
    forcing = _Forcing(RadarArchive(setup.root, hours[-1]), setup.masks)
    rain: dict[str, list[float]] = {g.code: [] for g in setup.gauges}
    pet: dict[str, list[float]] = {g.code: [] for g in setup.gauges}
    nowcasts: dict[str, list[np.ndarray]] = {g.code: [] for g in setup.gauges}
    first = hours.index(test_from)
    last = hours.index(test_until)
    for i, hour in enumerate(hours):
        r, p = forcing.hour(hour)
        # nowcasts are only used from the first issue time on
        n = forcing.nowcast_rain() if i >= first else dict.fromkeys(rain, np.zeros(LEADS))
        for code in rain:
            rain[code].append(r[code])
            pet[code].append(p[code])
            nowcasts[code].append(n[code])
    out = []
    for gauge in setup.gauges:
        code = gauge.code
        model = models[code]
        source = ObservedDischarge(*setup.discharge[code], until=hours[-1])
        q = np.array([source.at(h) for h in hours])
        r = np.nan_to_num(np.array(rain[code]))
        ways: dict[str, Callable[[int], np.ndarray]] = {
            "chosen": lambda i, c=code, s=model.scenario: future_rain(
                s, rain[c][i], nowcasts[c][i]),
            "observed": lambda i, r=r: r[i + 1 : i + 1 + LEADS],
            "zero": lambda i: np.zeros(LEADS),
        }
        result: dict[str, object] = {"split": name, "gauge": code,
                                     "future_rain": model.scenario}
        # One run: the state does not depend on the rain assumed for the next hours.
        forecaster = model.forecaster()
        issued: dict[str, list[np.ndarray]] = {way: [] for way in ways}
        for i, hour in enumerate(hours[: last + 1]):
            forecaster.step(hour, rain[code][i], pet[code][i], q[i])
            if i >= first:
                for way, rain_for in ways.items():
                    issued[way].append(forecaster.forecast(rain_for(i), pet[code][i]))
        for way in ways:
            fc = np.array(issued[way])
            skills = []
            for lead in range(1, LEADS + 1):
                target = q[first + lead : last + 1 + lead]
                now = q[first : last + 1]
                ok = np.isfinite(target) & np.isfinite(now)
                skills.append(round(skill(nse(fc[ok, lead - 1], target[ok]),
                                          nse(now[ok], target[ok])), 3))
            result[way] = skills
        out.append(result)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, default=DATA)
    parser.add_argument("--split", choices=sorted(SPLITS), action="append")
    parser.add_argument("--gauge", action="append", help="gauge code (default: all)")
    args = parser.parse_args()
    for name in args.split or sorted(SPLITS):
        for line in run_split(args.dataset, name, args.gauge):
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
