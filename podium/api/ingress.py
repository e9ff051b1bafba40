"""The ingress socket and the one handler every chat wire format shares."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, runtime_checkable

from podium.api.http import AnyResponse, Request, Response, StreamResponse, parse_json
from podium.context import RequestContext
from podium.errors import PodiumError
from podium.gateway import ExtraHooks, Gateway, Outcome
from podium.types import ChatRequest, ChatResponse, StreamEvent, WireItem

# Fields that would let a caller choose the upstream host or credential. Podium refuses them
# outright rather than ignoring them, so a client that relies on them learns at once.
PROVIDER_FIELDS = frozenset(
    {
        "api_base",
        "base_url",
        "api_key",
        "api_version",
        "api_type",
        "custom_llm_provider",
        "extra_headers",
        "headers",
        "provider",
        "organization",
        "azure_endpoint",
        "aws_access_key_id",
        "aws_secret_access_key",
        "vertex_credentials",
        "litellm_params",
        "endpoint",
    }
)
PROVIDER_HEADERS = frozenset(
    {
        "x-api-base",
        "x-base-url",
        "x-provider-api-key",
        "x-upstream-url",
        "openai-api-base",
        "x-openai-api-key",
        "x-anthropic-api-key",
        "x-goog-api-key-override",
    }
)


def refuse_provider_fields(body: dict[str, Any], headers: dict[str, str]) -> None:
    if PROVIDER_FIELDS.isdisjoint(body) and PROVIDER_HEADERS.isdisjoint(headers):
        return  # the usual request: no sets or sorted lists built to find nothing
    named = sorted(PROVIDER_FIELDS.intersection(body))
    if named:
        raise PodiumError(
            "invalid_request",
            f"provider-level fields are not accepted: {', '.join(named)}. Podium chooses the "
            "upstream and its credentials; callers cannot.",
            param=named[0],
            code="provider_fields_refused",
        )
    named = sorted(PROVIDER_HEADERS.intersection(headers))
    if named:
        raise PodiumError(
            "invalid_request",
            f"provider-level headers are not accepted: {', '.join(named)}",
            code="provider_fields_refused",
        )


class Ingress(Protocol):
    name: str

    def parse(self, body: Any, headers: dict[str, str]) -> ChatRequest:
        """The canonical request, or PodiumError("invalid_request", ...) naming the field."""

    def encode_response(
        self, response: ChatResponse, request: ChatRequest, outcome: Outcome
    ) -> bytes: ...

    def encode_stream(
        self,
        events: AsyncIterator[StreamEvent],
        request: ChatRequest,
        outcome: Outcome,
        context: RequestContext,
    ) -> AsyncIterator[bytes]:
        """Wire bytes for a stream; a PodiumError mid-stream becomes the format's error event."""

    def render_error(self, error: PodiumError) -> Response: ...


@runtime_checkable
class RelayIngress(Ingress, Protocol):
    """An ingress that can pass on a provider's stream in its own wire format (``wire``)."""

    wire: str

    def relay_stream(
        self,
        items: AsyncIterator[WireItem],
        request: ChatRequest,
        outcome: Outcome,
        context: RequestContext,
    ) -> AsyncIterator[bytes]:
        """The relayed bytes, then what the ingress adds at the end (usage with the cost, the
        end marker); a PodiumError mid-stream becomes the format's error event."""


@runtime_checkable
class StatefulIngress(Ingress, Protocol):
    """An ingress whose requests can refer to what it keeps (a stored conversation), and which
    keeps what it answers: the Responses API's ``previous_response_id`` and ``store``."""

    async def resolve(self, request: ChatRequest, context: RequestContext) -> ChatRequest:
        """The request with what it refers to filled in, before the gateway admits it."""

    async def encode_kept(
        self,
        response: ChatResponse,
        request: ChatRequest,
        outcome: Outcome,
        context: RequestContext,
    ) -> bytes:
        """``encode_response``, keeping the answer first when the request asks."""

    def detaches(self, request: ChatRequest) -> bool:
        """Whether ``request`` is answered off the request that asked (``background``)."""

    async def detach(
        self, request: ChatRequest, context: RequestContext, extra: ExtraHooks | None
    ) -> AnyResponse:
        """Answer the caller as soon as the gateway has admitted and routed the request (a
        refusal is still this request's error), and let it answer on its own."""


def chat_handler(
    ingress: Ingress,
    gateway: Gateway,
    *,
    max_body_bytes: int,
    context_factory: Callable[[str, dict[str, str]], RequestContext] = (
        lambda name, headers: RequestContext(name, headers)  # positional: ~1k instructions less
    ),
    extra: ExtraHooks | None = None,
) -> Callable[[Request], Any]:
    relay = ingress if isinstance(ingress, RelayIngress) else None
    wire = relay.wire if relay is not None else None
    stateful = ingress if isinstance(ingress, StatefulIngress) else None

    async def handle(http: Request) -> AnyResponse:
        context = context_factory(ingress.name, http.headers)
        body: Any = None
        try:
            body = parse_json(await http.body(max_body_bytes))  # a coroutine fewer than json()
            if not isinstance(body, dict):
                raise PodiumError("invalid_request", "request body must be a JSON object")
            refuse_provider_fields(body, http.headers)
            request = ingress.parse(body, http.headers)
            if body.get("service_tier") == "flex":  # OpenAI's tier for work that can wait
                context.priority = "background"
        except PodiumError:
            # Who is calling is answered before what they sent: a caller without a valid key
            # hears so (401/403) even when its body is bad too. Only refused requests pay.
            model = body.get("model") if isinstance(body, dict) else None
            await gateway.authenticate(context, model if isinstance(model, str) else None)
            raise
        try:
            if stateful is not None:
                request = await stateful.resolve(request, context)
                if stateful.detaches(request):
                    return await stateful.detach(request, context, extra)
            outcome = await gateway.handle(request, context, relay=wire, extra=extra)
        except PodiumError as error:
            response = ingress.render_error(error)
            response.headers.setdefault("x-podium-trace-id", context.trace_id)
            return response
        headers = outcome.headers(context)
        if outcome.response is not None:
            if stateful is not None:
                payload = await stateful.encode_kept(outcome.response, request, outcome, context)
            else:
                payload = ingress.encode_response(outcome.response, request, outcome)
            return Response(payload, 200, headers)
        if outcome.relay is not None and relay is not None:
            chunks = relay.relay_stream(outcome.relay, request, outcome, context)
        else:
            assert outcome.stream is not None
            chunks = ingress.encode_stream(outcome.stream, request, outcome, context)
        return StreamResponse(chunks, 200, headers)

    return handle
