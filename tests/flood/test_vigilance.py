"""Vigilance levels: raised at once, lowered only after calm cycles below the margin."""

from __future__ import annotations

import math

import pytest

from cityvisor.apps.flood.config import Hysteresis, Thresholds
from cityvisor.apps.flood.vigilance import VigilanceState, level_for, trend, update

T = Thresholds(yellow_m3s=10, orange_m3s=20, red_m3s=40)
H = Hysteresis(margin=0.2, cycles=3, trend_relative=0.1, trend_absolute_m3s=0.5)


def test_level_for_thresholds() -> None:
    assert [level_for(v, T) for v in (None, math.nan, 9.9, 10, 25, 40, 400)] == [
        "green", "green", "green", "yellow", "orange", "red", "red"]


def test_raised_at_once_by_a_forecast_within_the_horizon() -> None:
    state = update(None, 2.0, [3.0, 5.0, 12.0, 45.0, 30.0, 9.0], T, H)
    assert (state.level, state.changed, state.raised) == ("red", True, True)


def test_not_lowered_inside_the_margin_nor_before_n_cycles() -> None:
    state = VigilanceState("orange")
    for _ in range(10):  # 17 m³/s: below orange (20) but above 20 × 0.8 = 16
        state = update(state, 17.0, [17.0], T, H)
        assert state.level == "orange" and state.calm_cycles == 0
    levels = []
    for _ in range(3):
        state = update(state, 12.0, [11.0], T, H)
        levels.append(state.level)
    assert levels == ["orange", "orange", "yellow"] and state.changed and not state.raised


def test_a_wiggle_restarts_the_countdown() -> None:
    state = VigilanceState("yellow")
    state = update(state, 5.0, [5.0], T, H)
    state = update(state, 5.0, [5.0], T, H)
    state = update(state, 9.0, [9.0], T, H)  # back inside the margin (> 8)
    assert state.calm_cycles == 0
    for _ in range(2):
        state = update(state, 5.0, [5.0], T, H)
    assert state.level == "yellow"
    state = update(state, 5.0, [5.0], T, H)
    assert state.level == "green"


def test_a_fast_recession_drops_several_levels_at_once() -> None:
    state = VigilanceState("red")
    for _ in range(3):
        state = update(state, 1.0, [1.0], T, H)
    assert state.level == "green"


def test_no_data_keeps_the_level() -> None:
    state = update(VigilanceState("orange", 2), None, [math.nan], T, H)
    assert state == VigilanceState("orange", 2)


@pytest.mark.parametrize(("observed", "forecast", "expected"), [
    (10.0, [11.0, 12.0, 14.0], "rising"),
    (10.0, [10.2, 10.4, 10.5], "steady"),
    (10.0, [9.0, 7.0, 6.0], "falling"),
    (None, [1.0, 3.0, 6.0], "rising"),
    (0.1, [0.3, 0.4, 0.5], "steady"),  # below the absolute tolerance
])
def test_trend(observed: float | None, forecast: list[float], expected: str) -> None:
    assert trend(observed, forecast, H) == expected


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="yellow < orange < red"):
        Thresholds(yellow_m3s=10, orange_m3s=5, red_m3s=40)
