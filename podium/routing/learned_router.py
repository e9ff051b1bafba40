"""The learned router in the gateway: it reads the promoted artifact, predicts per eligible
worker the probability of a good answer and the cost of the call, and picks by its policy.

The artifact is swapped without a restart: the router checks the ``current`` pointer (a
``stat``, at most once per ``reload_seconds``) and loads a newly promoted version on the next
request after the change (once, a few milliseconds); a request always sees one whole model,
and a file that fails to load leaves the previous model in service.

Workers map to the artifact's models by name, by their ``model`` field, by an alias, or by
``model_map``. A worker the artifact never saw gets a prior from its price and profile
(:meth:`QualityCostModel.prior_quality`). A configured price is the truth for cost: price x
predicted tokens (input from the prompt and its documents' text, with their pages' images for a
worker that reads PDFs itself; output from traces or ``default_output_tokens``);
an unpriced worker that the data knows is costed by the data's own cost line.

A column named ``template(worker,...)`` is a workflow the traces measured
(``podium.routing.training``): it is one more candidate, by its own predicted quality and its
data's cost, wherever its workers can run it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from podium.config import WorkerConfig
from podium.media import request_media
from podium.routing.artifacts import ArtifactStore, Version
from podium.routing.base import Candidate, Decision, RouteContext
from podium.routing.features import Embedder
from podium.routing.fit import fitting
from podium.routing.learned import Policy, QualityCostModel, below_floor, choose
from podium.routing.registry import TemplateRegistry
from podium.routing.templates import register_templates
from podium.types import ChatRequest
from podium.workers import estimate_tokens, tokens_for_length
from podium.workflow import Workflow, WorkflowError, parse_workflow_key

VIRTUAL_MODEL = "podium/auto"


class LearnedConfig(BaseModel):
    """``routing.routers.learned`` in podium.yaml (every field optional)."""

    model_config = ConfigDict(extra="forbid")

    type: str | None = None
    artifact: str | None = None  # a .npz file; default: the promoted version in data_dir/routers
    policy: Literal["tradeoff", "target", "budget"] | None = None  # default: the artifact's
    lam: float | None = Field(None, ge=0)
    target: float | None = Field(None, ge=0, le=1)
    budget_usd: float | None = Field(None, gt=0)
    # below this predicted quality for every worker, the cheapest answers (any policy)
    floor: float | None = Field(None, ge=0, le=1)
    model_map: dict[str, str] = Field(default_factory=dict)  # worker -> model in the data
    default_output_tokens: int = Field(256, ge=1)
    reload_seconds: float = Field(1.0, ge=0)
    models: list[str] = Field(default_factory=lambda: [VIRTUAL_MODEL])


@dataclass(slots=True)
class Estimate:
    worker: WorkerConfig  # for a workflow, its first step's
    quality: float
    cost: float
    known: bool  # False: the quality is a prior
    workflow: Workflow | None = None  # a workflow the artifact measured, instead of one call

    @property
    def name(self) -> str:
        key = self.workflow.key if self.workflow is not None else None
        return key or self.worker.name


class ModelHandle:
    """The artifact in force, reloaded when the ``current`` pointer changes."""

    def __init__(
        self,
        store: ArtifactStore | None,
        path: Path | None,
        embedder: Callable[[], Embedder | None],
        reload_seconds: float = 1.0,
    ) -> None:
        self.store = store
        self.path = path
        self._embedder_factory = embedder
        self._embedder: Embedder | None = None
        self.reload_seconds = reload_seconds
        self.model: QualityCostModel | None = None
        self.version: str | None = None
        self.error: str | None = None
        self._checked = 0.0
        self._stamp: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def embedder(self) -> Embedder | None:
        if self._embedder is None:
            self._embedder = self._embedder_factory()
        return self._embedder

    def _target(self) -> tuple[Path, str] | None:
        if self.path is not None:
            return self.path, self.path.stem
        if self.store is None:
            return None
        version: Version | None = self.store.current()
        return (version.path, version.name) if version else None

    def reload(self, *, force: bool = False) -> QualityCostModel | None:
        """Load the artifact in force if it changed since the last look."""
        now = time.monotonic()
        if not force and self.model is not None and now - self._checked < self.reload_seconds:
            return self.model
        with self._lock:
            self._checked = now
            target = self._target()
            if target is None:
                self.model, self.version, self._stamp = None, None, None
                self.error = "no learned-router artifact is promoted"
                return None
            path, name = target
            try:
                stamp = (name, path.stat().st_mtime)
            except OSError as error:
                self.error = f"cannot read {path.name}: {error.strerror}"
                return self.model
            if stamp == self._stamp and self.model is not None and not force:
                return self.model
            try:
                model = QualityCostModel.load(path)
                model.featurizer(self.embedder() if model.spec.embedding_dim else None)
                if model.needs_embedder:
                    self.embedder()  # load it now, not on the first request
            except Exception as error:  # a bad file must not take routing down
                self.error = f"cannot load {path.name}: {type(error).__name__}: {error}"
                return self.model
            self.model, self.version, self._stamp, self.error = model, name, stamp, None
            return model


class WorkerScorer:
    """Per eligible worker: predicted quality and cost for one request."""

    def __init__(
        self,
        config: LearnedConfig,
        handle: ModelHandle,
        templates: TemplateRegistry | None = None,
    ) -> None:
        """``templates``: what builds a measured workflow (default: the built-in templates)."""
        self.config = config
        self.handle = handle
        self.templates = templates if templates is not None else builtin_templates()

    def column(self, model: QualityCostModel, worker: WorkerConfig) -> int | None:
        index = {name: j for j, name in enumerate(model.models)}
        for key in (self.config.model_map.get(worker.name), worker.name, worker.model):
            if key is not None and key in index:
                return index[key]
        for alias in worker.aliases:
            if alias in index:
                return index[alias]
        return None

    def estimates(
        self,
        request: ChatRequest,
        eligible: Sequence[WorkerConfig],
        checkers: frozenset[str] | None = None,
    ) -> tuple[list[Estimate], QualityCostModel]:
        """Per eligible worker; with ``checkers`` (the cleared workers that only check or run),
        also per workflow the artifact measured whose every step can run here."""
        model = self.handle.reload()
        if model is None:
            raise LookupError(self.handle.error or "no learned-router artifact")
        text = request.prompt_text()
        embedder = self.handle.embedder() if model.needs_embedder else None
        quality = model.predict_quality([text], embedder)[0]
        data_cost = model.predict_cost([text])[0]
        prompt_in = estimate_tokens(text)
        if request.attachments:  # every worker reads the documents' text
            prompt_in += tokens_for_length(request.documents_length())
        # Images and PDF pages cost each worker its own tokens (podium/media.py).
        media = request_media(request)
        out: list[Estimate] = []
        for worker in eligible:
            j = self.column(model, worker)
            tokens_in = prompt_in + media.tokens(worker) if media else prompt_in
            price = worker.price.at(tokens_in)  # a long prompt pays its tier's rates
            if price.input > 0 or price.output > 0 or j is None:
                tokens_out = float(self.config.default_output_tokens)
                if j is not None and model.output_tokens[j] > 0:
                    tokens_out = float(model.output_tokens[j])
                if request.max_tokens is not None:
                    tokens_out = min(tokens_out, float(request.max_tokens))
                cost = (tokens_in * price.input + tokens_out * price.output) / 1_000_000
            else:
                cost = float(data_cost[j])
            if j is None:
                out.append(
                    Estimate(worker, model.prior_quality(cost, worker.quality_prior), cost, False)
                )
            else:
                out.append(Estimate(worker, float(quality[j]), cost, True))
        if checkers is not None:
            out.extend(
                measured_workflows(model, quality, data_cost, eligible, checkers, self.templates)
            )
        return out, model


def measured_workflows(
    model: QualityCostModel,
    quality: npt.NDArray[np.float64],
    data_cost: npt.NDArray[np.float64],
    eligible: Sequence[WorkerConfig],
    checkers: frozenset[str],
    templates: TemplateRegistry,
) -> list[Estimate]:
    """The artifact's workflow columns (``template(worker,...)``) that can run on this pool,
    built by the gateway's templates and priced as the traces they were learned from cost."""
    by_name = {worker.name: worker for worker in eligible}
    names = set(by_name)
    found: list[Estimate] = []
    for j, column in enumerate(model.models):
        parsed = parse_workflow_key(column)
        if parsed is None or parsed[0] not in templates or parsed[1][0] not in by_name:
            continue
        template, members = parsed
        try:
            workflow = templates.build(template, members, {})
            workflow.validate(names, checkers)
        except WorkflowError:
            continue  # a member is not cleared for this request, or the template changed
        found.append(
            Estimate(by_name[members[0]], float(quality[j]), float(data_cost[j]), True, workflow)
        )
    return found


def workflow_checkers(request: ChatRequest, context: RouteContext) -> frozenset[str] | None:
    """The checkers a measured workflow may use for this request, or None when no workflow
    may answer it: a tool call or a response format is one worker's answer to give."""
    if request.tools or request.response_format is not None:
        return None
    return context.checker_names()


def builtin_templates() -> TemplateRegistry:
    registry = TemplateRegistry()
    register_templates(registry)
    return registry


class LearnedRouter:
    def __init__(
        self,
        config: LearnedConfig,
        handle: ModelHandle,
        name: str = "learned",
        templates: TemplateRegistry | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.handle = handle
        self.scorer = WorkerScorer(config, handle, templates)
        self.templates = self.scorer.templates

    def policy(self, model: QualityCostModel, context: RouteContext) -> Policy:
        base = model.policy
        policy = Policy(
            kind=self.config.policy or base.kind,
            lam=self.config.lam if self.config.lam is not None else base.lam,
            target=self.config.target if self.config.target is not None else base.target,
            budget_usd=self.config.budget_usd or base.budget_usd,
            floor=self.config.floor if self.config.floor is not None else base.floor,
        )
        if context.budget_usd is not None:  # the request's own budget wins
            policy.kind, policy.budget_usd = "budget", context.budget_usd
        return policy

    async def plan(self, request: ChatRequest, context: RouteContext) -> Decision | None:
        if request.model not in self.config.models:
            return None
        workers = fitting(request, context.eligible)
        if not workers:
            return None
        estimates, model = self.scorer.estimates(
            request, workers, workflow_checkers(request, context)
        )
        policy = self.policy(model, context)
        quality = np.asarray([[e.quality for e in estimates]])
        cost = np.asarray([[e.cost for e in estimates]])
        pick = int(choose(quality, cost, policy)[0])
        scores = [e.quality - policy.lam * e.cost for e in estimates]
        order = sorted(range(len(estimates)), key=lambda j: -scores[j])
        chosen = estimates[pick]
        last = chosen.workflow.steps[-1].worker if chosen.workflow else chosen.worker.name
        fallbacks = [
            estimates[j].worker.name
            for j in order
            if estimates[j].workflow is None and estimates[j].worker.name != last
        ]
        if chosen.workflow is None:
            workflow = Workflow.single(chosen.worker.name, fallbacks=fallbacks)
        else:
            workflow = chosen.workflow
            workflow.fallbacks = fallbacks
        return Decision(
            workflow=workflow,
            router=self.name,
            reason=explain(chosen, estimates, policy, self.handle.version),
            candidates=[
                Candidate(
                    e.worker.name,
                    scores[j],
                    round(e.quality, 6),
                    e.cost,
                    e.name if e.workflow else None,
                )
                for j, e in sorted(enumerate(estimates), key=lambda item: -scores[item[0]])
            ],
        )


def explain(
    chosen: Estimate, estimates: Sequence[Estimate], policy: Policy, version: str | None
) -> str:
    prior = "" if chosen.known else " (a prior: the model has no data for this worker yet)"
    if below_floor(np.asarray([[e.quality for e in estimates]]), policy)[0]:
        rule = f"every worker's predicted quality < {policy.floor:.2f}: the cheapest"
    elif policy.kind == "target":
        rule = f"the cheapest worker predicted to reach quality {policy.target:.2f}"
    elif policy.kind == "budget":
        rule = f"the best worker within ${policy.budget_usd:.6f} a request"
    else:
        rule = f"the best quality - {policy.lam:g} x cost"
    return (
        f"{version or 'learned'}: {rule}: {chosen.name!r} with predicted quality "
        f"{chosen.quality:.2f}{prior} at ${chosen.cost:.6f}"
    )
