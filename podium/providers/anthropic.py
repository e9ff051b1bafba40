"""Anthropic Messages egress (``POST {base_url}/v1/messages``), streaming and not.

``response_format`` has no Messages-API equivalent: a JSON schema becomes a forced tool whose
input is the answer (read back as the answer's text), unless the request brings its own tools,
in which case (and for ``json_object``) the system prompt asks for JSON instead.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from podium.errors import ProviderError, provider_error_from_status
from podium.image_tokens import CLAUDE
from podium.providers.base import ProviderContext, ProviderRegistry
from podium.providers.http import Upstream, sse_json
from podium.types import (
    CacheTTL,
    ChatRequest,
    ChatResponse,
    Citation,
    CitationDelta,
    CitedLocation,
    CitedSpan,
    DocumentPart,
    EventStream,
    Finish,
    FinishReason,
    ImagePart,
    Message,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageReport,
    has_breakpoints,
    nearest_lifetime,
)
from podium.upstream_profile import ANTHROPIC_IMAGES, UpstreamProfile

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
JSON_TOOL = "json_output"
JSON_INSTRUCTION = "Respond with a single JSON object and nothing else: no prose, no code fences."

STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# The status Anthropic sends with each error type, for errors that arrive inside a stream.
STATUS_OF_TYPE: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class AnthropicOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(API_VERSION, pattern=r"^\d{4}-\d{2}-\d{2}$")
    beta: list[str] = []  # anthropic-beta feature flags
    # Anthropic requires max_tokens; used when neither the request nor the worker sets one.
    default_max_tokens: int = Field(4096, ge=1)
    # The model takes an effort (``output_config.effort``: Claude Opus 4.5 and later): a
    # request's reasoning effort is passed on. Off by default: other models refuse it.
    reasoning: bool = False
    extra_headers: dict[str, str] = {}
    # Cache every prompt that marks no breakpoint of its own up to its last block, for this
    # long (Anthropic's top-level ``cache_control``): what OpenAI does unasked. Off by default:
    # a write costs 1.25x (5m) or 2x (1h) the input price and pays only when the prefix recurs.
    prompt_cache: CacheTTL | None = None


# OpenAI's reasoning efforts as Anthropic's (which has no ``minimal`` or ``none``); Anthropic's
# own values, which the Anthropic ingress passes on as they are, are unchanged.
EFFORTS = {"none": "low", "minimal": "low"}


@dataclass(slots=True)
class JsonMode:
    """How ``response_format`` was carried: through a forced tool (``tool``) or not at all."""

    tool: str | None = None


# The lifetimes Anthropic's cache offers; another vendor's breakpoint takes the nearest.
LIFETIMES: tuple[CacheTTL, ...] = ("5m", "1h")
MAX_BREAKPOINTS = 4


def cache_control(ttl: CacheTTL) -> dict[str, str]:
    lifetime = nearest_lifetime(ttl, LIFETIMES)
    return {"type": "ephemeral"} if lifetime == "5m" else {"type": "ephemeral", "ttl": lifetime}


def _called(request: ChatRequest) -> list[str]:
    """The names of the tools the conversation's assistant turns called, each once."""
    names = dict.fromkeys(call.name for message in request.messages for call in message.tool_calls)
    return list(names)


def _marked(block: dict[str, Any], ttl: CacheTTL | None) -> dict[str, Any]:
    if ttl is not None:
        block["cache_control"] = cache_control(ttl)
    return block


def _image(part: ImagePart) -> dict[str, Any]:
    if part.url is not None:
        source = {"type": "url", "url": part.url}
    else:
        source = {
            "type": "base64",
            "media_type": part.media_type or "image/png",
            "data": part.data or "",
        }
    return _marked({"type": "image", "source": source}, part.cache)


def _document(part: DocumentPart) -> dict[str, Any]:
    source: dict[str, Any]
    if part.url is not None:
        source = {"type": "url", "url": part.url}
    elif part.data is None:  # a plain-text document (sent as one only to be cited)
        source = {"type": "text", "media_type": "text/plain", "data": part.text or ""}
    else:
        source = {"type": "base64", "media_type": part.media_type, "data": part.data}
    block: dict[str, Any] = {"type": "document", "source": source}
    if part.title or part.filename:
        block["title"] = part.title or part.filename
    if part.context:
        block["context"] = part.context
    if part.citations:
        block["citations"] = {"enabled": True}
    return _marked(block, part.cache)


# Each kind of citation location: what it is called, and its fields for start and end.
LOCATIONS: dict[str, tuple[CitedLocation, str, str]] = {
    "page_location": ("page", "start_page_number", "end_page_number"),
    "char_location": ("char", "start_char_index", "end_char_index"),
    "content_block_location": ("block", "start_block_index", "end_block_index"),
}


def decode_citation(data: Any, documents: list[DocumentPart]) -> Citation | None:
    """A citation of one of the request's documents, numbered as its caller numbers them and
    naming the upload it came from; None for what cites no document (a web search result)."""
    if not isinstance(data, dict) or data.get("type") not in LOCATIONS:
        return None
    location, start, end = LOCATIONS[data["type"]]
    try:
        index, first, last = (int(data.get(field) or 0) for field in ("document_index", start, end))
    except (TypeError, ValueError):  # not numbers: no place to point to
        return None
    document = documents[index] if 0 <= index < len(documents) else None
    if document is not None and document.index is not None:
        index = document.index
    title = data.get("document_title")
    return Citation(
        cited_text=str(data.get("cited_text") or ""),
        document_index=index,
        location=location,
        start=first,
        end=last,
        document_title=str(title) if title else None,
        file_id=document.from_file if document is not None else None,
    )


def decode_citations(data: Any, documents: list[DocumentPart]) -> list[Citation]:
    if not isinstance(data, list):
        return []
    decoded = (decode_citation(item, documents) for item in data)
    return [citation for citation in decoded if citation is not None]


def _content(message: Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            if part.text:  # Anthropic refuses empty text blocks
                blocks.append(_marked({"type": "text", "text": part.text}, part.cache))
            elif part.cache is not None and blocks:  # the breakpoint moves to the block before
                _marked(blocks[-1], part.cache)
        elif isinstance(part, ImagePart):
            blocks.append(_image(part))
        else:
            blocks.append(_document(part))
    return blocks


def _arguments(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text) if text.strip() else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _blocks(message: Message) -> tuple[str, list[dict[str, Any]]]:
    if message.role == "tool":
        result: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": message.tool_call_id or "",
            "content": _content(message) or message.text(),
        }
        if message.is_error:
            result["is_error"] = True
        return "user", [_marked(result, message.cache)]
    blocks = _content(message)
    if message.role == "assistant":
        blocks.extend(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": _arguments(call.arguments),
            }
            for call in message.tool_calls
        )
        if blocks:
            _marked(blocks[-1], message.cache)
    return ("assistant" if message.role == "assistant" else "user"), blocks


def _system_blocks(parts: list[TextPart]) -> list[dict[str, Any]]:
    """The system prompt as text blocks cut at each breakpoint: the text up to a marked part is
    one block carrying its mark, and what follows the last mark is one more block."""
    blocks: list[dict[str, Any]] = []
    pending: list[str] = []
    for part in parts:
        pending.append(part.text)
        if part.cache is not None and "".join(pending):
            blocks.append(_marked({"type": "text", "text": "".join(pending)}, part.cache))
            pending = []
    if "".join(pending):
        blocks.append({"type": "text", "text": "".join(pending)})
    return blocks


def encode_messages(
    messages: list[Message],
) -> tuple[str | list[dict[str, Any]], list[dict[str, Any]]]:
    """The system prompt and the alternating turns Anthropic requires: system messages go to the
    top-level ``system`` (a string, or text blocks when it holds cache breakpoints);
    consecutive same-role turns (several tool results, a tool result and the user's next words)
    merge into one, tool results first."""
    system: list[TextPart] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            if message.text():
                if system:
                    system.append(TextPart("\n\n"))
                system.extend(part for part in message.content if isinstance(part, TextPart))
                if message.cache is not None:
                    system.append(TextPart("", message.cache))
            continue
        role, blocks = _blocks(message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            previous = turns[-1]["content"]
            results = [b for b in previous + blocks if b["type"] == "tool_result"]
            others = [b for b in previous + blocks if b["type"] != "tool_result"]
            turns[-1]["content"] = results + others
        else:
            turns.append({"role": role, "content": blocks})
    if any(part.cache is not None for part in system):
        return _system_blocks(system), turns
    return "".join(part.text for part in system), turns


def encode_request(
    request: ChatRequest,
    model: str,
    options: AnthropicOptions,
    *,
    max_output_tokens: int | None,
    stream: bool,
) -> tuple[dict[str, Any], JsonMode]:
    system, turns = encode_messages(request.messages)
    payload: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens or max_output_tokens or options.default_max_tokens,
        "messages": turns,
    }
    tools = [
        _marked(
            {
                "name": tool.name,
                **({"description": tool.description} if tool.description else {}),
                "input_schema": tool.parameters,
                **({"strict": tool.strict} if tool.strict is not None else {}),
            },
            tool.cache,
        )
        for tool in request.tools
    ]
    choice: dict[str, Any] | None = None
    if request.tool_choice is not None:
        mode = request.tool_choice.mode
        if mode == "required":
            choice = {"type": "any"}
        elif mode == "tool":
            choice = {"type": "tool", "name": request.tool_choice.name}
        else:
            choice = {"type": mode}
    json_mode = JsonMode()
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_schema" and not tools:
        json_mode.tool = fmt.name or JSON_TOOL
        tools = [
            {
                "name": json_mode.tool,
                "description": "Give the answer as this tool's input.",
                "input_schema": fmt.schema or {"type": "object"},
            }
        ]
        choice = {"type": "tool", "name": json_mode.tool}
    elif fmt is not None and fmt.type != "text":
        instruction = JSON_INSTRUCTION
        if fmt.type == "json_schema" and fmt.schema:
            instruction += " It must match this JSON schema: " + orjson.dumps(fmt.schema).decode()
        if isinstance(system, list):  # after the last breakpoint, so the cached prefix holds
            system = [*system, {"type": "text", "text": instruction}]
        else:
            system = f"{system}\n\n{instruction}" if system else instruction
    if request.parallel_tool_calls is False and tools:
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    if not tools and any(message.tool_calls for message in request.messages):
        # Anthropic refuses tool_use and tool_result blocks in a request that defines no tools
        # (OpenAI's API takes them: a conversation summarised or continued without its tools).
        # The tools the history used are declared bare, and not to be called again.
        tools = [{"name": name, "input_schema": {"type": "object"}} for name in _called(request)]
        choice = {"type": "none"}
    if tools:
        payload["tools"] = tools
    if choice is not None and (tools or choice["type"] == "none"):
        payload["tool_choice"] = choice
    if system:
        payload["system"] = system
    if request.temperature is not None:
        # Anthropic's range is 0..1 where OpenAI's is 0..2.
        payload["temperature"] = min(1.0, request.temperature)
    if request.top_p is not None:
        payload["top_p"] = request.top_p
    # Anthropic refuses a stop sequence of whitespace alone ("\n", common in OpenAI requests for
    # one-line answers); ending at a blank line is nothing the model's own stop does not cover.
    stops = [sequence for sequence in request.stop if sequence.strip()]
    if stops:
        payload["stop_sequences"] = stops
    if request.user:
        payload["metadata"] = {"user_id": request.user}
    if options.reasoning and request.reasoning_effort is not None:
        effort = request.reasoning_effort.lower()
        payload["output_config"] = {"effort": EFFORTS.get(effort, effort)}
    marked = has_breakpoints(request)
    if marked:
        fit_breakpoints(payload)
    automatic = request.cache or (
        None if marked or request.cache_explicit else options.prompt_cache
    )
    if automatic is not None:
        payload["cache_control"] = cache_control(automatic)
    if stream:
        payload["stream"] = True
    return payload, json_mode


def fit_breakpoints(payload: dict[str, Any]) -> None:
    """Make the breakpoints ones Anthropic takes: at most four, and none lasting an hour after
    one lasting five minutes. A client of another format may send more (OpenAI writes the
    latest four and passes over the rest, so do we) or mix lifetimes (a lifetime is a minimum,
    so an earlier breakpoint is made to last as long as a later one)."""
    system = payload.get("system")
    blocks: list[dict[str, Any]] = [*payload.get("tools", [])]
    blocks += system if isinstance(system, list) else []
    for turn in payload["messages"]:
        for block in turn["content"]:
            blocks.append(block)
            if block.get("type") == "tool_result" and isinstance(block.get("content"), list):
                blocks += block["content"]
    marked = [block for block in blocks if "cache_control" in block]
    for block in marked[:-MAX_BREAKPOINTS]:
        del block["cache_control"]
    marked = marked[-MAX_BREAKPOINTS:]
    hours = [index for index, block in enumerate(marked) if block["cache_control"].get("ttl")]
    for block in marked[: hours[-1] if hours else 0]:
        block["cache_control"] = cache_control("1h")


def decode_usage(data: Any) -> Usage:
    """Anthropic's ``input_tokens`` leave out cache reads and writes; the canonical count of
    input tokens holds all of them, ``cached_input_tokens`` the reads and the
    ``cache_write_*`` fields the writes, by the cache's lifetime (``cache_creation`` splits
    them; without it, every write is a 5-minute one)."""
    if not isinstance(data, dict):
        return Usage()
    read = int(data.get("cache_read_input_tokens") or 0)
    written = int(data.get("cache_creation_input_tokens") or 0)
    split = data.get("cache_creation")
    hour = int(split.get("ephemeral_1h_input_tokens") or 0) if isinstance(split, dict) else 0
    hour = min(hour, written)
    return Usage(
        input_tokens=int(data.get("input_tokens") or 0) + read + written,
        output_tokens=int(data.get("output_tokens") or 0),
        cached_input_tokens=read,
        cache_write_tokens=written - hour,
        cache_write_long_tokens=hour,
    )


def decode_response(
    data: Any, worker: str, json_mode: JsonMode, documents: list[DocumentPart] | None = None
) -> ChatResponse:
    """The answer; ``documents``: those the request sent, which its citations number."""
    try:
        text: list[str] = []
        length = 0
        cited: list[CitedSpan] = []
        calls: list[ToolCall] = []
        for block in data["content"]:
            kind = block.get("type")
            if kind == "text":
                piece = block["text"]
                citations = decode_citations(block.get("citations"), documents or [])
                if citations:
                    cited.append(CitedSpan(length, length + len(piece), citations))
                text.append(piece)
                length += len(piece)
            elif kind == "tool_use" and block["name"] == json_mode.tool:
                text.append(orjson.dumps(block.get("input") or {}).decode())
                length += len(text[-1])
            elif kind == "tool_use":
                calls.append(
                    ToolCall(block["id"], block["name"], orjson.dumps(block.get("input")).decode())
                )
        reason = STOP_REASONS.get(data.get("stop_reason") or "end_turn", "stop")
        if json_mode.tool is not None and reason == "tool_calls":
            reason = "stop"
        return ChatResponse(
            id=str(data.get("id") or f"msg_{uuid.uuid4().hex}"),
            model=worker,
            text="".join(text),
            tool_calls=calls,
            finish_reason=reason,
            usage=decode_usage(data.get("usage")),
            stop_sequence=data.get("stop_sequence") or None,
            citations=cited,
        )
    except (KeyError, TypeError, AttributeError):
        raise ProviderError(
            "upstream",
            f"worker {worker!r} answered in an unexpected shape",
            retryable=True,
            worker=worker,
        ) from None


class StreamDecoder:
    """Anthropic's stream events to canonical ones. Usage comes in two halves: input counts in
    ``message_start``, the cumulative output count in ``message_delta``."""

    def __init__(
        self, worker: str, json_mode: JsonMode, documents: list[DocumentPart] | None = None
    ) -> None:
        self.worker = worker
        self.json_mode = json_mode
        self.documents = documents or []  # what citations number
        self.texts = 0  # text blocks begun: each after the first starts a passage
        self.usage = Usage()
        self.counts: dict[str, Any] = {}  # the usage fields reported so far
        self.tools: dict[int, int] = {}  # content block index -> tool call index
        self.json_blocks: set[int] = set()
        self.done = False

    def decode(self, event: Any) -> list[StreamEvent]:
        kind = event.get("type")
        if kind == "message_start":
            self._count((event.get("message") or {}).get("usage"))
        elif kind == "content_block_start":
            return self._start(int(event.get("index") or 0), event.get("content_block") or {})
        elif kind == "content_block_delta":
            return self._delta(int(event.get("index") or 0), event.get("delta") or {})
        elif kind == "message_delta":
            return self._message_delta(event)
        elif kind == "message_stop":
            self.done = True
            return [UsageReport(self.usage)]
        elif kind == "error":
            error = event.get("error") or {}
            kind_name = str(error.get("type") or "api_error")
            raise provider_error_from_status(
                STATUS_OF_TYPE.get(kind_name, 500),
                f"worker {self.worker!r} failed mid-stream ({kind_name}): "
                f"{error.get('message') or 'no message'}",
                worker=self.worker,
            )
        return []  # ping, content_block_stop, and event types added after this was written

    def _count(self, usage: Any) -> None:
        """Take the counts an event reports: message_delta's are cumulative (output only, or
        every field in newer API versions) and replace message_start's."""
        if isinstance(usage, dict):
            self.counts.update((key, value) for key, value in usage.items() if value is not None)
            self.usage = decode_usage(self.counts)

    def _start(self, index: int, block: dict[str, Any]) -> list[StreamEvent]:
        if block.get("type") == "text":
            self.texts += 1
            events: list[StreamEvent] = []
            if block.get("text") or self.texts > 1:
                events.append(TextDelta(block.get("text") or "", passage=self.texts > 1))
            cited = decode_citations(block.get("citations"), self.documents)
            events.extend(CitationDelta(citation) for citation in cited)
            return events
        if block.get("type") != "tool_use":
            return []
        if block.get("name") == self.json_mode.tool:
            self.json_blocks.add(index)
            return []
        call = self.tools[index] = len(self.tools)
        start = block.get("input")
        return [
            ToolCallDelta(
                call,
                id=block.get("id"),
                name=block.get("name"),
                arguments=orjson.dumps(start).decode() if start else "",
            )
        ]

    def _delta(self, index: int, delta: dict[str, Any]) -> list[StreamEvent]:
        kind = delta.get("type")
        if kind == "text_delta":
            return [TextDelta(delta.get("text") or "")]
        if kind == "citations_delta":
            citation = decode_citation(delta.get("citation"), self.documents)
            return [CitationDelta(citation)] if citation is not None else []
        if kind == "input_json_delta":
            piece = delta.get("partial_json") or ""
            if index in self.json_blocks:
                return [TextDelta(piece)] if piece else []
            if index in self.tools:
                return [ToolCallDelta(self.tools[index], arguments=piece)] if piece else []
        return []  # thinking and signature deltas are not part of the answer

    def _message_delta(self, event: dict[str, Any]) -> list[StreamEvent]:
        self._count(event.get("usage"))
        delta = event.get("delta") or {}
        raw = delta.get("stop_reason")
        if not raw:
            return []
        reason = STOP_REASONS.get(raw, "stop")
        if self.json_mode.tool is not None and reason == "tool_calls":
            reason = "stop"
        return [Finish(reason, delta.get("stop_sequence") or None)]


class AnthropicProvider:
    def __init__(self, context: ProviderContext) -> None:
        worker = context.worker
        self.options = AnthropicOptions.model_validate(worker.options)
        self.worker = worker.name
        self.model = worker.model
        self.max_output_tokens = worker.max_output_tokens
        key = context.secrets.get(worker.api_key_env) if worker.api_key_env else None
        headers = {**self.options.extra_headers, "anthropic-version": self.options.version}
        if key:
            headers["x-api-key"] = key
        if self.options.beta:
            headers["anthropic-beta"] = ",".join(self.options.beta)
        # Anthropic's base URL conventionally stops before /v1; accept either spelling.
        base = (worker.base_url or DEFAULT_BASE_URL).removesuffix("/v1")
        self.upstream = Upstream(
            context.http,
            worker=worker.name,
            base_url=base,
            headers=headers,
            timeouts=worker.timeouts,
            secrets=[key],
            quota=context.quota,
        )

    def upstream_profile(self) -> UpstreamProfile:
        return UpstreamProfile(image_rule=CLAUDE, image_limits=ANTHROPIC_IMAGES)

    def _payload(self, request: ChatRequest, *, stream: bool) -> tuple[dict[str, Any], JsonMode]:
        return encode_request(
            request,
            self.model,
            self.options,
            max_output_tokens=self.max_output_tokens,
            stream=stream,
        )

    async def start(self) -> None:
        return None

    async def complete(self, request: ChatRequest) -> ChatResponse:
        payload, json_mode = self._payload(request, stream=False)
        data = await self.upstream.post_json("/v1/messages", payload)
        return decode_response(data, self.worker, json_mode, request.document_parts())

    async def stream(self, request: ChatRequest) -> EventStream:
        payload, json_mode = self._payload(request, stream=True)
        decoder = StreamDecoder(self.worker, json_mode, request.document_parts())
        async with self.upstream.open_stream("/v1/messages", payload) as lines:
            async for event in sse_json(lines, self.worker):
                if not isinstance(event, dict):
                    continue
                for item in decoder.decode(event):
                    yield item
                if decoder.done:
                    return
        if not decoder.done:
            raise ProviderError(
                "upstream",
                f"worker {self.worker!r} ended its stream early",
                retryable=True,
                worker=self.worker,
            )

    async def aclose(self) -> None:
        return None


def register_providers(providers: ProviderRegistry) -> None:
    providers.register("anthropic", AnthropicProvider)
