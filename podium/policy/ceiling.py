"""Routing manipulation defences: the router's choice cannot be bought by the prompt.

A prompt crafted to look hard (the "Rerouting LLM Routers" attack) makes a router pick an
expensive worker. Two checks run on every decision before anything is spent:

- a cost ceiling per request (key metadata ``max_cost_usd``, else ``policy.cost.max_cost_usd``):
  a plan estimated above it is refused (402) or downgraded to the cheapest candidate under it;
- an overspend check: a plan whose worker costs ``overspend_ratio`` times the cheapest
  eligible candidate, for content that looks easy (short, or the cheap candidate is predicted
  to do well), is recorded in the trace and the audit trail, and capped when configured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from podium.context import RequestContext
from podium.errors import PodiumError
from podium.hooks import Hook
from podium.media import NO_MEDIA, Media, request_media
from podium.policy.classify import DataClasses
from podium.policy.content_settings import CostGuardSettings
from podium.routing.base import Decision
from podium.routing.fit import cannot_take
from podium.types import ChatRequest
from podium.workers import (
    PlainRates,
    PoolAnswers,
    WorkerPool,
    price_tokens,
    tokens_for_length,
)
from podium.workflow import Workflow

if TYPE_CHECKING:
    from podium.policy.content import Audit


REROUTED = "injection:reroute"  # the policy action the injection screen notes


def rerouted_for_injection(context: RequestContext) -> bool:
    """Whether the injection screen sent this request to the hardened workers."""
    # A plain loop: any() over a generator costs more, and this runs on every request.
    for entry in context.policy_actions:  # noqa: SIM110
        if entry.startswith(REROUTED):
            return True
    return False


class CostGuardHook(Hook):
    def __init__(
        self,
        settings: CostGuardSettings,
        pool: WorkerPool,
        *,
        audit: Audit | None = None,
        classes: DataClasses | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.classes = classes
        self.audit = audit
        # The same few answers for every request until the pool changes: kept per class.
        self._cleared_names = PoolAnswers(pool, self._serving_cleared)
        # Each worker's rates and output limit, read once per pool version (key: None).
        self._rates = PoolAnswers(pool, self._pool_rates)

    def estimate(
        self, worker: str, request: ChatRequest, prompt_tokens: int, media: Media = NO_MEDIA
    ) -> float | None:
        """None for a worker it cannot price: unknown, or one that only checks drafts (a plan
        prices it at nothing, and no downgrade may pick it). ``media``: the request's images
        and PDF pages, which each worker is billed for its own way."""
        found = self.pool.get(worker)
        if found is None or found.config.role != "answer":
            return None
        config = found.config
        output = request.max_tokens or config.max_output_tokens or self.settings.output_tokens
        if media:
            prompt_tokens += media.tokens(config)
        return price_tokens(config.price, prompt_tokens, output)

    def plan_cost(
        self,
        workflow: Workflow,
        request: ChatRequest,
        prompt_tokens: int,
        known: dict[str, float | None] | None = None,
        media: Media = NO_MEDIA,
    ) -> float:
        """The plan's estimate; ``known`` remembers each worker's for this request."""
        total = 0.0
        for step in workflow.steps:
            total += self._estimate(step.worker, request, prompt_tokens, known, media) or 0.0
        return total

    def _estimate(
        self,
        worker: str,
        request: ChatRequest,
        prompt_tokens: int,
        known: dict[str, float | None] | None,
        media: Media = NO_MEDIA,
    ) -> float | None:
        if known is None:
            return self.estimate(worker, request, prompt_tokens, media)
        if worker in known:
            return known[worker]
        cost = known[worker] = self.estimate(worker, request, prompt_tokens, media)
        return cost

    def ceiling(self, context: RequestContext) -> float | None:
        raw = context.caller.metadata.get("max_cost_usd")
        if raw:
            try:
                return float(raw)
            except ValueError:
                pass  # a malformed key setting must not lift the configured ceiling
        return self.settings.max_cost_usd

    def _record(
        self, context: RequestContext, action: str, entry: str, details: dict[str, Any]
    ) -> None:
        context.policy_actions.append(entry)
        if self.audit is not None and action:
            self.audit.record(f"key:{context.caller.key_id}", action, context.trace_id, details)

    def _cleared(self, context: RequestContext) -> list[str]:
        """Serving workers cleared for this request's class (the gateway re-checks any
        downgrade against the eligible set anyway)."""
        if self.classes is None or rerouted_for_injection(context):
            return []
        return self._cleared_names.get((context.data_class, context.pseudonyms is not None))

    def _serving_cleared(self, key: tuple[str, bool]) -> list[str]:
        data_class, pseudonymised = key
        classes = self.classes
        assert classes is not None  # asked only with classes (see _cleared)
        return [
            worker.name
            for worker in self.pool.serving()
            if classes.cleared(worker.config, data_class, pseudonymised=pseudonymised)
        ]

    def _pool_rates(self, _: None) -> dict[str, tuple[PlainRates, int | None]]:
        return {
            worker.name: (PlainRates.of(worker.config.price), worker.config.max_output_tokens)
            for worker in self.pool
            if worker.config.role == "answer"
        }

    def _chosen_is_cheapest(
        self, request: ChatRequest, decision: Decision, prompt_tokens: int, context: RequestContext
    ) -> bool:
        """For a one-step plan under no ceiling: is there nothing to do, because the plan costs
        nothing or its worker is the cheapest option (what :meth:`_judge` would find)? False
        also when unsure (a NaN price): then the full check decides."""
        rates = self._rates.get(None)
        chosen = decision.workflow.steps[0].worker
        found = rates.get(chosen)
        if found is None:
            return True  # priced at nothing, as plan_cost prices an unknown worker
        max_tokens = request.max_tokens
        default_output = self.settings.output_tokens
        price, limit = found
        planned = price_tokens(price, prompt_tokens, max_tokens or limit or default_output)
        if planned <= 0:
            return True
        if planned != planned:
            return False
        # The same names _cheapest prices; chosen is cheapest when no other sorts before it.
        names = [c.worker for c in decision.candidates]
        names += decision.workflow.fallbacks
        names += self._cleared(context)
        for name in names:
            found = rates.get(name)
            if found is None or name == chosen:
                continue
            price, limit = found
            cost = price_tokens(price, prompt_tokens, max_tokens or limit or default_output)
            if cost < planned or (cost == planned and name < chosen) or cost != cost:
                return False
        return True

    def _cheapest(
        self,
        decision: Decision,
        request: ChatRequest,
        prompt_tokens: int,
        context: RequestContext,
        known: dict[str, float | None] | None = None,
        media: Media = NO_MEDIA,
    ) -> list[tuple[float, str]]:
        names = dict.fromkeys(
            [c.worker for c in decision.candidates]
            + decision.workflow.workers
            + decision.workflow.fallbacks
            + self._cleared(context)
        )
        priced = []
        for name in names:
            # a worker that surely cannot answer (images it cannot read, a prompt its context
            # window cannot hold) is no option; tools are not judged by what a config declares
            worker = self.pool.get(name)
            if worker is not None and cannot_take(request, worker.config, media) is not None:
                continue
            cost = self._estimate(name, request, prompt_tokens, known, media)
            if cost is not None:
                priced.append((cost, name))
        return sorted(priced)

    async def decided(
        self, request: ChatRequest, decision: Decision, context: RequestContext
    ) -> None:
        if request.attachments or request.has_images():
            # Every worker reads the documents' text; images and PDF pages cost each worker
            # its own tokens, priced per worker by the full check.
            length = request.prompt_length() + request.documents_length()
            media = request_media(request)
            ceiling = self.ceiling(context)
            self._judge(request, decision, context, tokens_for_length(length), ceiling, media)
            return
        prompt_tokens = tokens_for_length(request.prompt_length())
        ceiling = self.ceiling(context)
        # The usual plan (one step, no ceiling, its worker the cheapest) needs no sorted
        # options: a few prices compared, without the full check's lists and calls.
        if (
            ceiling is None
            and len(decision.workflow.steps) == 1
            and self._chosen_is_cheapest(request, decision, prompt_tokens, context)
        ):
            return
        self._judge(request, decision, context, prompt_tokens, ceiling)

    def _judge(
        self,
        request: ChatRequest,
        decision: Decision,
        context: RequestContext,
        prompt_tokens: int,
        ceiling: float | None,
        media: Media = NO_MEDIA,
    ) -> None:
        known: dict[str, float | None] = {}  # each worker priced once for this request
        planned = self.plan_cost(decision.workflow, request, prompt_tokens, known, media)
        options = self._cheapest(decision, request, prompt_tokens, context, known, media)
        if ceiling is not None and planned > ceiling:
            under = [(cost, name) for cost, name in options if cost <= ceiling]
            details: dict[str, Any] = {"estimated_usd": round(planned, 6), "ceiling_usd": ceiling}
            if self.settings.on_exceed == "refuse" or not under:
                self._record(context, "request.refused", "cost:refused", details)
                raise PodiumError(
                    "payment_required",
                    f"the routed plan is estimated at ${planned:.6f}, above this key's "
                    f"per-request ceiling of ${ceiling:.6f}",
                    code="cost_ceiling",
                )
            cost, name = under[0]
            self._downgrade(decision, name, f"cost ceiling ${ceiling:.6f}")
            self._record(
                context,
                "request.rerouted",
                f"cost:downgraded to={name}",
                {**details, "worker": name, "estimated_after_usd": round(cost, 6)},
            )
            return
        if not options or len(decision.workflow.steps) != 1:
            return
        cheapest_cost, cheapest = options[0]
        chosen = decision.workflow.steps[0].worker
        if chosen == cheapest or planned <= 0:
            return
        ratio = planned / cheapest_cost if cheapest_cost > 0 else float("inf")
        if ratio < self.settings.overspend_ratio or not self._looks_easy(
            decision, cheapest, prompt_tokens
        ):
            return
        details = {
            "worker": chosen,
            "cheapest": cheapest,
            "ratio": round(min(ratio, 1e9), 2),
        }
        if self.settings.cap_overspend:
            self._downgrade(decision, cheapest, "overspend cap")
            self._record(
                context, "request.rerouted", f"cost:overspend capped to={cheapest}", details
            )
        else:
            self._record(
                context, "", f"cost:overspend worker={chosen} ratio={details['ratio']}", details
            )

    def _looks_easy(self, decision: Decision, cheapest: str, prompt_tokens: int) -> bool:
        for candidate in decision.candidates:
            if candidate.worker == cheapest and candidate.quality is not None:
                return candidate.quality >= 0.8
        return prompt_tokens <= self.settings.easy_tokens

    @staticmethod
    def _downgrade(decision: Decision, worker: str, why: str) -> None:
        decision.workflow = Workflow.single(worker)
        decision.reason = f"{decision.reason} (downgraded: {why})"
