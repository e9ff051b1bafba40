"""Where a rule or a semantic route sends a request: a worker, a workflow template, or another
router. Names are checked once, when the router is built; eligibility per request."""

from __future__ import annotations

from dataclasses import dataclass

from podium.routing.base import Candidate, Decision, RouteContext, Router
from podium.routing.config import RoutingConfigError, Target
from podium.routing.fit import cannot_take
from podium.routing.registry import RouterParts
from podium.types import ChatRequest
from podium.workflow import Workflow


@dataclass(slots=True)
class Skip:
    """The target matched but cannot take this request; ``reason`` says why."""

    reason: str


class ResolvedTarget:
    def __init__(self, target: Target, parts: RouterParts, owner: str) -> None:
        """``owner`` names the rule or route for error messages (``rule 'sql'``)."""
        self.label = target.describe()
        self._options = target.workflow.options if target.workflow is not None else {}
        self._template: str | None = None
        self._router: Router | None = None
        self.workers: list[str] = []
        self.fallbacks = [_worker(name, parts, owner) for name in target.fallbacks]
        if target.worker is not None:
            self.workers = [_worker(target.worker, parts, owner)]
        elif target.workflow is not None:
            if target.workflow.template not in parts.templates:
                raise RoutingConfigError(
                    f"{owner}: unknown workflow template {target.workflow.template!r} "
                    f"(known: {', '.join(parts.templates.names())})"
                )
            self._template = target.workflow.template
            self._parts = parts
            self.workers = [_worker(name, parts, owner) for name in target.workflow.workers]
        else:
            assert target.router is not None
            self._router = parts.router(target.router)

    @property
    def router(self) -> Router | None:
        return self._router

    async def decide(
        self,
        request: ChatRequest,
        context: RouteContext,
        *,
        router: str,
        rule: str | None,
        reason: str,
        candidates: list[Candidate] | None = None,
    ) -> Decision | Skip | None:
        """A decision, a :class:`Skip` (not eligible), or None when a delegate router had no
        opinion."""
        if self._router is not None:
            delegated = await self._router.plan(request, context)
            if delegated is None:
                return None
            return Decision(
                workflow=delegated.workflow,
                router=router,
                rule=rule,
                reason=f"{reason}; router {self._router.name!r} chose: {delegated.reason}",
                candidates=delegated.candidates or (candidates or []),
            )
        allowed = context.eligible_names()
        if self._template is None:
            worker = self.workers[0]
            if worker not in allowed:
                return Skip(f"worker {worker!r} is not eligible for this request")
            config = next(w for w in context.eligible if w.name == worker)
            why = cannot_take(request, config)
            if why is not None:
                return Skip(why)
            workflow = Workflow.single(
                worker, fallbacks=[w for w in self.fallbacks if w in allowed]
            )
        else:
            allowed |= context.checker_names()  # a template may give a checker a check step
            workers = [w for w in self.workers if w in allowed]
            if not workers:
                return Skip(f"none of {', '.join(self.workers)} is eligible for this request")
            try:
                workflow = self._parts.templates.build(self._template, workers, self._options)
            except (ValueError, IndexError) as error:
                return Skip(f"template {self._template!r} cannot be built: {error}")
            workflow.fallbacks = workflow.fallbacks or [w for w in self.fallbacks if w in allowed]
        return Decision(
            workflow=workflow,
            router=router,
            rule=rule,
            reason=reason,
            candidates=candidates or [Candidate(worker=workflow.steps[-1].worker, score=1.0)],
        )


def _worker(name: str, parts: RouterParts, owner: str) -> str:
    """A configured worker's name, from its name or an alias."""
    config = parts.config
    if name in parts.worker_names():
        return name
    if name in config.aliases:
        return config.aliases[name]
    for worker in config.workers:
        if name in worker.aliases:
            return worker.name
    raise RoutingConfigError(f"{owner}: {name!r} is not a configured worker or alias")
