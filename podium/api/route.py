"""``POST /v1/route``: the routing decision for an OpenAI-style chat body (or a Responses API
body: ``input`` instead of ``messages``), without running it.

The request goes through the same admission (keys, data classes) and the same router chain as a
chat request, so the answer is the decision that request would get; nothing is sent to a worker
and nothing is spent. ``?explain=true`` also asks the routers after the winner, to show what each
would have said.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from podium.api.http import Request, Response
from podium.api.ingress import refuse_provider_fields
from podium.api.openai import OpenAIIngress
from podium.api.responses import ResponsesIngress
from podium.context import RequestContext
from podium.errors import PodiumError
from podium.gateway import enforce_capabilities, enforce_clearance
from podium.routing.base import RouteContext
from podium.routing.chain import Verdict, decide, describe_decision, describe_verdict

if TYPE_CHECKING:
    from podium.app import Podium

TRUE = frozenset({"1", "true", "yes", "on"})


def register_app(podium: Podium) -> None:
    ingress = OpenAIIngress()
    responses = ResponsesIngress()
    gateway = podium.gateway
    limit = podium.config.server.max_body_bytes

    async def route(http: Request) -> Response:
        started = time.perf_counter()
        body = await http.json(limit)
        if not isinstance(body, dict):
            raise PodiumError("invalid_request", "request body must be a JSON object")
        refuse_provider_fields(body, http.headers)
        body = {**body, "stream": False}  # nothing runs, so nothing streams
        reader = responses if "input" in body and "messages" not in body else ingress
        request = reader.parse(body, http.headers)
        context = RequestContext(ingress="route", headers=http.headers)
        request = await gateway.admit(request, context)
        eligible = gateway.eligible(request, context)
        if not eligible:
            raise PodiumError(
                "permission",
                f"no worker is cleared for this request (data class {context.data_class!r})",
                code="no_eligible_worker",
            )
        trail: list[Verdict] = []
        decision = await decide(
            gateway.routers,
            request,
            RouteContext(
                caller=context.caller,
                eligible=eligible,
                headers=context.headers,
                data_class=context.data_class,
                contract=context.contract,
                budget_usd=context.budget_usd,
                session_id=context.session_id,
            ),
            budget_s=gateway.router_timeout,
            default_worker=gateway.default_worker,
            trail=trail,
            ask_all=http.query.get("explain", "").lower() in TRUE,
        )
        # what a chat request would be refused after routing, this is refused too
        enforce_clearance(decision, eligible)
        enforce_capabilities(decision, request, eligible)
        payload: dict[str, Any] = {
            "object": "podium.route",
            "model": request.model,
            "trace_id": context.trace_id,
            "data_class": context.data_class,
            "eligible": [worker.name for worker in eligible],
            "decision": describe_decision(decision),
            "routers": [describe_verdict(verdict) for verdict in trail],
            "elapsed_ms": round((time.perf_counter() - started) * 1000.0, 3),
        }
        return Response.json(payload, headers={"x-podium-route": decision.route})

    podium.app.route("POST", "/v1/route", route, ingress)
