"""The workflow router: per request, it chooses among a single call, a cascade and multi-step
templates by expected quality and cost, from the learned router's per-worker predictions.

With p_w the predicted probability that worker w answers well and c_w its predicted cost:

- single(w): quality p_w, cost c_w.
- cascade(cheap a, strong b) with a check of reliability r (it accepts a good draft and
  rejects a bad one with probability r): the draft stands with probability p_a r + (1-p_a)(1-r)
  and is escalated otherwise, so quality = p_a r + (p_a (1-r) + (1-p_a) r) p_b and cost =
  c_a (1 + check_cost) + P(escalate) c_b. With r = 1 this is 1 - (1-p_a)(1-p_b).
- solve_verify(a, v): quality p_a + g_verify (1-p_a) p_v, cost c_a + 1.5 c_v.
- plan_solve(p, a): quality p_a + g_plan (1-p_a) p_p, cost c_p + 1.3 c_a.
- fanout(k proposers + synthesiser s): quality max p + g_fanout (1 - max p) (1 - prod(1-p_i)),
  cost sum c_i + (1 + k/2) c_s.

The gains g and the reliability r are priors (configurable); they keep the multi-step
templates from looking better than they are. A workflow the artifact has measured (a column
``template(worker,...)`` learned from its traces' outcomes, ``podium.routing.training``) is
scored by its own predictions instead of these formulas, whatever its template.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import Field

from podium.routing.base import Candidate, Decision, RouteContext
from podium.routing.fit import fitting
from podium.routing.learned import Policy, below_floor, choose
from podium.routing.learned_router import (
    Estimate,
    LearnedConfig,
    LearnedRouter,
    ModelHandle,
    workflow_checkers,
)
from podium.routing.registry import TemplateRegistry
from podium.routing.templates import TEMPLATES
from podium.types import ChatRequest

# the templates this router can score from per-worker predictions and priors (``program``'s
# quality is no function of its writer's: it is scored once traces have measured it)
SCORED = ("single", "cascade", "plan_solve", "solve_verify", "fanout")


class WorkflowConfig(LearnedConfig):
    """``routing.routers.workflow``: the learned router's settings plus the templates."""

    templates: list[str] = Field(default_factory=lambda: ["single", "cascade"])
    check_reliability: float = Field(0.75, ge=0.5, le=1)
    check_cost: float = Field(0.3, ge=0)  # the check's cost as a share of the draft's
    gain_verify: float = Field(0.25, ge=0, le=1)
    gain_plan: float = Field(0.1, ge=0, le=1)
    gain_fanout: float = Field(0.3, ge=0, le=1)
    fanout_k: int = Field(3, ge=2, le=4)
    shortlist: int = Field(3, ge=1, le=8)  # workers per role considered for multi-step plans


@dataclass(slots=True)
class Option:
    template: str
    workers: list[str]
    quality: float
    cost: float


def options_for(estimates: list[Estimate], config: WorkflowConfig) -> list[Option]:
    """Every template instance worth scoring over ``estimates``."""
    by_value = sorted(estimates, key=lambda e: -(e.quality - 1e-9 * e.cost))
    short = by_value[: config.shortlist]
    cheap = sorted(estimates, key=lambda e: (e.cost, -e.quality))[: config.shortlist]
    found: list[Option] = []
    enabled = set(config.templates)
    if "single" in enabled or not enabled:
        found.extend(Option("single", [e.worker.name], e.quality, e.cost) for e in estimates)
    r = config.check_reliability
    if "cascade" in enabled:
        for a, b in itertools.product(cheap, short):
            if a is b or a.cost >= b.cost or a.quality >= b.quality:
                continue
            escalate = a.quality * (1 - r) + (1 - a.quality) * r
            quality = a.quality * r + escalate * b.quality
            cost = a.cost * (1 + config.check_cost) + escalate * b.cost
            found.append(Option("cascade", [a.worker.name, b.worker.name], quality, cost))
    if "solve_verify" in enabled:
        for a, v in itertools.product(short, short):
            quality = a.quality + config.gain_verify * (1 - a.quality) * v.quality
            found.append(
                Option(
                    "solve_verify", [a.worker.name, v.worker.name], quality, a.cost + 1.5 * v.cost
                )
            )
    if "plan_solve" in enabled:
        for p, a in itertools.product(cheap, short):
            quality = a.quality + config.gain_plan * (1 - a.quality) * p.quality
            found.append(
                Option("plan_solve", [p.worker.name, a.worker.name], quality, p.cost + 1.3 * a.cost)
            )
    if "fanout" in enabled and len(estimates) >= 2:
        proposers = by_value[: config.fanout_k]
        best = max(e.quality for e in proposers)
        miss = float(np.prod([1 - e.quality for e in proposers]))
        synth = by_value[0]
        quality = best + config.gain_fanout * (1 - best) * (1 - miss)
        cost = sum(e.cost for e in proposers) + (1 + len(proposers) / 2) * synth.cost
        found.append(
            Option(
                "fanout", [e.worker.name for e in proposers] + [synth.worker.name], quality, cost
            )
        )
    return found


class WorkflowRouter(LearnedRouter):
    def __init__(
        self,
        config: WorkflowConfig,
        handle: ModelHandle,
        name: str = "workflow",
        templates: TemplateRegistry | None = None,
    ) -> None:
        super().__init__(config, handle, name, templates)
        self.workflow_config = config

    async def plan(self, request: ChatRequest, context: RouteContext) -> Decision | None:
        if request.model not in self.config.models:
            return None
        workers = fitting(request, context.eligible)
        if not workers:
            return None
        checkers = workflow_checkers(request, context)
        found, model = self.scorer.estimates(request, workers, checkers)
        estimates = [e for e in found if e.workflow is None]
        policy = self.policy(model, context)
        if checkers is None:
            # a tool call or a response format cannot be checked or merged as text
            config = self.workflow_config.model_copy(update={"templates": ["single"]})
        else:
            config = self.workflow_config
        measured = {
            (e.workflow.template, tuple(e.workflow.members)): Option(
                e.workflow.template, e.workflow.members, e.quality, e.cost
            )
            for e in found
            if e.workflow is not None
        }
        # a measured workflow's own predictions replace the priors' guess at it
        options = [
            o
            for o in options_for(estimates, config)
            if (o.template, tuple(o.workers)) not in measured
        ]
        options.extend(measured.values())
        quality = np.asarray([[o.quality for o in options]])
        cost = np.asarray([[o.cost for o in options]])
        pick = int(choose(quality, cost, policy)[0])
        chosen = options[pick]
        workflow = self.templates.build(chosen.template, chosen.workers, {})
        if chosen.template == "single":
            ranked = sorted(estimates, key=lambda e: -(e.quality - policy.lam * e.cost))
            workflow.fallbacks = [
                e.worker.name for e in ranked if e.worker.name != chosen.workers[0]
            ]
        ranked_options = sorted(options, key=lambda o: -(o.quality - policy.lam * o.cost))
        runner_up = next((o for o in ranked_options if o is not chosen), None)
        return Decision(
            workflow=workflow,
            router=self.name,
            reason=describe(chosen, runner_up, policy, self.handle.version, quality),
            candidates=[
                Candidate(
                    e.worker.name, e.quality - policy.lam * e.cost, round(e.quality, 6), e.cost
                )
                for e in sorted(estimates, key=lambda e: -(e.quality - policy.lam * e.cost))
            ],
        )


def describe(
    chosen: Option,
    runner_up: Option | None,
    policy: Policy,
    version: str | None,
    quality: npt.NDArray[np.float64],
) -> str:
    def text(option: Option) -> str:
        return (
            f"{option.template}({', '.join(option.workers)}) predicted quality "
            f"{option.quality:.2f} at ${option.cost:.6f}"
        )

    rule = {"target": f"target quality {policy.target:.2f}", "budget": "request budget"}.get(
        policy.kind, f"quality - {policy.lam:g} x cost"
    )
    if below_floor(quality, policy)[0]:
        rule = f"every option's predicted quality < {policy.floor:.2f}: the cheapest"
    reason = f"{version or 'learned'} by {rule}: {text(chosen)}"
    if runner_up is not None:
        reason += f"; next best {text(runner_up)}"
    return reason


def workflow_config(section: Any) -> WorkflowConfig:
    from podium.routing.config import parse_section

    config = parse_section(section, WorkflowConfig, "workflow")
    unknown = [t for t in config.templates if t not in SCORED]
    if unknown:
        from podium.routing.config import RoutingConfigError

        why = (
            "it has no prior: the router scores it once traces have measured it"
            if unknown[0] in TEMPLATES
            else "unknown"
        )
        raise RoutingConfigError(
            f"workflow: template {unknown[0]!r} cannot be scored from priors ({why}; scored "
            f"from priors: {', '.join(SCORED)})"
        )
    return config
