"""Choosing lambda on calibration rows: the chosen outcome is kept with a margin."""

from __future__ import annotations

import pytest

from podium.routing.calibrate import Setting, middle_lam


def settings(outcomes: list[tuple[float, float]]) -> list[Setting]:
    lams = [0.0, 1.0, 10.0, 100.0, 1000.0, 10000.0][: len(outcomes)]
    return [Setting(lam, q, c) for lam, (q, c) in zip(lams, outcomes, strict=True)]


def test_lambda_is_the_middle_of_the_run_with_the_chosen_outcome() -> None:
    grid = settings([(0.9, 5.0), (0.9, 5.0), (0.8, 3.0), (0.8, 3.0), (0.8, 3.0), (0.5, 1.0)])
    # 10..1000 all give (0.8, 3.0): not the edge at 1000, where one question more tips it
    assert middle_lam(grid, grid[4]) == pytest.approx(100.0)


def test_an_outcome_reached_at_lambda_zero_needs_no_trade_off() -> None:
    grid = settings([(0.9, 5.0), (0.9, 5.0), (0.8, 3.0)])
    assert middle_lam(grid, grid[1]) == 0.0


def test_an_outcome_that_lasts_past_the_grid_keeps_the_largest_lambda() -> None:
    grid = settings([(0.9, 5.0), (0.5, 1.0), (0.5, 1.0)])
    assert middle_lam(grid, grid[1]) == 10.0
