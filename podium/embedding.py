"""The path of ``POST /v1/embeddings``: the chat path's admission, clearance, limits, budget
and trace, around one call to one embedding worker (``role: embed``).

The texts go through the same hooks as a chat request's messages, each as a user message of
a stand-in request: the caller's key and scopes, rate limits and budget, the data class
their PII makes them and the workers cleared for it, pseudonymisation where policy asks for
it. No router runs: the request names its embedding model (a worker or an alias), or
``podium/auto`` for the cheapest cleared one. There is no fallback to another model either:
vectors from another model live in another space and would not match those already stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from podium.config import WorkerConfig
from podium.context import RequestContext
from podium.engine import Engine
from podium.errors import PodiumError
from podium.executor import Run
from podium.gateway import Gateway, total_cost
from podium.routing.base import Candidate, Decision
from podium.routing.direct import VIRTUAL_MODELS
from podium.types import ChatRequest, Embeddings, EmbedRequest, Message, TextPart
from podium.workers import worker_named
from podium.workflow import Workflow

ROUTER = "embeddings"


@dataclass(slots=True)
class EmbedOutcome:
    embeddings: Embeddings
    worker: str
    decision: Decision
    run: Run

    def headers(self, context: RequestContext) -> dict[str, str]:
        headers = {
            "x-podium-trace-id": context.trace_id,
            "x-podium-worker": self.worker,
            "x-podium-route": self.decision.route,
            "x-podium-cost-usd": f"{total_cost(self.run.attempts):.8f}",
        }
        headers.update(context.response_headers)
        return headers


class EmbeddingPath:
    def __init__(self, gateway: Gateway, engine: Engine) -> None:
        self.gateway = gateway
        self.engine = engine

    def embedders(self) -> list[WorkerConfig]:
        return [w.config for w in self.gateway.pool.serving() if w.config.role == "embed"]

    def choose(
        self, request: EmbedRequest, embedders: list[WorkerConfig], cleared: list[WorkerConfig]
    ) -> tuple[WorkerConfig, str]:
        if request.model in VIRTUAL_MODELS:
            if not cleared:
                raise _not_cleared()
            cheapest = min(cleared, key=lambda worker: worker.price.input)
            return cheapest, f"{request.model} goes to the cheapest cleared embedding worker"
        named = worker_named(request.model, embedders, self.gateway.pool.aliases, "embed")
        if named is None:
            # No names in the message: a key's scopes may hide some (GET /v1/models shows the
            # ones this caller may use).
            raise PodiumError(
                "not_found",
                f"the model {request.model!r} is not an embedding model here (GET /v1/models "
                "lists the models you may use)",
                param="model",
                code="model_not_found",
            )
        if all(worker.name != named.name for worker in cleared):
            raise _not_cleared(named.name)
        return named, f"model {request.model!r} names embedding worker {named.name!r}"

    async def embed(self, request: EmbedRequest, context: RequestContext) -> EmbedOutcome:
        gateway = self.gateway
        stand_in = ChatRequest(
            request.model, [Message("user", [TextPart(text)]) for text in request.inputs]
        )
        stand_in.user = request.user
        decision: Decision | None = None
        run = Run()
        try:
            stand_in = await gateway.admit(stand_in, context)
            embedders = self.embedders()
            cleared = list(embedders)
            for hook in gateway.stages.eligible:
                cleared = hook.eligible(cleared, stand_in, context)
            worker, reason = self.choose(request, embedders, cleared)
            decision = Decision(
                Workflow.single(worker.name), ROUTER, reason, [Candidate(worker.name, 1.0)]
            )
            for hook in gateway.stages.decided:
                await hook.decided(stand_in, decision, context)
            # What policy left of the texts (pseudonymised, where it asked for that).
            texts = [message.text() for message in stand_in.messages]
            sent = EmbedRequest(request.model, texts, request.dimensions, request.user)
            _, embeddings = await self.engine.embed(
                sent, worker.name, run.attempts, priority=context.priority
            )
        except PodiumError as error:
            gateway.finish(stand_in, decision, run, context, status=error.status, error=error)
            raise
        gateway.finish(stand_in, decision, run, context, status=200)
        return EmbedOutcome(embeddings, worker.name, decision, run)


def _not_cleared(name: str | None = None) -> PodiumError:
    which = f"embedding worker {name!r} is" if name else "no embedding worker is"
    return PodiumError(
        "permission",
        f"{which} not available to this request (its data class, the caller's scopes, or draining)",
        code="model_not_eligible",
    )
