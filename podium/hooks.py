"""The gateway's extension points along one request's path.

Policy (keys, budgets, data classes, redaction, screening), metrics and audit are hooks, not
branches inside the gateway. Each hook overrides only what it needs; the gateway calls every
hook at every point, in the order they were registered.
"""

from __future__ import annotations

from podium.config import WorkerConfig
from podium.context import RequestContext
from podium.routing.base import Decision
from podium.store.traces import TraceRecord
from podium.types import ChatRequest, ChatResponse, EventStream


class Hook:
    # True for a hook whose ``admit`` checks who is calling (API keys): non-chat APIs such as
    # POST /v1/feedback run the ``admit`` of these hooks only, with a stand-in request.
    authenticates: bool = False

    async def admit(self, request: ChatRequest, context: RequestContext) -> None:
        """Authenticate, classify, screen, check limits. Raise PodiumError to refuse."""

    def eligible(
        self, workers: list[WorkerConfig], request: ChatRequest, context: RequestContext
    ) -> list[WorkerConfig]:
        """Narrow the workers this request may reach. Runs before any router."""
        return workers

    async def transform_request(self, request: ChatRequest, context: RequestContext) -> ChatRequest:
        """Rewrite the request before routing (for example, pseudonymise it)."""
        return request

    async def decided(
        self, request: ChatRequest, decision: Decision, context: RequestContext
    ) -> None:
        """See the routing decision before anything is spent; raise PodiumError to refuse it
        (a cost ceiling, say) or reserve budget for it."""

    def transform_response(self, response: ChatResponse, context: RequestContext) -> ChatResponse:
        return response

    def transform_events(self, events: EventStream, context: RequestContext) -> EventStream:
        return events

    async def finish(self, trace: TraceRecord, context: RequestContext) -> None:
        """After the answer: settle budgets, count metrics, write audit entries."""
