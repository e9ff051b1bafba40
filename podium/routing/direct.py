"""The plainest router: the requested model names a worker (or an alias of one); virtual
models such as ``podium/auto`` go to the default worker, or to the first that can take the
request when the default cannot (:mod:`podium.routing.fit`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from podium.errors import PodiumError
from podium.routing.base import Candidate, Decision, RouteContext
from podium.routing.fit import able, fits, serves
from podium.types import ChatRequest
from podium.workflow import Workflow

if TYPE_CHECKING:
    from podium.routing.registry import RouterRegistry

VIRTUAL_MODELS = ("podium/auto",)


class DirectRouter:
    name = "direct"

    def __init__(self, aliases: dict[str, str], default_worker: str | None) -> None:
        self._aliases = aliases
        self._default = default_worker

    def resolve(self, model: str, context: RouteContext) -> str | None:
        by_name = {worker.name: worker for worker in context.eligible}
        if model in by_name:
            return model
        target = self._aliases.get(model)
        if target is not None:
            return target
        for worker in context.eligible:
            if model in worker.aliases:
                return worker.name
        return None

    async def plan(self, request: ChatRequest, context: RouteContext) -> Decision | None:
        eligible = [worker.name for worker in context.eligible]
        if not eligible:
            raise PodiumError(
                "permission",
                f"no worker is cleared for data class {context.data_class!r} and this caller",
                code="no_eligible_worker",
            )
        model = request.model
        virtual = model in VIRTUAL_MODELS
        if virtual:
            chosen = self._default if self._default in eligible else eligible[0]
            reason = f"{model} goes to the default worker {chosen!r}"
            default = next(w for w in context.eligible if w.name == chosen)
            if not fits(request, default):
                # it reads no images, has no tools, or its context cannot hold this prompt
                others = able(request, context.eligible)
                if others:  # else none can: the default's upstream will say why
                    reason = (
                        f"{model} goes to {others[0].name!r}: the default {chosen!r} cannot take it"
                    )
                    chosen = others[0].name
            elif not serves(request, default):  # it cannot cite the documents it is asked to
                others = able(request, context.eligible)
                if others and serves(request, others[0]):
                    reason = (
                        f"{model} goes to {others[0].name!r}: the default {chosen!r} cites no "
                        "documents"
                    )
                    chosen = others[0].name
        else:
            # A worker's own name is the usual request: found without resolve's lookup table.
            named = model if model in eligible else self.resolve(model, context)
            if named is None:
                return None
            if named not in eligible:
                raise PodiumError(
                    "permission",
                    f"model {model!r} is not available to this request "
                    f"(data class {context.data_class!r}, caller scopes, or draining)",
                    code="model_not_eligible",
                )
            chosen = named
            reason = f"model {model!r} names worker {chosen!r}"
        # Positional (workflow, router, reason, candidates; a candidate's worker and score):
        # a keyword argument to a dataclass costs ~0.5k instructions.
        return Decision(
            Workflow.single(
                chosen, [name for name in eligible if name != chosen] if virtual else None
            ),
            self.name,
            reason,
            [Candidate(chosen, 1.0)],
        )


def register_routers(registry: RouterRegistry) -> None:
    registry.register(
        "direct",
        lambda _section, parts: DirectRouter(parts.config.aliases, parts.config.default_worker),
    )
