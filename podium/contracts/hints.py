"""A contract's routing hint (``policy.routing``), resolved against the router configuration
when Podium starts, so a hint that names no rule, router, template or worker is a
configuration error naming the contract, not a silent detour or a 500 on the first call.

Per call, a hint decides among the workers the contract's policy left eligible, or passes
the call to the router chain and says why (its worker is not eligible, its template cannot
be built from the eligible workers, its router had no opinion).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from podium.contracts.model import Contract
from podium.routing.base import Decision, RouteContext, Router
from podium.routing.chain import Routing, decide
from podium.routing.config import RoutingConfigError, Target, WorkflowTarget
from podium.routing.targets import ResolvedTarget, Skip
from podium.types import ChatRequest

if TYPE_CHECKING:
    from podium.gateway import Gateway

ROUTER = "contract"  # the router name a hint's decision carries (x-podium-route, the trace)


class HintError(Exception):
    """A hint that names something Podium does not have."""


class Hint(Protocol):
    label: str  # what the hint names, for reasons: "rule 'sql'"

    async def decide(
        self, request: ChatRequest, context: RouteContext, weakest_first: Sequence[str]
    ) -> Decision | Skip:
        """The hint's decision, or a :class:`Skip` saying why the router chain decides."""
        ...


class TargetHint:
    """A rule's target (whatever the rule's conditions), or a workflow template over the
    workers the contract names (those eligible, in order)."""

    def __init__(
        self, label: str, target: ResolvedTarget, *, router: str, rule: str | None, reason: str
    ) -> None:
        self.label = label
        self._target = target
        self._router = router
        self._rule = rule
        self._reason = reason

    async def decide(
        self, request: ChatRequest, context: RouteContext, weakest_first: Sequence[str]
    ) -> Decision | Skip:
        outcome = await self._target.decide(
            request, context, router=self._router, rule=self._rule, reason=self._reason
        )
        return Skip("its router had no opinion") if outcome is None else outcome


class RouterHint:
    """A router by name, asked first; the chain follows when it has no opinion or fails."""

    def __init__(self, router: Router, gateway: Gateway) -> None:
        self.label = f"router {router.name!r}"
        self._routers = [router, *(r for r in gateway.routers if r is not router)]
        self._gateway = gateway

    async def decide(
        self, request: ChatRequest, context: RouteContext, weakest_first: Sequence[str]
    ) -> Decision | Skip:
        return await decide(
            self._routers,
            request,
            context,
            budget_s=max(self._gateway.router_timeout, 1.0),
            default_worker=self._gateway.default_worker,
        )


class PoolWorkflowHint:
    """A workflow template over every eligible worker, weakest first."""

    def __init__(
        self, contract: Contract, routing: Routing, template: str, options: Mapping[str, Any]
    ) -> None:
        self.label = f"workflow {template!r}"
        self._templates = routing.parts.templates
        self._template = template
        self._options = options
        self._reason = f"contract {contract.key}: workflow template {template!r}"

    async def decide(
        self, request: ChatRequest, context: RouteContext, weakest_first: Sequence[str]
    ) -> Decision | Skip:
        try:
            workflow = self._templates.build(self._template, weakest_first, self._options)
        except (ValueError, IndexError) as error:  # too few workers for the template, say
            return Skip(f"template {self._template!r} cannot be built: {error}")
        return Decision(workflow=workflow, router=ROUTER, reason=self._reason)


def resolve_hint(contract: Contract, routing: Routing, gateway: Gateway) -> Hint | None:
    """The contract's hint, checked against the configuration; raises :class:`HintError`."""
    hint = contract.policy.routing
    owner = f"contract {contract.key}: policy.routing"
    try:
        if hint.rule is not None:
            rules = getattr(routing.router("rules"), "rules", [])
            found = next((rule for rule in rules if rule.name == hint.rule), None)
            if found is None:
                known = ", ".join(repr(rule.name) for rule in rules) or "none"
                raise HintError(
                    f"{owner} names rule {hint.rule!r}, which routing.rules does not have "
                    f"(rules: {known})"
                )
            return TargetHint(
                f"rule {hint.rule!r}",
                found.target,
                router="rules",
                rule=hint.rule,
                reason=f"contract {contract.key} names rule {hint.rule!r}",
            )
        if hint.router is not None:
            return RouterHint(routing.router(hint.router), gateway)
        if hint.workflow is None:
            return None
        template = hint.workflow.template
        if template not in routing.parts.templates:
            raise HintError(
                f"{owner} names workflow template {template!r} "
                f"(known: {', '.join(routing.parts.templates.names())})"
            )
        if not hint.workflow.workers:
            return PoolWorkflowHint(contract, routing, template, hint.workflow.options)
        flow = WorkflowTarget(
            template=template, workers=hint.workflow.workers, options=hint.workflow.options
        )
        target = ResolvedTarget(Target(workflow=flow), routing.parts, owner)
    except RoutingConfigError as error:
        raise HintError(str(error) if owner in str(error) else f"{owner}: {error}") from None
    checkers = [w.name for w in routing.parts.config.workers if w.role == "check"]
    for name in target.workers:
        if name in checkers:
            raise HintError(
                f"{owner}: worker {name!r} only checks drafts (role: check), and a "
                "contract's output is checked against its schema instead"
            )
    return TargetHint(
        target.label,
        target,
        router=ROUTER,
        rule=None,
        reason=f"contract {contract.key}: {target.label}",
    )
