"""OpenAI Responses ingress: ``POST /v1/responses``, the API OpenAI's newer SDK helpers, agents
and coding tools call by default.

This module writes the answers, whole or streamed; the request side is
:mod:`podium.api.responses_request`. Responses are kept, and continued by
``previous_response_id``, by the ingress in :mod:`podium.api.responses_stored`; with
``responses.store: false`` this one answers alone: every request then carries its whole
conversation in ``input``, and what needs a kept response is refused, saying so.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import orjson

from podium.api.http import Request, Response, retry_headers
from podium.api.ingress import chat_handler, refuse_provider_fields
from podium.api.openai import error_body
from podium.api.responses_request import NO_STORE, ResponsesRequest, parse
from podium.batches.endpoints import batch_endpoints
from podium.context import RequestContext
from podium.errors import PodiumError
from podium.gateway import ExtraHooks, Outcome, total_cost
from podium.responses.compaction import Compactions
from podium.types import (
    ChatRequest,
    ChatResponse,
    Finish,
    FinishReason,
    JSONObject,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageReport,
)
from podium.workers import count_input_tokens

if TYPE_CHECKING:
    from podium.app import Podium


def usage_object(usage: Usage, cost: float) -> JSONObject:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_input_tokens,
            "cache_write_tokens": usage.cache_written_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
        "cost_usd": cost,
    }


# How an answer ended, as a Response's status and ``incomplete_details.reason``.
ENDINGS: dict[FinishReason, tuple[str, str | None]] = {
    "stop": ("completed", None),
    "tool_calls": ("completed", None),
    "length": ("incomplete", "max_output_tokens"),
    "content_filter": ("incomplete", "content_filter"),
    "error": ("failed", None),
}


def response_object(
    request: ChatRequest,
    *,
    response_id: str,
    model: str,
    created_at: int,
    status: str,
    output: list[JSONObject],
    usage: JSONObject | None = None,
    incomplete: str | None = None,
    error: JSONObject | None = None,
) -> JSONObject:
    echo = request.echo if isinstance(request, ResponsesRequest) else {}
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "model": model,
        "output": output,
        **echo,
        "usage": usage,
    }


def message_item(item_id: str, text: str, status: str) -> JSONObject:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [_text_part(text)],
    }


def _text_part(text: str) -> JSONObject:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(call: ToolCall, status: str) -> JSONObject:
    return {
        "id": f"fc_{call.id}",
        "type": "function_call",
        "status": status,
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments,
    }


def _response_id(raw: str) -> str:
    return raw if raw.startswith("resp_") else f"resp_{raw.removeprefix('chatcmpl-')}"


def _settled(usage: Usage | None, outcome: Outcome) -> Usage:
    attempts = outcome.run.attempts
    return usage or (attempts[-1].usage if attempts else Usage())


Frame = Callable[[str, JSONObject], bytes]


def sse(kind: str, data: JSONObject) -> bytes:
    """One event as Server-Sent Events frame it (``POST /v1/responses`` with ``stream``)."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class StreamWriter:
    """The Responses stream's events for one answer: each output item opened when its first
    piece arrives, every item closed at the end, and a sequence number on every event."""

    def __init__(
        self, request: ChatRequest, response_id: str, model: str, frame: Frame = sse
    ) -> None:
        self.frame = frame
        self.request = request
        self.response_id = response_id
        self.model = model
        self.created_at = int(time.time())
        self.sequence = 0
        self.items: list[JSONObject] = []  # the output so far, in order
        self.texts: dict[int, list[str]] = {}  # output index -> a message's text pieces
        self.calls: dict[int, int] = {}  # tool call index -> output index
        self.message: int | None = None  # the output index of the message, once open

    def event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, **fields, "sequence_number": self.sequence}
        self.sequence += 1
        return self.frame(kind, data)

    def body(self, status: str, **fields: Any) -> JSONObject:
        """The Response object as it stands: no output while it is in progress."""
        return response_object(
            self.request,
            response_id=self.response_id,
            model=self.model,
            created_at=self.created_at,
            status=status,
            output=self.items if status != "in_progress" else [],
            **fields,
        )

    def lifecycle(self, kind: str, status: str, **fields: Any) -> bytes:
        return self.event(kind, response=self.body(status, **fields))

    def _open_message(self) -> list[bytes]:
        index = self.message = len(self.items)
        item = message_item(f"msg_{self.response_id.removeprefix('resp_')}", "", "in_progress")
        item["content"] = []
        self.items.append(item)
        self.texts[index] = []
        return [
            self.event("response.output_item.added", output_index=index, item=dict(item)),
            self.event(
                "response.content_part.added",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part=_text_part(""),
            ),
        ]

    def text(self, delta: str) -> list[bytes]:
        out = self._open_message() if self.message is None else []
        index = self.message
        assert index is not None
        self.texts[index].append(delta)
        out.append(
            self.event(
                "response.output_text.delta",
                item_id=self.items[index]["id"],
                output_index=index,
                content_index=0,
                delta=delta,
                logprobs=[],
            )
        )
        return out

    def tool(self, delta: ToolCallDelta) -> list[bytes]:
        out: list[bytes] = []
        index = self.calls.get(delta.index)
        if index is None:
            call_id = delta.id or f"call_{uuid.uuid4().hex[:24]}"
            item = call_item(ToolCall(call_id, delta.name or "", ""), "in_progress")
            index = self.calls[delta.index] = len(self.items)
            self.items.append(item)
            out.append(self.event("response.output_item.added", output_index=index, item=item))
            item = dict(item)  # the event holds its own copy; arguments grow on the item
            self.items[index] = item
        item = self.items[index]
        if delta.name and not item["name"]:
            item["name"] = delta.name
        if delta.arguments:
            item["arguments"] += delta.arguments
            out.append(
                self.event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=index,
                    delta=delta.arguments,
                )
            )
        return out

    def finish(
        self, reason: FinishReason, usage: Usage, cost: float
    ) -> tuple[list[bytes], str, JSONObject]:
        """The events that close every item, and the last event's kind and Response object,
        which the caller sends once it has kept the response (when it keeps it)."""
        status, incomplete = ENDINGS[reason]
        out = self._open_message() if not self.items else []  # an empty answer: one message
        item_status = "incomplete" if status == "incomplete" else "completed"
        for index, item in enumerate(self.items):
            if item["type"] == "message":
                text = "".join(self.texts[index])
                done = message_item(item["id"], text, item_status)
                out.append(
                    self.event(
                        "response.output_text.done",
                        item_id=item["id"],
                        output_index=index,
                        content_index=0,
                        text=text,
                        logprobs=[],
                    )
                )
                out.append(
                    self.event(
                        "response.content_part.done",
                        item_id=item["id"],
                        output_index=index,
                        content_index=0,
                        part=_text_part(text),
                    )
                )
            else:
                done = {**item, "status": "completed"}
                out.append(
                    self.event(
                        "response.function_call_arguments.done",
                        item_id=item["id"],
                        output_index=index,
                        name=item["name"],
                        arguments=item["arguments"],
                    )
                )
            self.items[index] = done
            out.append(self.event("response.output_item.done", output_index=index, item=done))
        kind = "response.completed" if status == "completed" else "response.incomplete"
        body = self.body(status, usage=usage_object(usage, cost), incomplete=incomplete)
        return out, kind, body

    def failed(self, error: PodiumError) -> list[bytes]:
        body = error_body(error)["error"]
        code = body["code"] or body["type"]
        return [
            self.event("error", code=code, message=error.message, param=error.param),
            self.lifecycle(
                "response.failed", "failed", error={"code": code, "message": error.message}
            ),
        ]


class ResponsesIngress:
    """Answers without keeping anything (``responses.store: false``)."""

    name = "responses"
    compactions: Compactions | None = (
        None  # reads compaction items (podium/api/responses_compact.py)
    )

    def parse(self, body: Any, headers: dict[str, str]) -> ChatRequest:
        request = parse(body, self.compactions)
        for name, value in (
            ("previous_response_id", request.previous_response_id),
            ("conversation", request.conversation_id),
        ):
            if value is not None:
                raise PodiumError(
                    "invalid_request",
                    f"'{name}' cannot be continued: {NO_STORE}; send the whole conversation "
                    "in 'input' instead.",
                    param=name,
                    code="unsupported_parameter",
                )
        if request.background:
            raise PodiumError(
                "invalid_request",
                f"'background' responses are read back by id when done, but {NO_STORE}; "
                "ask without 'background' and wait for the answer.",
                param="background",
                code="unsupported_parameter",
            )
        if request.references:
            index = next(
                i
                for i, item in enumerate(request.raw_input)
                if isinstance(item, dict) and item.get("type") == "item_reference"
            )
            raise PodiumError(
                "invalid_request",
                f"input[{index}] names a stored item, but {NO_STORE}; send the item itself.",
                param=f"input[{index}]",
                code="unsupported_parameter",
            )
        return request

    def render_error(self, error: PodiumError) -> Response:
        return Response.json(error_body(error), error.status, retry_headers(error))

    def encode_response(
        self, response: ChatResponse, request: ChatRequest, outcome: Outcome
    ) -> bytes:
        return orjson.dumps(self.body(response, request, outcome, _response_id(response.id)))

    def body(
        self, response: ChatResponse, request: ChatRequest, outcome: Outcome, response_id: str
    ) -> JSONObject:
        status, incomplete = ENDINGS[response.finish_reason]
        output: list[JSONObject] = []
        if response.text or not response.tool_calls:
            item_status = "incomplete" if status == "incomplete" else "completed"
            item_id = f"msg_{response_id.removeprefix('resp_')}"
            output.append(message_item(item_id, response.text, item_status))
        output.extend(call_item(call, "completed") for call in response.tool_calls)
        return response_object(
            request,
            response_id=response_id,
            model=response.model,
            created_at=response.created or int(time.time()),
            status=status,
            output=output,
            usage=usage_object(response.usage, total_cost(outcome.run.attempts)),
            incomplete=incomplete,
        )

    async def completed(
        self, body: JSONObject, request: ChatRequest, context: RequestContext
    ) -> None:
        """A streamed answer's final Response object, before its last event is sent: nothing
        to do here; the ingress that keeps responses keeps it."""

    def encode_stream(
        self,
        events: AsyncIterator[StreamEvent],
        request: ChatRequest,
        outcome: Outcome,
        context: RequestContext,
    ) -> AsyncIterator[bytes]:
        return self.stream_events(events, request, outcome, context, sse)

    async def stream_events(
        self,
        events: AsyncIterator[StreamEvent],
        request: ChatRequest,
        outcome: Outcome,
        context: RequestContext,
        frame: Frame,
    ) -> AsyncIterator[bytes]:
        """The stream's events, each framed by ``frame``: SSE over HTTP, one message each over
        a WebSocket (podium/api/responses_socket.py)."""
        writer = StreamWriter(request, f"resp_{context.trace_id}", outcome.worker, frame)
        yield writer.lifecycle("response.created", "in_progress")
        yield writer.lifecycle("response.in_progress", "in_progress")
        usage: Usage | None = None
        finish: FinishReason = "stop"
        try:
            async for event in events:
                if isinstance(event, TextDelta):
                    if event.text:
                        for chunk in writer.text(event.text):
                            yield chunk
                elif isinstance(event, ToolCallDelta):
                    for chunk in writer.tool(event):
                        yield chunk
                elif isinstance(event, Finish):
                    finish = event.reason
                elif isinstance(event, UsageReport):
                    usage = event.usage
        except PodiumError as error:
            for chunk in writer.failed(error):
                yield chunk
            return
        cost = total_cost(outcome.run.attempts)
        chunks, kind, body = writer.finish(finish, _settled(usage, outcome), cost)
        for chunk in chunks:
            yield chunk
        await self.completed(body, request, context)
        yield writer.event(kind, response=body)


def register_app(podium: Podium) -> None:
    # Imported here: the storing ingress builds on this module's.
    from podium.api import conversations
    from podium.api.responses_compact import CompactionOwners, register_compact
    from podium.api.responses_socket import ResponsesSocket
    from podium.api.responses_stored import StoringResponsesIngress, register_routes
    from podium.documents import read_attachments
    from podium.policy.sealing import sealer_for
    from podium.responses.conversations import ConversationStore
    from podium.responses.store import ResponseStore
    from podium.responses.truncation import TruncationHook
    from podium.store.tables import SQLExecutor

    settings = podium.config.responses
    limit = podium.config.server.max_body_bytes

    # Only Responses requests pay for their truncation hook (images named by file id are read
    # for every API: podium/documents.py).
    extra = ExtraHooks([CompactionOwners()], before=[TruncationHook(podium.pool)])
    ingress: ResponsesIngress
    keeper: StoringResponsesIngress | None = None
    # Sealed at rest with the deployment's master key, when it has one.
    master = podium.secrets.get(podium.config.access.secrets.master_key_env)
    compactions = Compactions(sealer_for(master, "compaction"))
    if settings.store and isinstance(podium.store, SQLExecutor):
        sealer = sealer_for(master, "stored-content")
        responses = ResponseStore(podium.store, settings, sealer=sealer)
        conversations_kept = ConversationStore(podium.store, sealer=sealer)
        ingress = keeper = StoringResponsesIngress(podium.gateway, responses, conversations_kept)
        register_routes(podium, keeper)
        conversations.register_routes(podium, keeper)
        podium.extras["responses"] = responses
        podium.extras["responses_counts"] = keeper.counts
        podium.extras["responses_runs"] = keeper.runs
        podium.app.on_startup.append(responses.start)
        # Background responses end (or are stopped) before the store closes.
        podium.app.on_shutdown.append(keeper.runs.close)
        podium.app.on_shutdown.append(responses.close)
    else:
        ingress = ResponsesIngress()
        _refuse_stored_routes(podium, ingress)
    ingress.compactions = compactions
    register_compact(podium, ingress, keeper, compactions, extra)
    podium.app.route(
        "POST",
        "/v1/responses",
        chat_handler(ingress, podium.gateway, max_body_bytes=limit, extra=extra),
        ingress,
    )
    batch_endpoints(podium).add(
        "/v1/responses",
        lambda contexts: chat_handler(
            ingress, podium.gateway, max_body_bytes=limit, context_factory=contexts, extra=extra
        ),
    )
    socket = ResponsesSocket(podium.gateway, ingress, max_message_bytes=limit, extra=extra)
    podium.app.websocket("/v1/responses", socket.serve)

    async def input_tokens(http: Request) -> Response:
        context = RequestContext(ingress.name, http.headers)
        await podium.gateway.authenticate(context)
        body = await http.json(limit)
        if not isinstance(body, dict):
            raise PodiumError("invalid_request", "request body must be a JSON object")
        refuse_provider_fields(body, http.headers)
        # An estimate (about four characters a token): workers differ in tokenizer.
        request = ingress.parse({**body, "model": body.get("model") or "-"}, http.headers)
        if keeper is not None:
            request = await keeper.resolve(request, context)
        await read_attachments(podium, request, context)
        count = count_input_tokens(
            request, podium.gateway.pool.named_or(request.model, podium.config.default_worker)
        )
        return Response.json({"object": "response.input_tokens", "input_tokens": count})

    podium.app.route("POST", "/v1/responses/input_tokens", input_tokens, ingress)


def _refuse_stored_routes(podium: Podium, ingress: ResponsesIngress) -> None:
    async def stored(http: Request) -> Response:
        await podium.gateway.authenticate(RequestContext(ingress.name, http.headers))
        raise PodiumError(
            "not_found",
            f"No response with id {http.params['response_id']!r}: {NO_STORE} (each "
            "request carries its whole conversation in 'input').",
            param="response_id",
            code="response_not_found",
        )

    async def conversations(http: Request) -> Response:
        await podium.gateway.authenticate(RequestContext(ingress.name, http.headers))
        raise PodiumError(
            "not_found",
            f"Conversations are not available: {NO_STORE}.",
            code="conversations_disabled",
        )

    route = podium.app.route
    route("GET", "/v1/responses/{response_id}", stored, ingress)
    route("DELETE", "/v1/responses/{response_id}", stored, ingress)
    route("GET", "/v1/responses/{response_id}/input_items", stored, ingress)
    route("POST", "/v1/responses/{response_id}/cancel", stored, ingress)
    route("POST", "/v1/conversations", conversations, ingress)
    for method in ("GET", "POST", "DELETE"):
        route(method, "/v1/conversations/{conversation_id}", conversations, ingress)
        route(method, "/v1/conversations/{conversation_id}/items", conversations, ingress)
        route(method, "/v1/conversations/{conversation_id}/items/{item_id}", conversations, ingress)
