"""The router chain: ask each router in order; the first decision wins.

A router answers a :class:`Decision` or ``None`` ("no opinion"). One that raises, overruns its
time budget or plans a workflow outside the eligible workers is skipped, and the reason is
recorded on the decision that wins. When nobody decides after such a failure (or for a virtual
model such as ``podium/auto``), the default worker answers, again with the reason recorded.

The same function serves the gateway, ``POST /v1/route`` and ``podium route --explain``, so the
decision they show is the decision a chat request gets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import CoroutineType, ModuleType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from podium.config import ConfigError, PodiumConfig
from podium.errors import PodiumError
from podium.resume import Resume
from podium.routing.base import Decision, RouteContext, Router
from podium.routing.config import RoutingConfigError
from podium.routing.direct import VIRTUAL_MODELS
from podium.routing.registry import RouterParts, RouterRegistry
from podium.types import ChatRequest
from podium.workflow import Workflow, WorkflowError

if TYPE_CHECKING:
    from podium.hooks import Hook
    from podium.routing.embeddings import Embedder

T = TypeVar("T")
Outcome = Literal["decided", "no_opinion", "failed", "timeout", "invalid", "refused", "not_asked"]
FALLBACK_ROUTER = "fallback"
MAX_ERROR_TEXT = 160


@dataclass(slots=True)
class Verdict:
    """What one router said about one request (for explanations and ``/v1/route``)."""

    router: str
    outcome: Outcome
    elapsed_ms: float = 0.0
    detail: str | None = None
    decision: Decision | None = None


async def within(call: Awaitable[T], budget_s: float) -> T:
    """``await call`` within ``budget_s`` seconds. Most routers decide without ever waiting
    (rules, aliases, cached embeddings): their first step runs with no timer at all, since
    a timer could not interrupt it anyway; a timer is set only for a router that waits."""
    if not isinstance(call, Coroutine):
        async with asyncio.timeout(budget_s):
            return await call
    started = asyncio.get_running_loop().time()
    try:
        pending = call.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    async with asyncio.timeout_at(started + budget_s):
        return await Resume(call, pending)


def _short(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 3] + "..."


async def decide(
    routers: Sequence[Router],
    request: ChatRequest,
    context: RouteContext,
    *,
    budget_s: float,
    default_worker: str | None,
    trail: list[Verdict] | None = None,
    ask_all: bool = False,
) -> Decision:
    """The winning decision. ``trail`` collects every router's verdict; ``ask_all`` keeps asking
    after the winner (to explain what the others would have said), without changing the winner."""
    allowed = context.eligible_names()
    failures: list[str] = []
    chosen: Decision | None = None
    loop = asyncio.get_running_loop()
    model = request.model
    for router in routers:
        if chosen is not None and not ask_all:
            break
        if trail is None:
            # A router that names the models it can decide for (``decides_for``) would say
            # "no opinion" about any other: not asked (a coroutine each, ~3k instructions),
            # unless an explanation wants every router's verdict.
            decides_for = getattr(router, "decides_for", None)
            if decides_for is not None and model not in decides_for:
                continue
        started = time.perf_counter() if trail is not None else 0.0
        outcome: Outcome = "no_opinion"
        detail: str | None = None
        try:
            call = router.plan(request, context)
            if type(call) is CoroutineType:
                # within(), inlined for the usual router (a plain coroutine): most decide
                # without waiting, and the chain asks several a request; a coroutine of
                # within's own for each cost ~2.5k instructions a router.
                begun = loop.time()
                try:
                    pending = call.send(None)
                except StopIteration as done:
                    decision = done.value
                else:
                    async with asyncio.timeout_at(begun + budget_s):
                        decision = await Resume(call, pending)
            else:
                decision = await within(call, budget_s)
        except TimeoutError:
            outcome, decision = "timeout", None
            detail = f"took longer than its budget of {budget_s * 1000:.0f} ms"
        except PodiumError as error:
            if chosen is None:
                raise  # a deliberate refusal (the named model is not eligible, say)
            outcome, detail, decision = "refused", error.message, None
        except Exception as error:  # a broken router must not take the gateway down
            outcome, detail, decision = "failed", f"failed ({_short(error)})", None
        if decision is not None:
            # Clearance is enforced here again, whatever the router said: every step and every
            # fallback must be an eligible worker.
            if decision.workflow.fallbacks:
                decision.workflow.fallbacks = [
                    w for w in decision.workflow.fallbacks if w in allowed
                ]
            try:
                decision.workflow.validate(allowed, context.checker_names())
            except WorkflowError as error:
                outcome, detail = "invalid", f"planned an invalid workflow: {error}"
                decision = None
            else:
                outcome, detail = "decided", decision.reason
        if trail is not None:
            # Only an explanation needs a verdict per router; a chat request asks for none.
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            trail.append(Verdict(router.name, outcome, elapsed_ms, detail, decision))
        if chosen is None:
            if outcome in ("failed", "timeout", "invalid"):
                failures.append(f"router {router.name!r} {detail}")
            elif decision is not None:
                chosen = decision
    if trail is not None and not ask_all:
        asked = {verdict.router for verdict in trail}
        trail.extend(Verdict(r.name, "not_asked") for r in routers if r.name not in asked)
    if chosen is None:
        chosen = _fallback(request, context, default_worker, failures)
    elif failures:
        chosen.reason = f"{chosen.reason} (after: {'; '.join(failures)})"
    return chosen


def _fallback(
    request: ChatRequest, context: RouteContext, default_worker: str | None, failures: list[str]
) -> Decision:
    if not failures and request.model not in VIRTUAL_MODELS:
        raise PodiumError(
            "not_found",
            f"the model {request.model!r} does not exist or is not available to you",
            param="model",
            code="model_not_found",
        )
    eligible = [worker.name for worker in context.eligible]
    if not eligible:
        raise PodiumError(
            "permission",
            f"no worker is cleared for this request (data class {context.data_class!r})",
            code="no_eligible_worker",
        )
    worker = default_worker if default_worker in eligible else eligible[0]
    why = "; ".join(failures) if failures else "no router had an opinion"
    return Decision(
        workflow=Workflow.single(worker, fallbacks=[w for w in eligible if w != worker]),
        router=FALLBACK_ROUTER,
        reason=f"the default worker {worker!r} answers: {why}",
    )


@dataclass
class Routing:
    """The routers of one Podium, in chain order, and the parts they were built from."""

    routers: list[Router]
    parts: RouterParts
    timeout: float
    hooks: list[Hook] = field(default_factory=list)

    @property
    def default_worker(self) -> str | None:
        return self.parts.config.default_worker

    def router(self, name: str) -> Router:
        return self.parts.router(name)

    def every_router(self) -> list[Router]:
        """The chain's routers and every router built for a rule, route or hint, each once."""
        seen = {id(router) for router in self.routers}
        return [*self.routers, *(r for r in self.parts.built().values() if id(r) not in seen)]

    async def decide(
        self,
        request: ChatRequest,
        context: RouteContext,
        *,
        trail: list[Verdict] | None = None,
        ask_all: bool = False,
    ) -> Decision:
        return await decide(
            self.routers,
            request,
            context,
            budget_s=self.timeout,
            default_worker=self.default_worker,
            trail=trail,
            ask_all=ask_all,
        )


def router_registry(modules: Sequence[ModuleType]) -> RouterRegistry:
    registry = RouterRegistry()
    for module in modules:
        register = getattr(module, "register_routers", None)
        if register is not None:
            register(registry)
    return registry


def build_routing(
    config: PodiumConfig,
    modules: Sequence[ModuleType],
    *,
    data_dir: Path | None = None,
    embedder: Embedder | None = None,
) -> Routing:
    """Build ``config.routing.chain`` from the routers the plugin ``modules`` register."""
    parts = RouterParts(
        config=config,
        registry=router_registry(modules),
        data_dir=data_dir or config.resolved_data_dir(),
        _embedder=embedder,
    )
    try:
        routers = [parts.router(name) for name in config.routing.chain]
    except RoutingConfigError as error:
        raise ConfigError(f"routing: {error}") from None
    return Routing(
        routers=routers, parts=parts, timeout=config.routing.timeout_ms / 1000, hooks=parts.hooks
    )


def describe_decision(decision: Decision) -> dict[str, Any]:
    """The decision as JSON-ready data: workflow, candidates, reason, rule and router."""
    workflow = decision.workflow
    return {
        "router": decision.router,
        "rule": decision.rule,
        "route": decision.route,
        "reason": decision.reason,
        "workflow": {
            "template": workflow.template,
            "key": workflow.key,  # a templated workflow's name, as its trace will record it
            "steps": [
                {
                    "worker": step.worker,
                    "role": step.role,
                    "instruction": step.instruction,
                    "access": step.access,
                }
                for step in workflow.steps
            ],
            "fallbacks": list(workflow.fallbacks),
        },
        "candidates": [
            {
                "worker": candidate.worker,
                "score": round(candidate.score, 6),
                "quality": candidate.quality,
                "cost_usd": candidate.cost_usd,
                "label": candidate.label,
            }
            for candidate in decision.candidates
        ],
    }


def describe_verdict(verdict: Verdict) -> dict[str, Any]:
    return {
        "router": verdict.router,
        "outcome": verdict.outcome,
        "elapsed_ms": round(verdict.elapsed_ms, 4),
        "detail": verdict.detail,
        "decision": describe_decision(verdict.decision) if verdict.decision else None,
    }
