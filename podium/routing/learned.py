"""The learned quality/cost model: per model, the probability of a good answer and the
expected cost of one query, from prompt features.

Quality is one logistic-regression head per model over shared features (trained jointly with
full-batch Adam, numpy only), optionally blended with a k-nearest-neighbour estimate that
shrinks towards the model's mean. Cost is linear in the prompt's length per model (the data's
own costs), and for configured workers the router prices predicted tokens instead
(:mod:`podium.routing.learned_router`).

A model the data never saw gets a prior: the worker's ``quality_prior`` when set, else the
quality that the known models' cost-quality line predicts for its price.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from podium.routing.features import Embedder, FeatureSpec, Featurizer
from podium.routing.knn import NeighbourTable

FloatArray = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]


def sigmoid(z: npt.NDArray[np.floating[Any]]) -> FloatArray:
    out: FloatArray = 1.0 / (1.0 + np.exp(-np.clip(z.astype(np.float64), -30.0, 30.0)))
    return out


@dataclass(slots=True)
class TrainOptions:
    l2: float = 3e-3
    steps: int = 250
    learning_rate: float = 0.05
    rank: int = 0  # > 0: quality heads share a low-rank map (W = U V), like matrix factorisation
    knn: int = 0  # neighbours for the k-NN blend; 0 turns it off
    knn_weight: float = 0.5
    knn_shrink: float = 4.0  # pseudo-counts of the model's mean in each neighbourhood
    # "features": neighbours by the prompt features; "embedding": by the sentence embedding
    # (stored as a float16 table; needs the embedder at run time, without it the heads alone)
    knn_space: str = "features"
    seed: int = 0


@dataclass(slots=True)
class Policy:
    """How predictions become a choice. ``kind``: tradeoff (maximise quality - lambda x
    cost), target (the cheapest model whose predicted quality meets ``target``) or budget
    (the best model whose predicted cost is within ``budget_usd``). With any kind, a query
    where every model's predicted quality is below ``floor`` goes to the cheapest model:
    no answer is likely to be right, so none is worth paying more for."""

    kind: str = "tradeoff"
    lam: float = 0.0  # per USD
    target: float = 0.0
    budget_usd: float | None = None
    floor: float = 0.0
    calibrated: dict[str, Any] = field(default_factory=dict)


def below_floor(quality: FloatArray, policy: Policy) -> npt.NDArray[np.bool_]:
    """Per row, whether every model's predicted quality is below the policy's floor."""
    hopeless: npt.NDArray[np.bool_] = np.atleast_2d(quality).max(axis=1) < policy.floor
    return hopeless


def choose(quality: FloatArray, cost: FloatArray, policy: Policy) -> npt.NDArray[np.intp]:
    """Per row, the column the policy picks (vectorised over queries)."""
    if quality.ndim == 1:
        return choose(quality[None, :], cost[None, :], policy)
    picked: npt.NDArray[np.intp] = np.where(
        below_floor(quality, policy), cost.argmin(axis=1), _by_kind(quality, cost, policy)
    )
    return picked


def _by_kind(quality: FloatArray, cost: FloatArray, policy: Policy) -> npt.NDArray[np.intp]:
    if policy.kind == "target":
        meets = quality >= policy.target
        masked = np.where(meets, cost, np.inf)
        cheapest = masked.argmin(axis=1)
        best = quality.argmax(axis=1)
        picked: npt.NDArray[np.intp] = np.where(meets.any(axis=1), cheapest, best)
        return picked
    if policy.kind == "budget" and policy.budget_usd is not None:
        fits = cost <= policy.budget_usd
        masked = np.where(fits, quality - 1e-9 * cost, -np.inf)
        picked = np.where(fits.any(axis=1), masked.argmax(axis=1), cost.argmin(axis=1))
        return picked
    picked = (quality - policy.lam * cost).argmax(axis=1)
    return picked


@dataclass
class QualityCostModel:
    """A trained model: feature spec, one quality head and one cost line per data model."""

    models: list[str]
    spec: FeatureSpec
    weights: F32  # (features, models)
    cost_coef: FloatArray  # (models, 2): intercept and USD per prompt character
    mean_quality: FloatArray  # (models,)
    mean_cost: FloatArray  # (models,)
    output_tokens: FloatArray  # (models,) mean output tokens where known (traces), else 0
    prior_line: tuple[float, float] = (0.0, 0.5)  # quality = a * log10(cost) + b
    options: TrainOptions = field(default_factory=TrainOptions)
    policy: Policy = field(default_factory=Policy)
    knn_x: F32 | None = None  # training rows (features) for the k-NN blend
    knn_y: F32 | None = None  # their qualities (NaN where unknown)
    metadata: dict[str, Any] = field(default_factory=dict)
    # Held-out rows for calibration: predicted and true quality and cost ("pred_quality",
    # "pred_cost", "true_quality", "true_cost"), each (rows, models).
    calibration: dict[str, FloatArray] = field(default_factory=dict)
    neighbours: NeighbourTable | None = None  # the k-NN table over sentence embeddings
    _featurizer: Featurizer | None = None

    # -- prediction ---------------------------------------------------------------------------

    def featurizer(self, embedder: Embedder | None = None) -> Featurizer:
        if self._featurizer is None or (embedder is not None and self._featurizer.embedder is None):
            self._featurizer = Featurizer(self.spec, embedder)
        return self._featurizer

    @property
    def needs_embedder(self) -> bool:
        """Whether predictions use a sentence embedding (features or the k-NN table)."""
        return bool(self.spec.embedding_dim) or self.neighbours is not None

    def features(self, texts: Sequence[str], embedder: Embedder | None = None) -> FloatArray:
        return self.featurizer(embedder if self.spec.embedding_dim else None).transform(texts)

    def predict_quality(self, texts: Sequence[str], embedder: Embedder | None = None) -> FloatArray:
        """Per text, every model's probability of a good answer."""
        x = self.features(texts, embedder)
        vectors = None
        if self.neighbours is not None and embedder is not None:
            one = getattr(embedder, "encode_one", None)  # one request: no batch (thread) overhead
            if len(texts) == 1 and callable(one):
                vectors = np.asarray(one(texts[0]), dtype=np.float32)[None, :]
            else:
                vectors = np.asarray(embedder.encode(list(texts)), dtype=np.float32)
        return self.predict_quality_from(x, vectors)

    def predict_quality_from(
        self, x: FloatArray, vectors: npt.NDArray[np.floating] | None = None
    ) -> FloatArray:
        """From feature rows, and the texts' unit embeddings when the model has a k-NN table
        over them (without them the quality heads answer alone)."""
        p = sigmoid(x.astype(np.float32) @ self.weights)
        weight = self.options.knn_weight
        if self.knn_x is not None and self.knn_y is not None and self.options.knn > 0:
            p = (1 - weight) * p + weight * self._knn(x)
        elif self.neighbours is not None and vectors is not None:
            p = (1 - weight) * p + weight * self.neighbours.predict(vectors)
        return np.asarray(p, dtype=np.float64)

    def _knn(self, x: FloatArray) -> FloatArray:
        assert self.knn_x is not None and self.knn_y is not None
        k = min(self.options.knn, self.knn_x.shape[0])
        sims = x.astype(np.float32) @ self.knn_x.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        neighbours = self.knn_y[top]  # (rows, k, models)
        known = ~np.isnan(neighbours)
        total = np.where(known, neighbours, 0.0).sum(axis=1)
        count = known.sum(axis=1)
        shrink = self.options.knn_shrink
        out: FloatArray = (total + shrink * self.mean_quality) / (count + shrink)
        return out

    def predict_cost(self, texts: Sequence[str]) -> FloatArray:
        chars = np.asarray([len(t) for t in texts], dtype=np.float64)
        cost = self.cost_coef[:, 0][None, :] + chars[:, None] * self.cost_coef[:, 1][None, :]
        out: FloatArray = np.maximum(cost, 0.0)
        return out

    def prior_quality(self, cost_usd: float, quality_prior: float | None = None) -> float:
        """The quality to assume for a model the data never saw."""
        if quality_prior is not None:
            return quality_prior
        a, b = self.prior_line
        low, high = float(self.mean_quality.min()), float(self.mean_quality.max())
        if cost_usd <= 0:
            return low
        return float(np.clip(a * np.log10(cost_usd) + b, low, high))

    # -- persistence ---------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """``path`` (.npz) holds the arrays; ``path.with_suffix('.json')`` the readable rest."""
        arrays: dict[str, Any] = {
            "weights": self.weights,
            "cost_coef": self.cost_coef,
            "mean_quality": self.mean_quality,
            "mean_cost": self.mean_cost,
            "output_tokens": self.output_tokens,
        }
        if self.knn_x is not None and self.knn_y is not None:
            arrays["knn_x"], arrays["knn_y"] = self.knn_x, self.knn_y
        for key, value in self.calibration.items():
            arrays[f"cal_{key}"] = value
        if self.neighbours is not None:
            arrays.update(self.neighbours.arrays("nn"))
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".npz.tmp")
        tmp.write_bytes(buffer.getvalue())
        tmp.replace(path)
        meta = {
            "format": "podium-learned-router/1",
            "models": self.models,
            "spec": asdict(self.spec),
            "prior_line": list(self.prior_line),
            "options": asdict(self.options),
            "policy": asdict(self.policy),
            "metadata": self.metadata,
        }
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> QualityCostModel:
        meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        if meta.get("format") != "podium-learned-router/1":
            raise ValueError(f"{path.name}: not a Podium learned-router artifact")
        with np.load(path, allow_pickle=False) as arrays:
            data = {key: arrays[key] for key in arrays.files}
        options = TrainOptions(**meta["options"])
        return cls(
            models=list(meta["models"]),
            spec=FeatureSpec(**meta["spec"]),
            weights=data["weights"].astype(np.float32),
            cost_coef=data["cost_coef"],
            mean_quality=data["mean_quality"],
            mean_cost=data["mean_cost"],
            output_tokens=data["output_tokens"],
            prior_line=(float(meta["prior_line"][0]), float(meta["prior_line"][1])),
            options=options,
            policy=Policy(**meta["policy"]),
            knn_x=data.get("knn_x"),
            knn_y=data.get("knn_y"),
            metadata=dict(meta.get("metadata") or {}),
            calibration={k[4:]: v for k, v in data.items() if k.startswith("cal_")},
            neighbours=NeighbourTable.from_arrays(
                data, "nn", data["mean_quality"], options.knn, options.knn_shrink
            ),
        )


# -- training -------------------------------------------------------------------------------------


def _adam(
    params: list[F32], grads: list[F32], state: list[list[F32]], step: int, lr: float
) -> None:
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for param, grad, (m, v) in zip(params, grads, state, strict=True):
        m *= beta1
        m += (1 - beta1) * grad
        v *= beta2
        v += (1 - beta2) * grad * grad
        param -= np.float32(lr) * (m / (1 - beta1**step)) / (np.sqrt(v / (1 - beta2**step)) + eps)


def _fit_heads(x: F32, y: F32, options: TrainOptions, base: FloatArray) -> F32:
    """Joint logistic regression, one column per model; NaN targets are ignored. With
    ``rank`` the heads are W = U V + (bias row), sharing what the models have in common."""
    _rows, dim = x.shape
    models = y.shape[1]
    known = ~np.isnan(y)
    target = np.where(known, y, 0.0).astype(np.float32)
    mask = known.astype(np.float32)
    counts = np.maximum(mask.sum(axis=0), 1.0)
    clipped = np.clip(base, 1e-3, 1 - 1e-3)
    bias = np.log(clipped / (1 - clipped)).astype(np.float32)[None, :]
    l2 = np.float32(options.l2)
    rng = np.random.default_rng(options.seed)
    if options.rank > 0:
        u = (rng.standard_normal((dim, options.rank)) * 0.01).astype(np.float32)
        vmat = (rng.standard_normal((options.rank, models)) * 0.1).astype(np.float32)
        params = [u, vmat, bias]
    else:
        params = [np.zeros((dim, models), dtype=np.float32), bias]
    state = [[np.zeros_like(p), np.zeros_like(p)] for p in params]
    for step in range(1, options.steps + 1):
        if options.rank > 0:
            u, vmat, bias = params
            hidden = x @ u
            logits: npt.NDArray[Any] = hidden @ vmat + bias
        else:
            w, bias = params
            logits = x @ w + bias
        p = 1.0 / (1.0 + np.exp(-np.clip(logits, -30, 30)))
        residual = ((p - target) * mask) / counts
        if options.rank > 0:
            grad_v = hidden.T @ residual + l2 * vmat
            grad_u = x.T @ (residual @ vmat.T) + l2 * u
            grads = [grad_u, grad_v, residual.sum(axis=0, keepdims=True)]
        else:
            grads = [x.T @ residual + l2 * w, residual.sum(axis=0, keepdims=True)]
        _adam(params, grads, state, step, options.learning_rate)
    weights = params[0] @ params[1] if options.rank > 0 else params[0].copy()
    weights[-1] += params[-1][0]  # the last feature is the constant 1: fold the bias in
    return weights.astype(np.float32)


def _fit_cost(chars: FloatArray, cost: FloatArray) -> FloatArray:
    coef = np.zeros((cost.shape[1], 2))
    design = np.stack([np.ones_like(chars), chars], axis=1)
    for j in range(cost.shape[1]):
        ok = ~np.isnan(cost[:, j])
        if ok.sum() >= 2:
            solution, *_ = np.linalg.lstsq(design[ok], cost[ok, j], rcond=None)
            coef[j] = solution
            if coef[j, 1] < 0:  # a longer prompt never costs less: fall back to the mean
                coef[j] = [float(np.mean(cost[ok, j])), 0.0]
        elif ok.any():
            coef[j] = [float(np.mean(cost[ok, j])), 0.0]
    return coef


def _prior_line(mean_cost: FloatArray, mean_quality: FloatArray) -> tuple[float, float]:
    """Least squares of mean quality on log10(mean cost) over the known models; a flat line
    at the mean when costs do not vary or quality falls with price."""
    ok = mean_cost > 0
    flat = (0.0, float(np.mean(mean_quality)) if mean_quality.size else 0.5)
    if ok.sum() < 2:
        return flat
    x, y = np.log10(mean_cost[ok]), mean_quality[ok]
    spread = float(((x - x.mean()) ** 2).sum())
    if spread < 1e-12:
        return flat
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / spread)
    if slope <= 0:
        return 0.0, float(y.mean())
    return slope, float(y.mean() - slope * x.mean())


def fit(
    prompts: Sequence[str],
    quality: FloatArray,
    cost: FloatArray,
    models: Sequence[str],
    *,
    options: TrainOptions | None = None,
    spec: FeatureSpec | None = None,
    embedder: Embedder | None = None,
    output_tokens: FloatArray | None = None,
    metadata: dict[str, Any] | None = None,
    neighbour_embedder: Embedder | None = None,
) -> QualityCostModel:
    """Train on per-query outcomes: ``quality[i, j]`` in [0, 1] (NaN: unknown) and
    ``cost[i, j]`` in USD for prompt i on model j. ``embedder`` adds embeddings to the
    features; ``neighbour_embedder`` (default: ``embedder``) builds the k-NN table when
    ``options.knn_space`` is "embedding"."""
    options = options or TrainOptions()
    spec = spec or FeatureSpec()
    if embedder is not None and not spec.embedding_dim:
        probe = np.asarray(embedder.encode(["probe"]))
        spec.embedding_dim = int(probe.shape[-1])
    featurizer = Featurizer(spec, embedder)
    featurizer.fit_cues(prompts)
    x = featurizer.transform(prompts).astype(np.float32)
    y = np.clip(quality, 0.0, 1.0).astype(np.float32)
    mean_quality = np.nan_to_num(np.nanmean(np.where(np.isnan(y), np.nan, y), axis=0), nan=0.5)
    mean_cost = np.nan_to_num(np.nanmean(cost, axis=0), nan=0.0)
    weights = _fit_heads(x, y, options, mean_quality.astype(np.float64))
    by_features = options.knn > 0 and options.knn_space == "features"
    neighbours = None
    if options.knn > 0 and options.knn_space == "embedding":
        encoder = neighbour_embedder or embedder
        if encoder is None:
            raise ValueError("a k-NN table over embeddings needs the embedder")
        neighbours = NeighbourTable(
            vectors=np.asarray(encoder.encode(list(prompts)), dtype=np.float32),
            outcomes=y,
            mean_quality=mean_quality.astype(np.float64),
            k=options.knn,
            shrink=options.knn_shrink,
        )
    chars = np.asarray([len(p) for p in prompts], dtype=np.float64)
    model = QualityCostModel(
        models=list(models),
        spec=spec,
        weights=weights,
        cost_coef=_fit_cost(chars, cost),
        mean_quality=mean_quality.astype(np.float64),
        mean_cost=mean_cost,
        output_tokens=output_tokens
        if output_tokens is not None
        else np.zeros(len(models), dtype=np.float64),
        prior_line=_prior_line(mean_cost, mean_quality.astype(np.float64)),
        options=options,
        knn_x=x if by_features else None,
        knn_y=y if by_features else None,
        metadata=dict(metadata or {}),
        neighbours=neighbours,
    )
    model._featurizer = featurizer
    return model
