"""Offline evaluation of routers on RouterBench-format data: train every router on the train
files, sweep its knob on the test files, and report quality-cost curves against every single
model, a random router and the oracle.

The report has exactly the shape of issue 3's contract (see :func:`evaluate`); cost is mean USD
per query and the cost fractions are of the best single model's cost on the test set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from podium.eval.data import RoutingData
from podium.eval.metrics import Point, aiq, cost_to_reach, frontier, value_at
from podium.routing.features import Embedder
from podium.routing.learned import Policy, QualityCostModel, TrainOptions, choose, fit

FloatArray = npt.NDArray[np.float64]
FRACTIONS = ("0.1", "0.25", "0.5")
Progress = Callable[[str], None]


@dataclass(slots=True)
class Predictions:
    quality: FloatArray  # (test rows, models)
    cost: FloatArray


@dataclass(slots=True)
class RouterSpec:
    """One router to evaluate: how to train it and how its knob sweeps."""

    name: str
    options: TrainOptions = field(default_factory=TrainOptions)
    policy: str = "tradeoff"  # tradeoff | target


# The quality heads blended half and half with 100 nearest neighbours over the shipped static
# embeddings, shrunk towards each model's mean by 10 pseudo-counts: chosen by 5-fold
# cross-validation on the train splits (reports/offline/README.md, "How learned-knn was chosen").
def knn_options() -> TrainOptions:
    return TrainOptions(knn=100, knn_weight=0.5, knn_shrink=10.0, knn_space="embedding")


def default_routers() -> list[RouterSpec]:
    return [
        RouterSpec("learned", TrainOptions()),
        RouterSpec("learned-knn", knn_options()),
        RouterSpec("learned-threshold", TrainOptions(), policy="target"),
    ]


def _realised(test: RoutingData, picks: npt.NDArray[np.intp]) -> tuple[float, float]:
    rows = np.arange(len(picks))
    quality = np.nan_to_num(test.quality[rows, picks], nan=0.0)
    cost = np.nan_to_num(test.cost[rows, picks], nan=0.0)
    return float(quality.mean()), float(cost.mean())


def lambda_grid(mean_cost: FloatArray, count: int = 60) -> list[float]:
    """Lambda (per USD) from 0 up to values where cost dominates any quality difference."""
    scale = float(np.median(mean_cost[mean_cost > 0])) if (mean_cost > 0).any() else 1.0
    return [0.0, *(float(v) for v in np.logspace(-3, 3, count) / scale)]


def sweep(
    spec: RouterSpec, predictions: Predictions, test: RoutingData, mean_cost: FloatArray
) -> list[Point]:
    points: list[Point] = []
    if spec.policy == "target":
        for target in np.linspace(0.05, 0.99, 48):
            picks = choose(predictions.quality, predictions.cost, Policy("target", target=target))
            quality, cost = _realised(test, picks)
            points.append(Point(quality, cost, round(float(target), 4)))
        return points
    for lam in lambda_grid(mean_cost):
        picks = choose(predictions.quality, predictions.cost, Policy("tradeoff", lam=lam))
        quality, cost = _realised(test, picks)
        points.append(Point(quality, cost, lam))
    return points


def random_points(train: RoutingData, test: RoutingData, seed: int = 0) -> list[Point]:
    """The random baseline: each query goes to the best model on train with probability p,
    else to the cheapest, by a seeded coin (the straight line any router has to beat); p=None
    is the uniformly random choice among all models."""
    rng = np.random.default_rng(seed)
    q_train, c_train = np.nanmean(train.quality, axis=0), np.nanmean(train.cost, axis=0)
    best, cheapest = int(np.argmax(q_train)), int(np.argmin(c_train))
    points: list[Point] = []
    coins = rng.random(len(test))
    for p in np.linspace(0.0, 1.0, 11):
        picks = np.where(coins < p, best, cheapest).astype(np.intp)
        quality, cost = _realised(test, picks)
        points.append(Point(quality, cost, round(float(p), 2)))
    uniform = rng.integers(0, len(test.models), size=len(test)).astype(np.intp)
    quality, cost = _realised(test, uniform)
    points.append(Point(quality, cost, "uniform"))
    return points


def neighbour_embedder(spec: RouterSpec, embedder: Embedder | None) -> Embedder | None:
    """The embedder a k-NN table over embeddings needs (the shipped one unless given)."""
    if spec.options.knn <= 0 or spec.options.knn_space != "embedding":
        return None
    if embedder is not None:
        return embedder
    from podium.routing.embeddings import load_embedder

    return load_embedder()


def train_router(
    spec: RouterSpec, train: RoutingData, embedder: Embedder | None = None
) -> QualityCostModel:
    return fit(
        train.prompts,
        train.quality,
        train.cost,
        train.models,
        options=spec.options,
        embedder=embedder,
        neighbour_embedder=neighbour_embedder(spec, embedder),
        metadata={"sources": train.sources, "rows": len(train)},
    )


def predict(model: QualityCostModel, test: RoutingData, embedder: Embedder | None) -> Predictions:
    return Predictions(
        model.predict_quality(test.prompts, embedder), model.predict_cost(test.prompts)
    )


def summarise(points: Sequence[Point], low: float, high: float, best: tuple[float, float]) -> Any:
    best_quality, best_cost = best
    hull = frontier(points)
    match = cost_to_reach(hull, best_quality)
    return {
        "curve": [
            {"quality": round(p.quality, 6), "cost": p.cost, "param": p.param} for p in points
        ],
        "aiq": round(aiq(hull, low, high), 6),
        "quality_at_cost_fraction": {
            f: round(value_at(hull, float(f) * best_cost), 6) for f in FRACTIONS
        },
        "cost_to_match_best": match,
    }


def evaluate(
    train: RoutingData,
    test: RoutingData,
    *,
    routers: Sequence[RouterSpec] | None = None,
    embedder: Embedder | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The report: ``{"n", "single", "best_single", "oracle", "routers"}``."""
    shared = [m for m in train.models if m in test.models]
    if not shared:
        raise ValueError("the train and test files share no model")
    train, test = train.select_models(shared), test.select_models(shared)
    say = progress or (lambda _: None)
    quality = np.nanmean(test.quality, axis=0)
    cost = np.nanmean(test.cost, axis=0)
    single = {
        m: {"quality": round(float(quality[j]), 6), "cost": float(cost[j])}
        for j, m in enumerate(shared)
    }
    # the best single model: highest quality, the cheaper one on a tie
    best = min(range(len(shared)), key=lambda j: (-round(float(quality[j]), 9), cost[j]))
    best_quality, best_cost = float(quality[best]), float(cost[best])
    oracle_picks = _oracle(test)
    oracle_quality, oracle_cost = _realised(test, oracle_picks)
    low, high = float(cost.min()), float(cost.max())
    report_routers: dict[str, Any] = {
        "random": summarise(random_points(train, test), low, high, (best_quality, best_cost))
    }
    for spec in routers or default_routers():
        say(f"training {spec.name} on {len(train)} queries x {len(shared)} models")
        model = train_router(spec, train, embedder)
        say(f"scoring {spec.name} on {len(test)} queries")
        scored = predict(model, test, embedder or neighbour_embedder(spec, embedder))
        points = sweep(spec, scored, test, np.nanmean(train.cost, axis=0))
        report_routers[spec.name] = summarise(points, low, high, (best_quality, best_cost))
    return {
        "n": len(test),
        "single": single,
        "best_single": {"model": shared[best], "quality": best_quality, "cost": best_cost},
        "oracle": {"quality": oracle_quality, "cost": oracle_cost},
        "routers": report_routers,
    }


def _oracle(test: RoutingData) -> npt.NDArray[np.intp]:
    """Per query, the cheapest model with the best score."""
    quality = np.nan_to_num(test.quality, nan=-1.0)
    cost = np.nan_to_num(test.cost, nan=np.inf)
    best = quality.max(axis=1, keepdims=True)
    masked = np.where(quality >= best - 1e-12, cost, np.inf)
    picks: npt.NDArray[np.intp] = masked.argmin(axis=1)
    return picks


def by_category(
    train: RoutingData,
    test: RoutingData,
    spec: RouterSpec,
    *,
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """Per ``eval_name`` of the test set: the router's frontier on that category's queries
    (its whole lambda sweep) against every single model there. A single model is beaten when
    the router's frontier reaches its quality at its cost or less."""
    shared = [m for m in train.models if m in test.models]
    train, test = train.select_models(shared), test.select_models(shared)
    model = train_router(spec, train, embedder)
    predictions = predict(model, test, embedder or neighbour_embedder(spec, embedder))
    picks = [
        choose(predictions.quality, predictions.cost, Policy("tradeoff", lam=lam))
        for lam in lambda_grid(np.nanmean(train.cost, axis=0))
    ]
    names = np.asarray(test.eval_names)
    out: dict[str, Any] = {}
    for category in sorted(set(test.eval_names)):
        rows = np.flatnonzero(names == category)
        sub = test.subset(rows)
        q_sub, c_sub = np.nanmean(sub.quality, axis=0), np.nanmean(sub.cost, axis=0)
        hull = frontier([Point(*_realised(sub, p[rows])) for p in picks])
        unbeaten = [
            shared[j] for j in range(len(shared)) if value_at(hull, float(c_sub[j])) < q_sub[j]
        ]
        top = int(np.argmax(q_sub))
        out[category] = {
            "n": int(rows.size),
            "best_single": {
                "model": shared[top],
                "quality": float(q_sub[top]),
                "cost": float(c_sub[top]),
            },
            "router_at_best_single_cost": value_at(hull, float(c_sub[top])),
            "router_cost_to_match_best": cost_to_reach(hull, float(q_sub[top])),
            "singles_not_beaten": unbeaten,
        }
    return out
