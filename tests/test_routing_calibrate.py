"""Choosing lambda and the floor on calibration rows: the chosen outcome is kept with a
margin."""

from __future__ import annotations

import numpy as np
import pytest

from podium.routing.calibrate import Setting, best_worker, calibrate, middle_lam
from podium.routing.features import FeatureSpec
from podium.routing.learned import QualityCostModel


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


def calibrated_model(
    pred: list[tuple[float, float]], true: list[tuple[float, float]]
) -> QualityCostModel:
    """A model whose calibration rows are these (cheap, strong) predictions and outcomes;
    the cheap worker costs 1 a question, the strong one 10."""
    rows = len(pred)
    cost = np.tile([1.0, 10.0], (rows, 1))
    return QualityCostModel(
        models=["cheap", "strong"],
        spec=FeatureSpec(),
        weights=np.zeros((1, 2), dtype=np.float32),
        cost_coef=np.zeros((2, 2)),
        mean_quality=np.asarray(true, dtype=np.float64).mean(axis=0),
        mean_cost=np.asarray([1.0, 10.0]),
        output_tokens=np.zeros(2),
        calibration={
            "pred_quality": np.asarray(pred, dtype=np.float64),
            "pred_cost": cost,
            "true_quality": np.asarray(true, dtype=np.float64),
            "true_cost": cost,
        },
    )


def test_the_floor_sends_the_hopeless_questions_cheap_and_loses_nothing() -> None:
    # solid: the strong worker is sure and right; long shots: it is unsure but right, and the
    # cheap worker looks close, so lambda would give those away first; hopeless: both wrong
    solid = [((0.2, 0.9), (0.0, 1.0))] * 4
    long_shots = [((0.25, 0.45), (0.0, 1.0))] * 2
    hopeless = [((0.0, 0.3), (0.0, 0.0)), ((0.0, 0.2), (0.0, 0.0)), ((0.0, 0.25), (0.0, 0.0))]
    rows = solid + long_shots + hopeless
    model = calibrated_model([p for p, _ in rows], [t for _, t in rows])
    without = calibrate(model, match_best_worker=True)
    assert without.floor == 0.0 and without.calibrated["expected_cost"] == 10.0
    policy = calibrate(model, match_best_worker=True, floor=True)
    assert 0.3 < policy.floor < 0.45  # between the last hopeless row and the first long shot
    info = policy.calibrated
    assert info["floor_rows"] == 3 and info["floor_met"]
    assert info["expected_quality"] == pytest.approx(6 / 9)  # what always-strong scores
    assert info["expected_cost"] == pytest.approx((6 * 10 + 3 * 1) / 9)


def test_no_floor_when_every_question_sent_cheap_would_cost_quality() -> None:
    rows = [((0.2, 0.9), (0.0, 1.0)), ((0.1, 0.3), (0.0, 1.0)), ((0.1, 0.6), (0.0, 1.0))]
    model = calibrated_model([p for p, _ in rows], [t for _, t in rows])
    policy = calibrate(model, match_best_worker=True, floor=True)
    assert policy.floor == 0.0 and not policy.calibrated["floor_met"]
    assert policy.calibrated["floor_rows"] == 0 and policy.calibrated["expected_quality"] == 1.0


def test_a_measured_workflow_is_no_worker_to_match() -> None:
    # the workflow is right on every row, the strong worker on two of three: routing must
    # lose nothing against always asking the strong worker, not against a workflow
    rows = [((0.2, 0.9, 0.95), (0.0, 1.0, 1.0))] * 2 + [((0.2, 0.5, 0.95), (0.0, 0.0, 1.0))]
    model = calibrated_model([p[:2] for p, _ in rows], [t[:2] for _, t in rows])
    model.models.append("program(cheap,python)")
    calibration = model.calibration
    calibration["pred_quality"] = np.asarray([p for p, _ in rows])
    calibration["true_quality"] = np.asarray([t for _, t in rows])
    calibration["pred_cost"] = calibration["true_cost"] = np.tile([1.0, 10.0, 3.0], (3, 1))
    assert best_worker(model) == ("strong", pytest.approx(2 / 3))
    # the workflow may still be chosen: it reaches the target for less than the strong worker
    policy = calibrate(model, match_best_worker=True)
    assert policy.calibrated["best_worker"] == "strong"
    assert policy.calibrated["expected_cost"] < 10.0


def test_matching_the_best_worker_spends_a_gain_on_savings_and_its_cost_on_quality() -> None:
    # the workflow is right everywhere at 3 a question, the strong worker on two of three at 10
    # (the cheap worker looks close on the third question, where it is wrong)
    rows = [((0.2, 0.9, 0.95), (0.0, 1.0, 1.0))] * 2 + [((0.6, 0.5, 0.95), (0.0, 0.0, 1.0))]
    model = calibrated_model([p[:2] for p, _ in rows], [t[:2] for _, t in rows])
    model.models.append("program(cheap,python)")
    model.calibration["pred_quality"] = np.asarray([p for p, _ in rows])
    model.calibration["true_quality"] = np.asarray([t for _, t in rows])
    costs = np.tile([1.0, 10.0, 3.0], (3, 1))
    model.calibration["pred_cost"] = model.calibration["true_cost"] = costs
    matched = calibrate(model, match_best_worker=True).calibrated
    within = calibrate(model, within_best_worker_cost=True).calibrated
    # the strong worker's quality (2/3) at the least cost: the gain buys a cheap answer
    assert matched["expected_quality"] == pytest.approx(2 / 3)
    assert matched["expected_cost"] == pytest.approx((3 + 3 + 1) / 3)
    # no more than the strong worker's cost (10): the gain is kept as quality
    assert within["max_cost_per_request"] == pytest.approx(10.0)
    assert within["best_worker"] == "strong" and within["met"]
    assert within["expected_quality"] == pytest.approx(1.0)


def test_an_unknown_outcome_counts_as_its_prediction_so_every_lambda_sees_every_row() -> None:
    # the strong worker was asked the first two questions only (a workflow measured on a
    # sample of the traffic is the common case); on the others its held-out prediction stands
    known = [((0.2, 0.9), (0.0, 1.0)), ((0.2, 0.9), (0.0, 1.0))]
    unasked = [((0.2, 0.6), (0.0, float("nan"))), ((0.2, 0.6), (0.0, float("nan")))]
    rows = known + unasked
    model = calibrated_model([p for p, _ in rows], [t for _, t in rows])
    policy = calibrate(model, target_quality=0.7)
    # always the strong worker: (1 + 1 + 0.6 + 0.6) / 4, not 1.0 over the two rows it knows
    assert policy.calibrated["expected_quality"] == pytest.approx(0.8)
    assert policy.calibrated["expected_cost"] == pytest.approx(10.0)
