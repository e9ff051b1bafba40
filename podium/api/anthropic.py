"""Anthropic Messages ingress: ``POST /v1/messages`` (streaming and not) and
``POST /v1/messages/count_tokens``; the Message Batches API is podium/api/anthropic_batches.py.

The request is parsed into the canonical :class:`~podium.types.ChatRequest` and answered by
whichever worker the router picks; the answer is encoded back as Anthropic's documented
message object or its server-sent event sequence, and every error as Anthropic's error object.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from podium.api.anthropic_request import parse_count_tokens, parse_messages
from podium.api.http import Request, Response, retry_headers
from podium.api.ingress import chat_handler, refuse_provider_fields
from podium.batches.endpoints import batch_endpoints
from podium.context import RequestContext
from podium.documents import read_attachments
from podium.errors import ErrorKind, PodiumError
from podium.gateway import Outcome, total_cost
from podium.types import (
    ChatRequest,
    ChatResponse,
    Citation,
    CitationDelta,
    CitedLocation,
    Finish,
    FinishReason,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    UsageReport,
    passages,
)
from podium.workers import WorkerPool, count_input_tokens

if TYPE_CHECKING:
    from podium.app import Podium

# -- answers ----------------------------------------------------------------------------------

STOP_REASONS: dict[FinishReason, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "error": "end_turn",
}

ERROR_TYPES: dict[ErrorKind, str] = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "payment_required": "billing_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "request_too_large": "request_too_large",
    "unprocessable": "invalid_request_error",
    "rate_limit": "rate_limit_error",
    "api_error": "api_error",
    "upstream": "api_error",
    "overloaded": "overloaded_error",
    "timeout": "timeout_error",
}


def error_body(error: PodiumError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": ERROR_TYPES[error.kind], "message": error.message}}


def error_status(error: PodiumError) -> int:
    # Anthropic signals "no capacity right now" with 529; its SDKs retry it.
    return 529 if error.kind == "overloaded" else error.status


def stop_reason(reason: FinishReason, stop_sequence: str | None) -> str:
    if reason == "stop" and stop_sequence is not None:
        return "stop_sequence"
    return STOP_REASONS[reason]


def tool_input(arguments: str) -> dict[str, Any]:
    """Anthropic's ``input`` is an object; a model that wrote something else keeps its text."""
    try:
        value = orjson.loads(arguments) if arguments.strip() else {}
    except orjson.JSONDecodeError:
        return {"_raw_arguments": arguments}
    return value if isinstance(value, dict) else {"_raw_arguments": arguments}


def usage_body(usage: Usage) -> dict[str, Any]:
    """Anthropic counts cache reads and writes apart from ``input_tokens``; the canonical count
    holds all three."""
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    written = min(usage.cache_written_tokens, usage.input_tokens - cached)
    hour = min(usage.cache_write_long_tokens, written)
    return {
        "input_tokens": usage.input_tokens - cached - written,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
        "cache_creation": {
            "ephemeral_5m_input_tokens": written - hour,
            "ephemeral_1h_input_tokens": hour,
        },
    }


# Each kind of citation location: Anthropic's name for it, and its fields for start and end.
LOCATIONS: dict[CitedLocation, tuple[str, str, str]] = {
    "page": ("page_location", "start_page_number", "end_page_number"),
    "char": ("char_location", "start_char_index", "end_char_index"),
    "block": ("content_block_location", "start_block_index", "end_block_index"),
}


def citation_body(citation: Citation) -> dict[str, Any]:
    kind, start, end = LOCATIONS[citation.location]
    return {
        "type": kind,
        "cited_text": citation.cited_text,
        "document_index": citation.document_index,
        "document_title": citation.document_title,
        start: citation.start,
        end: citation.end,
        "file_id": citation.file_id,
    }


def text_blocks(response: ChatResponse) -> list[dict[str, Any]]:
    """The answer's text as text blocks, one for each cited passage and one for the text
    between."""
    blocks: list[dict[str, Any]] = []
    for text, cited in passages(response):
        block: dict[str, Any] = {"type": "text", "text": text}
        if cited:
            block["citations"] = [citation_body(citation) for citation in cited]
        blocks.append(block)
    return blocks


def _message_id(raw: str) -> str:
    return raw if raw.startswith("msg_") else f"msg_{raw.removeprefix('chatcmpl-')}"


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class AnthropicIngress:
    """``pool``: the workers, whose image rules a stream's first usage estimate counts by."""

    name = "anthropic"

    def __init__(self, pool: WorkerPool | None = None) -> None:
        self.pool = pool

    def parse(self, body: Any, headers: dict[str, str]) -> ChatRequest:
        return parse_messages(body, headers)

    def render_error(self, error: PodiumError) -> Response:
        return Response.json(error_body(error), error_status(error), retry_headers(error))

    def encode_response(
        self, response: ChatResponse, request: ChatRequest, outcome: Outcome
    ) -> bytes:
        content = text_blocks(response)
        for call in response.tool_calls:
            content.append(
                {
                    "type": "tool_use",
                    "id": call.id,
                    "name": call.name,
                    "input": tool_input(call.arguments),
                }
            )
        usage = usage_body(response.usage)
        usage["cost_usd"] = total_cost(outcome.run.attempts)
        return orjson.dumps(
            {
                "id": _message_id(response.id),
                "type": "message",
                "role": "assistant",
                "model": response.model,
                "content": content,
                "stop_reason": stop_reason(response.finish_reason, response.stop_sequence),
                "stop_sequence": response.stop_sequence,
                "usage": usage,
            }
        )

    async def encode_stream(
        self,
        events: AsyncIterator[StreamEvent],
        request: ChatRequest,
        outcome: Outcome,
        context: RequestContext,
    ) -> AsyncIterator[bytes]:
        # Input tokens are only known once the worker reports usage (OpenAI-style upstreams
        # report at the end), so message_start carries an estimate (its images as the worker
        # bills them) and message_delta the count.
        answering = self.pool.get(outcome.worker) if self.pool is not None else None
        counted = count_input_tokens(request, None if answering is None else answering.config)
        estimated = Usage(counted, 0)
        yield _sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": f"msg_{context.trace_id}",
                    "type": "message",
                    "role": "assistant",
                    "model": outcome.worker,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {**usage_body(estimated), "output_tokens": 1},
                },
            },
        )
        yield _sse("ping", {"type": "ping"})
        blocks = _Blocks()
        finish: Finish | None = None
        usage: Usage | None = None
        try:
            async for event in events:
                if isinstance(event, TextDelta):
                    if event.passage:
                        blocks.passage()
                    if event.text:
                        for chunk in blocks.text(event.text):
                            yield chunk
                elif isinstance(event, CitationDelta):
                    for chunk in blocks.cite(event.citation):
                        yield chunk
                elif isinstance(event, ToolCallDelta):
                    for chunk in blocks.tool(event):
                        yield chunk
                elif isinstance(event, Finish):
                    finish = event
                elif isinstance(event, UsageReport):
                    usage = event.usage
        except PodiumError as error:
            yield _sse("error", error_body(error))
            return
        for chunk in blocks.close():
            yield chunk
        attempts = outcome.run.attempts
        settled = usage or (attempts[-1].usage if attempts else Usage())
        reason: FinishReason = finish.reason if finish else "stop"
        sequence = finish.stop_sequence if finish else None
        final_usage = usage_body(settled)
        final_usage["cost_usd"] = total_cost(attempts)
        yield _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason(reason, sequence), "stop_sequence": sequence},
                "usage": final_usage,
            },
        )
        yield _sse("message_stop", {"type": "message_stop"})


class _Blocks:
    """Turns canonical deltas into Anthropic's numbered content blocks, opening and closing
    each block in order."""

    def __init__(self) -> None:
        self.count = 0
        self.open: int | None = None
        self.open_kind = ""
        self.tool_blocks: dict[int, int] = {}  # tool call index -> block index
        # Calls that began while another's block was open: an upstream may interleave parallel
        # calls' arguments (0, 1, 0, 1), and a closed block cannot take more, so they wait,
        # whole, until the open one closes.
        self.held: dict[int, list[ToolCallDelta]] = {}
        self.new_passage = False  # the next text or citation starts a text block of its own

    def _start(self, block: dict[str, Any], kind: str) -> list[bytes]:
        out = self.close()
        self.open, self.open_kind = self.count, kind
        self.count += 1
        out.append(_block_start(self.open, block))
        return out

    def close(self) -> list[bytes]:
        if self.open is None:
            return []
        index, self.open = self.open, None
        out = [_block_stop(index)]
        held, self.held = self.held, {}
        for call, deltas in held.items():
            block = self.tool_blocks[call] = self.count
            self.count += 1
            out.append(_block_start(block, _tool_use(deltas[0])))
            arguments = "".join(delta.arguments for delta in deltas)
            if arguments:
                out.append(self._input(block, arguments))
            out.append(_block_stop(block))
        return out

    def passage(self) -> None:
        self.new_passage = True

    def _text_block(self) -> list[bytes]:
        if self.open_kind == "text" and self.open is not None and not self.new_passage:
            return []
        self.new_passage = False
        return self._start({"type": "text", "text": ""}, "text")

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return _sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": self.open, "delta": delta},
        )

    def text(self, text: str) -> list[bytes]:
        out = self._text_block()
        out.append(self._delta({"type": "text_delta", "text": text}))
        return out

    def cite(self, citation: Citation) -> list[bytes]:
        out = self._text_block()
        out.append(self._delta({"type": "citations_delta", "citation": citation_body(citation)}))
        return out

    def tool(self, delta: ToolCallDelta) -> list[bytes]:
        out: list[bytes] = []
        block = self.tool_blocks.get(delta.index)
        waiting = self.held.get(delta.index)
        if waiting is not None or (
            block is None and self.open_kind == "tool" and self.open is not None
        ):
            self.held.setdefault(delta.index, []).append(delta)
            return out
        if block is None:
            out = self._start(_tool_use(delta), "tool")
            assert self.open is not None
            block = self.tool_blocks[delta.index] = self.open
        if delta.arguments:
            out.append(self._input(block, delta.arguments))
        return out

    def _input(self, block: int, arguments: str) -> bytes:
        return _sse(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": block,
                "delta": {"type": "input_json_delta", "partial_json": arguments},
            },
        )


def _block_start(index: int, block: dict[str, Any]) -> bytes:
    return _sse(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def _block_stop(index: int) -> bytes:
    return _sse("content_block_stop", {"type": "content_block_stop", "index": index})


def _tool_use(delta: ToolCallDelta) -> dict[str, Any]:
    """The opening of a call's block: its input comes in the deltas after."""
    call_id = delta.id or f"toolu_{uuid.uuid4().hex[:24]}"
    return {"type": "tool_use", "id": call_id, "name": delta.name or "", "input": {}}


def register_app(podium: Podium) -> None:
    ingress = AnthropicIngress(podium.gateway.pool)
    limit = podium.config.server.max_body_bytes
    podium.app.route(
        "POST", "/v1/messages", chat_handler(ingress, podium.gateway, max_body_bytes=limit), ingress
    )
    batch_endpoints(podium).add(
        "/v1/messages",
        lambda contexts: chat_handler(
            ingress, podium.gateway, max_body_bytes=limit, context_factory=contexts
        ),
    )

    async def count_tokens(http: Request) -> Response:
        # A caller without a valid key hears 401, as on /v1/messages, before its body is read.
        context = RequestContext(ingress.name, http.headers)
        await podium.gateway.authenticate(context)
        body = await http.json(limit)
        if not isinstance(body, dict):
            raise PodiumError("invalid_request", "request body must be a JSON object")
        refuse_provider_fields(body, http.headers)
        request = parse_count_tokens(body, http.headers)
        await read_attachments(podium, request, context)
        # An estimate (about four characters a token): workers differ in tokenizer.
        count = count_input_tokens(
            request, podium.gateway.pool.named_or(request.model, podium.config.default_worker)
        )
        return Response.json({"input_tokens": count})

    podium.app.route("POST", "/v1/messages/count_tokens", count_tokens, ingress)
    # Imported here: the batches build on this module's ingress.
    from podium.api.anthropic_batches import register_batches

    register_batches(podium, ingress)
