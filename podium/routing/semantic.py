"""Semantic routes: requests that resemble a route's example utterances go to its target.

Routes are data (``routing.semantic.routes`` in ``podium.yaml``, or the shipped set in
``podium/data/routing/default_routes.yaml``). A request's last user message is embedded with the
shipped static model (:mod:`podium.routing.embeddings`) and scored against every route by cosine
similarity: the nearest utterance (``scoring: nearest``) or the route's centroid
(``scoring: centroid``). The best route whose score clears its threshold wins; thresholds are
per route and :func:`fit_thresholds` tunes them on labelled examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray

from podium.routing.base import Candidate, Decision, RouteContext
from podium.routing.config import RouteConfig, RoutingConfigError, SemanticConfig, parse_section
from podium.routing.embeddings import Embedder, StaticEmbedder
from podium.routing.registry import RouterParts, RouterRegistry
from podium.routing.targets import ResolvedTarget, Skip
from podium.types import ChatRequest

MAX_CANDIDATES = 8


def default_routes_path() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "routing" / "default_routes.yaml"


def load_routes(path: Path) -> list[RouteConfig]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return [RouteConfig.model_validate(route) for route in data.get("routes", [])]
    except (OSError, yaml.YAMLError, ValueError) as error:
        raise RoutingConfigError(f"semantic routes in {path.name}: {error}") from None


@dataclass(slots=True)
class CompiledRoute:
    name: str
    target: ResolvedTarget
    threshold: float
    utterances: int

    @property
    def worker(self) -> str:
        router = self.target.router
        return self.target.workers[0] if self.target.workers else f"router:{router and router.name}"


class SemanticRouter:
    name = "semantic"

    def __init__(
        self,
        routes: list[CompiledRoute],
        embedder: Embedder | None,
        utterances: list[str],
        *,
        scoring: str = "nearest",
        margin: float = 0.0,
        models: Sequence[str] = ("podium/auto",),
        max_chars: int = 1024,
    ) -> None:
        self.routes = routes
        self.max_chars = max_chars
        self.models = frozenset(models)
        # The models plan() may decide for (see Router): none without routes.
        self.decides_for = self.models if routes else frozenset()
        self.scoring = scoring
        self.margin = margin
        self._embedder = embedder
        self._encode_one = getattr(embedder, "encode_one", None)
        self._thresholds = np.array([route.threshold for route in routes], dtype=np.float32)
        dim = embedder.dim if embedder is not None else 1
        matrix = embedder.encode(utterances) if embedder is not None and utterances else None
        counts = [route.utterances for route in routes]
        self._starts = np.cumsum([0, *counts[:-1]]).astype(np.intp)
        if matrix is None:
            self._matrix = np.zeros((0, dim), dtype=np.float32)
        elif scoring == "centroid":
            centroids = np.add.reduceat(matrix, self._starts, axis=0)
            norms = np.linalg.norm(centroids, axis=1, keepdims=True)
            self._matrix = np.divide(centroids, norms, where=norms > 0, out=centroids)
        else:
            self._matrix = np.ascontiguousarray(matrix, dtype=np.float32)

    # -- scores ------------------------------------------------------------------------------

    def clip(self, text: str) -> str:
        """The head and tail of a long text (three parts head, one part tail)."""
        if len(text) <= self.max_chars:
            return text
        tail = self.max_chars // 4
        return text[: self.max_chars - tail] + "\n" + text[-tail:]

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        assert self._embedder is not None
        if len(texts) == 1 and self._encode_one is not None:
            row: NDArray[np.float32] = self._encode_one(texts[0])
            return row[None, :]
        return np.asarray(self._embedder.encode(texts), dtype=np.float32)

    def score_matrix(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """``(len(texts), len(routes))`` cosine scores."""
        if not self.routes:
            return np.zeros((len(texts), 0), dtype=np.float32)
        sims = self.embed(texts) @ self._matrix.T
        if self.scoring == "centroid":
            return sims
        return np.maximum.reduceat(sims, self._starts, axis=1)

    def thresholds(self) -> dict[str, float]:
        return {route.name: route.threshold for route in self.routes}

    def set_thresholds(self, thresholds: dict[str, float]) -> None:
        for index, route in enumerate(self.routes):
            if route.name in thresholds:
                route.threshold = thresholds[route.name]
                self._thresholds[index] = thresholds[route.name]

    # -- the decision ------------------------------------------------------------------------

    async def plan(self, request: ChatRequest, context: RouteContext) -> Decision | None:
        if not self.routes or request.model not in self.models:
            return None
        text = self.clip(request.last_user_text())
        if not text.strip():
            return None  # nothing to compare: let the next router decide
        scores = self.score_matrix([text])[0]
        order: list[int] = np.argsort(-scores).tolist()
        candidates = [
            Candidate(
                worker=self.routes[i].worker, score=float(scores[i]), label=self.routes[i].name
            )
            for i in order[:MAX_CANDIDATES]
        ]
        runner_up = float(scores[order[1]]) if len(order) > 1 else -1.0
        skipped: list[str] = []
        for rank, index in enumerate(order):
            route, score = self.routes[index], float(scores[index])
            if score < self._thresholds[index]:
                continue
            if rank == 0 and score - runner_up < self.margin:
                return None  # too close to call: a later router (learned, say) decides
            other = (
                f"; runner-up {self.routes[order[1]].name!r} {runner_up:.2f}"
                if len(order) > 1 and rank == 0
                else ""
            )
            reason = (
                f"semantic route {route.name!r}: similarity {score:.2f} >= threshold "
                f"{self._thresholds[index]:.2f}{other} -> {route.target.label}"
            )
            outcome = await route.target.decide(
                request,
                context,
                router=self.name,
                rule=route.name,
                reason=reason,
                candidates=candidates,
            )
            if isinstance(outcome, Skip):
                skipped.append(f"route {route.name!r}: {outcome.reason}")
                continue
            if outcome is None:
                continue
            if skipped:
                outcome.reason = f"{outcome.reason} (passed over: {'; '.join(skipped)})"
            return outcome
        return None


# -- fitting thresholds ------------------------------------------------------------------------


@dataclass(slots=True)
class RouteFit:
    route: str
    threshold: float
    precision: float
    recall: float
    f1: float
    support: int  # labelled examples of this route


def fit_thresholds(
    router: SemanticRouter,
    examples: Sequence[tuple[str, str]],
    *,
    target_precision: float | None = None,
    apply: bool = True,
) -> list[RouteFit]:
    """Per-route thresholds from ``(text, label)`` pairs; a label that names no route is a
    negative for every route. Maximises F1, or with ``target_precision`` the recall among
    thresholds reaching that precision (the most precise threshold when none does)."""
    if not examples:
        raise ValueError("no labelled examples to fit on")
    scores = router.score_matrix([text for text, _ in examples])
    top = scores.argmax(axis=1) if scores.shape[1] else np.zeros(len(examples), dtype=np.intp)
    labels = np.array([label for _, label in examples], dtype=object)
    fits: list[RouteFit] = []
    for index, route in enumerate(router.routes):
        positive = labels == route.name
        support = int(positive.sum())
        mine = top == index
        cuts = np.unique(scores[mine, index])[::-1]  # descending: each admits one more score
        best = RouteFit(route.name, 1.0, 0.0, 0.0, 0.0, support)
        for position, cut in enumerate(cuts):
            # Place the threshold halfway to the next lower score, not on an example's score.
            below = float(cuts[position + 1]) if position + 1 < len(cuts) else float(cut) - 0.02
            predicted = mine & (scores[:, index] >= cut)
            tp = int((predicted & positive).sum())
            fp = int((predicted & ~positive).sum())
            precision = tp / (tp + fp) if tp + fp else 0.0
            recall = tp / support if support else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            threshold = round((float(cut) + below) / 2, 4)
            current = RouteFit(route.name, threshold, precision, recall, f1, support)
            if target_precision is None:
                better = f1 > best.f1
            elif precision >= target_precision:
                better = best.precision < target_precision or recall > best.recall
            else:
                better = best.precision < target_precision and precision > best.precision
            if better:
                best = current
        fits.append(best)
    if apply:
        router.set_thresholds({fit.route: fit.threshold for fit in fits})
    return fits


# -- building --------------------------------------------------------------------------------


def route_set(config: SemanticConfig) -> list[RouteConfig]:
    """The configured routes: the shipped set (re-pointed by ``targets``) then the user's."""
    routes: dict[str, RouteConfig] = {}
    if config.use_default_routes:
        for route in load_routes(default_routes_path()):
            routes[route.name] = route
    unknown = sorted(set(config.targets) - set(routes))
    if unknown:
        raise RoutingConfigError(
            f"semantic.targets names routes the shipped set lacks: {', '.join(unknown)} "
            f"(it has {', '.join(routes) or 'none: set use_default_routes'})"
        )
    for name, worker in config.targets.items():
        routes[name] = routes[name].model_copy(
            update={"worker": worker, "workflow": None, "router": None, "fallbacks": []}
        )
    for route in config.routes:
        routes[route.name] = route
    return list(routes.values())


def build_semantic(
    section: Any, parts: RouterParts, embedder: Embedder | None = None
) -> SemanticRouter:
    config = parse_section(section, SemanticConfig, "semantic")
    routes = route_set(config)
    compiled: list[CompiledRoute] = []
    utterances: list[str] = []
    for route in routes:
        texts = [text for text in route.utterances if text.strip()]
        if not texts:
            raise RoutingConfigError(f"semantic route {route.name!r} has no non-empty utterance")
        try:
            target = ResolvedTarget(route, parts, f"semantic route {route.name!r}")
        except RoutingConfigError as error:
            if route.name in config.targets or any(r.name == route.name for r in config.routes):
                raise
            raise RoutingConfigError(
                f"{error} (a shipped route: re-point it with routing.semantic.targets)"
            ) from None
        threshold = route.threshold if route.threshold is not None else config.threshold
        compiled.append(CompiledRoute(route.name, target, threshold, len(texts)))
        utterances.extend(texts)
    if compiled and embedder is None:
        embedder = StaticEmbedder.load(config.model) if config.model else parts.embedder()
    return SemanticRouter(
        compiled,
        embedder if compiled else None,
        utterances,
        scoring=config.scoring,
        margin=config.margin,
        models=config.models,
        max_chars=config.max_chars,
    )


def register_routers(registry: RouterRegistry) -> None:
    registry.register("semantic", build_semantic)
