"""Training with a calibration split, and choosing the policy's knob on it.

``train_with_calibration`` holds out a stable share of the rows (by a hash of the prompt, so
the same prompt is always on the same side), trains on the rest, and stores the held-out
predictions next to the truth in the artifact. With ``folds`` it cross-validates instead: every
row is predicted by a model that never saw it, and the stored model is trained on all rows, so
small trace sets calibrate on all their questions. ``calibrate`` then sweeps lambda over those
rows and picks the cheapest setting that reaches a target quality (a number, or the best single
worker's quality on the same rows), or the best one whose mean cost stays under a ceiling,
like RouteLLM's threshold calibration. A floor can follow: the largest predicted quality below
which sending the question to the cheapest worker still keeps that quality on those rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from podium.eval.data import RoutingData
from podium.eval.offline import lambda_grid
from podium.routing.features import Embedder, FeatureSpec
from podium.routing.learned import Policy, QualityCostModel, TrainOptions, choose, fit
from podium.workflow import parse_workflow_key

FloatArray = npt.NDArray[np.float64]


def _buckets(prompts: list[str]) -> npt.NDArray[np.int64]:
    """A stable number in [0, 10000) per prompt (case and outer spaces ignored)."""
    return np.asarray(
        [
            int(hashlib.sha256(p.strip().lower().encode("utf-8")).hexdigest()[:8], 16) % 10_000
            for p in prompts
        ],
        dtype=np.int64,
    )


def calibration_rows(prompts: list[str], fraction: float) -> npt.NDArray[np.bool_]:
    """True for the rows held out for calibration (a stable share of distinct prompts)."""
    held: npt.NDArray[np.bool_] = _buckets(prompts) < int(fraction * 10_000)
    return held


def _metrics(pred: FloatArray, true: FloatArray) -> dict[str, float]:
    known = ~np.isnan(true)
    if not known.any():
        return {}
    error = (pred[known] - true[known]) ** 2
    base = np.nanmean(true, axis=0)
    baseline = ((np.broadcast_to(base, true.shape)[known]) - true[known]) ** 2
    return {"brier": float(error.mean()), "brier_of_means": float(baseline.mean())}


@dataclass(frozen=True, slots=True)
class _Training:
    """What every model fitted here shares, whichever rows it is fitted on."""

    options: TrainOptions | None
    embedder: Embedder | None
    neighbour_embedder: Embedder | None
    output_tokens: FloatArray | None

    @property
    def prompt_embedder(self) -> Embedder | None:
        """What embeds prompts for the fitted models' predictions."""
        return self.embedder or self.neighbour_embedder


def train_with_calibration(
    data: RoutingData,
    *,
    fraction: float = 0.15,
    folds: int = 0,
    options: TrainOptions | None = None,
    embedder: Embedder | None = None,
    output_tokens: FloatArray | None = None,
    metadata: dict[str, Any] | None = None,
    neighbour_embedder: Embedder | None = None,
) -> QualityCostModel:
    training = _Training(options, embedder, neighbour_embedder, output_tokens)
    if folds >= 2 and len(data) >= folds:
        return _train_cross_validated(data, folds, training, metadata)
    held = calibration_rows(data.prompts, fraction) if fraction > 0 else np.zeros(len(data), bool)
    if held.all() or len(data) - int(held.sum()) < 2:
        held = np.zeros(len(data), dtype=bool)
    train = data.subset(np.flatnonzero(~held))
    extra = {"train_rows": len(train), "calibration_rows": int(held.sum())}
    model = _fit(train, training, {**(metadata or {}), **extra})
    if held.any():
        cal = data.subset(np.flatnonzero(held))
        pred_q = model.predict_quality(cal.prompts, training.prompt_embedder)
        _keep_calibration(model, pred_q, model.predict_cost(cal.prompts), cal.quality, cal.cost)
    return model


def _fit(part: RoutingData, training: _Training, metadata: dict[str, Any]) -> QualityCostModel:
    return fit(
        part.prompts,
        part.quality,
        part.cost,
        part.models,
        options=training.options,
        spec=FeatureSpec(),
        embedder=training.embedder,
        neighbour_embedder=training.neighbour_embedder,
        output_tokens=training.output_tokens,
        metadata=metadata,
    )


def _keep_calibration(
    model: QualityCostModel,
    pred_q: FloatArray,
    pred_c: FloatArray,
    true_q: FloatArray,
    true_c: FloatArray,
) -> None:
    """Store held-out predictions next to the truth in the artifact, with their Brier scores."""
    model.calibration = {
        "pred_quality": pred_q,
        "pred_cost": pred_c,
        "true_quality": true_q,
        "true_cost": true_c,
    }
    model.metadata["metrics"] = _metrics(pred_q, true_q)


def _train_cross_validated(
    data: RoutingData, folds: int, training: _Training, metadata: dict[str, Any] | None
) -> QualityCostModel:
    """The model on every row; as calibration, each row's predictions by the fold model that
    left it out (folds by a hash of the prompt)."""
    fold = _buckets(data.prompts) % folds
    pred_q = np.full(data.quality.shape, np.nan)
    pred_c = np.full(data.cost.shape, np.nan)
    for k in range(folds):
        out = np.flatnonzero(fold == k)
        kept = np.flatnonzero(fold != k)
        if not len(out) or len(kept) < 2:
            continue
        part = _fit(data.subset(kept), training, {**(metadata or {})})
        prompts = [data.prompts[i] for i in out]
        pred_q[out] = part.predict_quality(
            prompts, training.embedder or training.neighbour_embedder
        )
        pred_c[out] = part.predict_cost(prompts)
    extra = {"train_rows": len(data), "calibration_folds": folds}
    model = _fit(data, training, {**(metadata or {}), **extra})
    predicted = ~np.isnan(pred_q).any(axis=1)
    model.metadata["calibration_rows"] = int(predicted.sum())
    _keep_calibration(
        model,
        pred_q[predicted],
        pred_c[predicted],
        data.quality[predicted],
        data.cost[predicted],
    )
    return model


@dataclass(slots=True)
class Setting:
    lam: float
    quality: float
    cost: float


def sweep(model: QualityCostModel) -> list[Setting]:
    """Mean true quality and cost on the calibration rows, per lambda (where a pick's outcome
    is unknown, its prediction stands in: :func:`_outcome`)."""
    cal = model.calibration
    if not cal:
        raise ValueError("this artifact has no calibration rows (train with a calibration split)")
    pred_q, pred_c = cal["pred_quality"], cal["pred_cost"]
    settings: list[Setting] = []
    for lam in lambda_grid(model.mean_cost, count=120):
        outcome = _outcome(cal, choose(pred_q, pred_c, Policy("tradeoff", lam=lam)))
        if outcome is not None:
            settings.append(Setting(lam, *outcome))
    return settings


def _outcome(cal: dict[str, FloatArray], picks: npt.NDArray[np.intp]) -> tuple[float, float] | None:
    """Mean quality and cost of these picks over every calibration row. Where a pick's true
    outcome is unknown (a worker not asked that question, a workflow measured on a sample of
    the traffic), the held-out prediction for it stands in: leaving such rows out would
    judge each lambda on other rows (the rows its own picks happen to know), so no two
    settings would be compared on the same questions. None when no pick's outcome is known."""
    rows = np.arange(picks.shape[0])
    q, c = cal["true_quality"][rows, picks], cal["true_cost"][rows, picks]
    unknown = np.isnan(q)
    if unknown.all():
        return None
    quality = np.where(unknown, cal["pred_quality"][rows, picks], q)
    cost = np.where(np.isnan(c), cal["pred_cost"][rows, picks], c)
    return float(quality.mean()), float(cost.mean())


def best_worker(model: QualityCostModel) -> tuple[str, float]:
    """The worker with the highest mean quality on the calibration rows, and that quality
    (over the rows where every worker's outcome is known, when there are any); a workflow the
    artifact measured is no worker to match."""
    name, quality, _ = _best_worker(model)
    return name, quality


def _best_worker(model: QualityCostModel) -> tuple[str, float, float]:
    """``best_worker``, and that worker's mean cost on the same rows."""
    columns = worker_columns(model)
    true_q = model.calibration["true_quality"][:, columns]
    complete = ~np.isnan(true_q).any(axis=1)
    rows = complete if complete.any() else np.ones(len(true_q), dtype=bool)
    means = np.nanmean(true_q[rows], axis=0)
    j = int(np.nanargmax(means))
    cal_cost = model.calibration["true_cost"][rows, columns[j]]
    cost = np.where(np.isnan(cal_cost), model.calibration["pred_cost"][rows, columns[j]], cal_cost)
    return model.models[columns[j]], float(means[j]), float(cost.mean())


def worker_columns(model: QualityCostModel) -> list[int]:
    """The artifact's columns that are workers (not workflows it measured)."""
    return [j for j, name in enumerate(model.models) if parse_workflow_key(name) is None]


def middle_lam(settings: list[Setting], chosen: Setting) -> float:
    """The middle of the run of lambdas around ``chosen`` with the same outcome on the
    calibration rows: the edge of that run is where a slightly different question tips the
    choice, the middle is as far from both neighbouring outcomes as these rows allow."""
    same = [s.quality == chosen.quality and s.cost == chosen.cost for s in settings]
    at = next(i for i, s in enumerate(settings) if s is chosen)
    first = last = at
    while first > 0 and same[first - 1]:
        first -= 1
    while last + 1 < len(settings) and same[last + 1]:
        last += 1
    low, high = settings[first].lam, settings[last].lam
    if low <= 0:
        return 0.0  # the run reaches lambda 0: no trade-off is needed for this outcome
    if last == len(settings) - 1:
        return high  # the run goes on past the grid
    return float(np.sqrt(low * high))


def calibrate(
    model: QualityCostModel,
    *,
    target_quality: float | None = None,
    max_cost: float | None = None,
    match_best_worker: bool = False,
    within_best_worker_cost: bool = False,
    floor: bool = False,
) -> Policy:
    """The policy that meets the target at the least cost, or the best under the cost cap.
    ``match_best_worker`` sets the target to the best single worker's quality on the same
    rows: routing must lose nothing against always asking that worker.
    ``within_best_worker_cost`` sets the cap to that worker's mean cost there instead: the
    best routing that costs no more than always asking it (what a company pays now). When
    nothing meets the goal, the closest setting is chosen and ``calibrated.met`` is False.
    ``floor`` then adds the largest floor (:func:`calibrate_floor`) that keeps that quality."""
    goals = (target_quality is not None, max_cost is not None, match_best_worker)
    if sum((*goals, within_best_worker_cost)) != 1:
        raise ValueError(
            "give exactly one of a target quality, the best worker's quality, a maximum "
            "cost per request or the best worker's cost"
        )
    if not model.calibration:
        raise ValueError("this artifact has no calibration rows (train with a calibration split)")
    goal: dict[str, Any] = {}
    if match_best_worker:
        name, target_quality = best_worker(model)
        goal = {"best_worker": name}
    if within_best_worker_cost:
        name, quality, max_cost = _best_worker(model)
        goal = {"best_worker": name, "best_worker_quality": quality}
    settings = sweep(model)
    if target_quality is not None:
        meeting = [s for s in settings if s.quality >= target_quality]
        chosen = (
            min(meeting, key=lambda s: (s.cost, -s.lam))
            if meeting
            else max(settings, key=lambda s: s.quality)
        )
        goal["target_quality"] = target_quality
    else:
        assert max_cost is not None
        meeting = [s for s in settings if s.cost <= max_cost]
        chosen = (
            max(meeting, key=lambda s: (s.quality, -s.cost))
            if meeting
            else min(settings, key=lambda s: s.cost)
        )
        goal["max_cost_per_request"] = max_cost
    policy = Policy(
        kind="tradeoff",
        lam=middle_lam(settings, chosen),
        calibrated={
            **goal,
            "met": bool(meeting),
            "expected_quality": chosen.quality,
            "expected_cost": chosen.cost,
            "rows": int(model.calibration["pred_quality"].shape[0]),
        },
    )
    if floor:
        keep = target_quality if target_quality is not None and meeting else chosen.quality
        return calibrate_floor(model, policy, keep)
    return policy


def calibrate_floor(model: QualityCostModel, policy: Policy, keep_quality: float) -> Policy:
    """``policy`` with the largest floor whose outcome on the calibration rows still reaches
    ``keep_quality``: the questions where even the most promising worker looks hopeless go to
    the cheapest. The floor sits halfway between the last row sent and the first kept, as far
    from both as these rows allow; 0 when every floor loses quality."""
    cal = model.calibration
    pred_q, pred_c = cal["pred_quality"], cal["pred_cost"]
    top = pred_q.max(axis=1)
    own = choose(pred_q, pred_c, Policy(policy.kind, policy.lam, policy.target, policy.budget_usd))
    cheapest = pred_c.argmin(axis=1)
    levels = np.unique(top)
    best = (0.0, _outcome(cal, own))
    for floor in (levels[:-1] + levels[1:]) / 2:
        outcome = _outcome(cal, np.where(top < floor, cheapest, own))
        if outcome is not None and outcome[0] >= keep_quality - 1e-12:
            best = (float(floor), outcome)
    chosen, outcome = best
    calibrated = dict(policy.calibrated)
    calibrated.update(
        floor_rows=int((top < chosen).sum()),
        floor_kept_quality=keep_quality,
        floor_met=chosen > 0,
    )
    if outcome is not None:
        calibrated["expected_quality"], calibrated["expected_cost"] = outcome
    return Policy(
        policy.kind,
        policy.lam,
        policy.target,
        policy.budget_usd,
        floor=chosen,
        calibrated=calibrated,
    )
