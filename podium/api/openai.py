"""OpenAI Chat Completions ingress: ``POST /v1/chat/completions`` and ``GET /v1/models``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal, Protocol, cast

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from podium.api.http import Response, retry_headers
from podium.api.tool_choice import check_tool_choice
from podium.context import RequestContext
from podium.documents import attached
from podium.errors import ErrorKind, PodiumError
from podium.gateway import Outcome, total_cost
from podium.types import (
    CacheTTL,
    ChatRequest,
    ChatResponse,
    ContentPart,
    Finish,
    ImagePart,
    Message,
    ResponseFormat,
    StreamEvent,
    TextDelta,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
    UsageReport,
    WireItem,
    WireUsage,
)


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BreakpointIn(Wire):
    """OpenAI's prompt-cache breakpoint on a content part (GPT-5.6 and later)."""

    mode: Literal["explicit"]
    ttl: Literal["30m", "12h"] | None = None


class CacheOptionsIn(Wire):
    mode: Literal["implicit", "explicit"] | None = None
    ttl: Literal["30m"] | None = None


class CacheControlIn(Wire):
    """Anthropic's breakpoint on a content part, as OpenAI-compatible gateways take it for
    Anthropic models."""

    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class TextContent(Wire):
    type: Literal["text"]
    text: str
    prompt_cache_breakpoint: BreakpointIn | None = None
    cache_control: CacheControlIn | None = None


class ImageURL(Wire):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImageContent(Wire):
    type: Literal["image_url"]
    image_url: ImageURL
    prompt_cache_breakpoint: BreakpointIn | None = None
    cache_control: CacheControlIn | None = None


class FileIn(Wire):
    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


class FileContent(Wire):
    type: Literal["file"]
    file: FileIn
    prompt_cache_breakpoint: BreakpointIn | None = None
    cache_control: CacheControlIn | None = None


class RefusalContent(Wire):
    type: Literal["refusal"]
    refusal: str


UserPart = Annotated[TextContent | ImageContent | FileContent, Field(discriminator="type")]
AssistantPart = Annotated[TextContent | RefusalContent, Field(discriminator="type")]


class FunctionCall(Wire):
    name: str
    arguments: str


class ToolCallIn(Wire):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class SystemMessage(Wire):
    role: Literal["system", "developer"]
    content: str | list[TextContent]
    name: str | None = None


class UserMessage(Wire):
    role: Literal["user"]
    content: str | list[UserPart]
    name: str | None = None


class AssistantMessage(Wire):
    role: Literal["assistant"]
    content: str | list[AssistantPart] | None = None
    tool_calls: list[ToolCallIn] | None = None
    name: str | None = None
    refusal: str | None = None


class ToolMessage(Wire):
    role: Literal["tool"]
    content: str | list[TextContent]
    tool_call_id: str


MessageIn = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")
]


class FunctionDef(Wire):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(Wire):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(Wire):
    name: str


class NamedToolChoice(Wire):
    type: Literal["function"]
    function: NamedFunction


class JSONSchemaFormat(Wire):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class ResponseFormatIn(Wire):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class StreamOptions(Wire):
    include_usage: bool = False
    include_obfuscation: bool | None = None


class ChatCompletionIn(Wire):
    model: str = Field(min_length=1, max_length=256)
    messages: list[MessageIn] = Field(min_length=1)
    tools: list[ToolDef] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormatIn | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, ge=1, le=1)
    # Accepted for compatibility; they do not change how Podium routes or answers.
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    store: bool | None = None
    service_tier: str | None = None
    logprobs: Literal[False] | None = None
    modalities: list[Literal["text"]] | None = None  # text is all Podium's workers write
    # Prompt caching: passed on to workers that take them (docs/wire-formats.md).
    prompt_cache_key: str | None = Field(None, max_length=1024)
    prompt_cache_options: CacheOptionsIn | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    safety_identifier: str | None = None
    # Passed on to workers whose options say they take them (``options.reasoning``), which
    # judge the value; dropped for the rest.
    reasoning_effort: str | None = Field(None, min_length=1, max_length=32)
    verbosity: str | None = Field(None, min_length=1, max_length=32)


def _field_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif (
            part in {"function-after[...]"}
            or "[" in str(part)
            or part
            in (
                "str",
                "list[...]",
                "system",
                "developer",
                "user",
                "assistant",
                "tool",
                "text",
                "image_url",
                "refusal",
                "NamedToolChoice",
                "literal['auto','none','required']",
            )
        ):
            continue  # pydantic's names for union branches, not fields
        else:
            path += f".{part}" if path else str(part)
    return path


def validation_error(error: ValidationError) -> PodiumError:
    errors = error.errors()
    # A content part of an unknown type fails both branches of ``str | list[part]``; the
    # part's own error ("Input tag 'file' ... expected tags: 'text', 'image_url'") says why,
    # the string branch's ("Input should be a valid string") does not.
    # Otherwise the deepest failure: a bad field inside a content part fails the string branch
    # too ("Input should be a valid string"), and the part's own error is the one to report.
    first = next(
        (e for e in errors if e["type"] == "union_tag_invalid"),
        max(errors, key=lambda e: len(e["loc"])),
    )
    path = _field_path(tuple(first["loc"]))
    if first["type"] == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {path}"
    elif first["type"] == "missing":
        message = f"Missing required parameter: '{path}'."
    else:
        message = f"Invalid value for '{path}': {first['msg']}."
    return PodiumError("invalid_request", message, param=path or None)


def _ttl(part: TextContent | ImageContent | FileContent) -> CacheTTL | None:
    """A part's breakpoint: OpenAI's own (30 minutes unless it says), else Anthropic's."""
    if part.prompt_cache_breakpoint is not None:
        return part.prompt_cache_breakpoint.ttl or "30m"
    if part.cache_control is not None:
        return part.cache_control.ttl or "5m"
    return None


def _text(content: str | list[TextContent] | list[Any] | None) -> list[ContentPart]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)]
    parts: list[ContentPart] = []
    for part in content:
        if isinstance(part, TextContent):
            parts.append(TextPart(part.text, _ttl(part)))
        elif isinstance(part, RefusalContent):
            parts.append(TextPart(part.refusal))
        elif isinstance(part, ImageContent):
            url = part.image_url.url
            detail, cache = part.image_url.detail, _ttl(part)
            if url.startswith("data:") and ";base64," in url:
                head, data = url[5:].split(";base64,", 1)
                parts.append(ImagePart(data=data, media_type=head, detail=detail, cache=cache))
            else:
                parts.append(ImagePart(url=url, detail=detail, cache=cache))
        elif isinstance(part, FileContent):
            file = part.file
            parts.append(
                attached(
                    file.file_data,
                    file_id=file.file_id,
                    filename=file.filename,
                    cache=_ttl(part),
                    where="messages.content.file",
                )
            )
    return parts


def to_canonical(wire: ChatCompletionIn) -> ChatRequest:
    messages: list[Message] = []
    attachments = False
    for message in wire.messages:
        if isinstance(message, SystemMessage):
            messages.append(Message("system", _text(message.content), name=message.name))
        elif isinstance(message, UserMessage):
            user = Message("user", _text(message.content), name=message.name)
            if type(message.content) is list and not attachments:
                attachments = user.has_documents()
            messages.append(user)
        elif isinstance(message, AssistantMessage):
            calls = [
                ToolCall(call.id, call.function.name, call.function.arguments)
                for call in message.tool_calls or []
            ]
            messages.append(
                Message("assistant", _text(message.content), tool_calls=calls, name=message.name)
            )
        else:
            messages.append(
                Message("tool", _text(message.content), tool_call_id=message.tool_call_id)
            )
    tool_choice: ToolChoice | None = None
    if isinstance(wire.tool_choice, str):
        tool_choice = ToolChoice(mode=wire.tool_choice)
    elif wire.tool_choice is not None:
        tool_choice = ToolChoice(mode="tool", name=wire.tool_choice.function.name)
    response_format: ResponseFormat | None = None
    if wire.response_format is not None:
        fmt = wire.response_format
        if fmt.type == "json_schema":
            if fmt.json_schema is None:
                raise PodiumError(
                    "invalid_request",
                    "Missing required parameter: 'response_format.json_schema'.",
                    param="response_format.json_schema",
                )
            response_format = ResponseFormat(
                "json_schema",
                fmt.json_schema.schema_ or {},
                fmt.json_schema.name,
                fmt.json_schema.strict,
            )
        else:
            response_format = ResponseFormat(fmt.type)
    stop = [wire.stop] if isinstance(wire.stop, str) else list(wire.stop or [])
    if len(stop) > 4:
        raise PodiumError("invalid_request", "stop may hold at most 4 sequences", param="stop")
    tools = [
        Tool(
            t.function.name,
            t.function.description,
            t.function.parameters or {"type": "object", "properties": {}},
            strict=t.function.strict,
        )
        for t in wire.tools or []
    ]
    check_tool_choice(tool_choice, tools)
    return ChatRequest(
        model=wire.model,
        messages=messages,
        tools=tools,
        tool_choice=tool_choice,
        response_format=response_format,
        temperature=wire.temperature,
        top_p=wire.top_p,
        max_tokens=wire.max_completion_tokens or wire.max_tokens,
        stop=stop,
        seed=wire.seed,
        user=wire.user,
        metadata=wire.metadata or {},
        stream=bool(wire.stream),
        include_usage=bool(wire.stream_options and wire.stream_options.include_usage),
        parallel_tool_calls=wire.parallel_tool_calls,
        reasoning_effort=wire.reasoning_effort,
        verbosity=wire.verbosity,
        attachments=attachments,
        **cache_fields(
            wire.prompt_cache_options, wire.prompt_cache_key, wire.prompt_cache_retention
        ),
    )


class CacheOptions(Protocol):
    """Chat Completions' and the Responses API's ``prompt_cache_options``, as read here."""

    @property
    def mode(self) -> Literal["implicit", "explicit"] | None: ...
    @property
    def ttl(self) -> Literal["30m", "12h"] | None: ...


def cache_fields(
    options: CacheOptions | None, key: str | None, retention: str | None
) -> dict[str, Any]:
    """The canonical request's prompt-cache fields from OpenAI's: options given in ``implicit``
    mode ask for the implicit breakpoint (its lifetime: 30 minutes unless they say)."""
    fields: dict[str, Any] = {"cache_key": key, "cache_retention": retention}
    if options is not None and options.mode == "explicit":
        fields["cache_explicit"] = True
    elif options is not None:
        fields["cache"] = options.ttl or "30m"
    return fields


ERROR_TYPES: dict[ErrorKind, str] = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "payment_required": "insufficient_quota",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "request_too_large": "invalid_request_error",
    "unprocessable": "invalid_request_error",
    "rate_limit": "rate_limit_error",
    "api_error": "server_error",
    "upstream": "server_error",
    "overloaded": "server_error",
    "timeout": "timeout_error",
}


def error_body(error: PodiumError) -> dict[str, Any]:
    return {
        "error": {
            "message": error.message,
            "type": ERROR_TYPES[error.kind],
            "param": error.param,
            "code": error.code or (error.kind if error.kind != "invalid_request" else None),
        }
    }


def _usage(usage: Usage) -> dict[str, Any]:
    details: dict[str, int] = {"cached_tokens": usage.cached_input_tokens}
    if usage.cache_written_tokens:  # an upstream that charges for writes (Anthropic) wrote some
        details["cache_write_tokens"] = usage.cache_written_tokens
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": details,
    }


def _tool_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in calls
    ]


DONE = b"data: [DONE]\n\n"


def _chunk_head(outcome: Outcome, context: RequestContext) -> bytes:
    return orjson.dumps(
        {
            "id": f"chatcmpl-{context.trace_id}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": outcome.worker,
            "system_fingerprint": None,
        }
    )


def _usage_chunk(head: bytes, usage: Usage, cost: float) -> bytes:
    body = _usage(usage)
    body["cost_usd"] = cost
    return b"data: " + head[:-1] + b',"choices":[],"usage":' + orjson.dumps(body) + b"}\n\n"


def _tool_call_delta(event: ToolCallDelta) -> dict[str, Any]:
    call: dict[str, Any] = {"index": event.index}
    if event.id is not None:
        call["id"] = event.id
        call["type"] = "function"
    function: dict[str, Any] = {"arguments": event.arguments}
    if event.name is not None:
        function["name"] = event.name
    call["function"] = function
    return {"tool_calls": [call]}


# The plain shape most requests have (text messages, a few sampling fields) is read without
# pydantic: building the validation model costs more than the rest of parsing. Anything else,
# and anything this reader is unsure of, takes the validated path, which also words the errors.
_PLAIN_FIELDS = frozenset(
    {"model", "messages", "stream", "stream_options", "temperature", "top_p", "max_tokens",
     "max_completion_tokens", "stop", "seed", "user"}
)  # fmt: skip
_PLAIN_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_PLAIN_MESSAGE_FIELDS = frozenset({"role", "content", "name"})


def _number_within(value: Any, low: float, high: float) -> bool:
    return (type(value) is float or type(value) is int) and low <= value <= high


def _count_from_one(value: Any) -> bool:
    return type(value) is int and value >= 1


def plain_request(body: dict[str, Any]) -> ChatRequest | None:
    """The canonical request for a body of the plain shape, or None to take the validated path.
    Accepts only what the validated path accepts, and builds the same request from it."""
    model = body.get("model")
    wire_messages = body.get("messages")
    if type(model) is not str or not 1 <= len(model) <= 256:
        return None
    if type(wire_messages) is not list or not wire_messages:
        return None
    # Two fields that hold a valid model and messages are the only ones; with more, every one
    # must be known. (The set check costs ~1.5k instructions; most bodies have two fields,
    # most messages a role and a content.)
    if len(body) != 2 and not _PLAIN_FIELDS.issuperset(body):
        return None
    messages: list[Message] = []
    for wire in wire_messages:
        if type(wire) is not dict or (
            len(wire) != 2 and not _PLAIN_MESSAGE_FIELDS.issuperset(wire)
        ):
            return None
        wire_role = wire.get("role")
        role = _PLAIN_ROLES.get(wire_role) if type(wire_role) is str else None
        content = wire.get("content")
        name = wire.get("name")
        if role is None or type(content) is not str or not (name is None or type(name) is str):
            return None
        # Positional arguments, and the rare name set after: a keyword argument to a
        # dataclass costs ~0.5k instructions (Python 3.11 gathers them into a dict).
        message = Message(role, [TextPart(content)])  # type: ignore[arg-type]
        if name is not None:
            message.name = name
        messages.append(message)
    if len(body) == 2:  # only the model and the messages: every other field is its default
        return ChatRequest(model, messages)
    stream = body.get("stream")
    temperature = body.get("temperature")
    top_p = body.get("top_p")
    max_tokens = body.get("max_tokens")
    max_completion_tokens = body.get("max_completion_tokens")
    seed = body.get("seed")
    user = body.get("user")
    stop = body.get("stop")
    options = body.get("stream_options")
    if not (
        (stream is None or type(stream) is bool)
        and (temperature is None or _number_within(temperature, 0, 2))
        and (top_p is None or _number_within(top_p, 0, 1))
        and (max_tokens is None or _count_from_one(max_tokens))
        and (max_completion_tokens is None or _count_from_one(max_completion_tokens))
        and (seed is None or type(seed) is int)
        and (user is None or type(user) is str)
    ):
        return None
    if stop is None:
        stops: list[str] = []
    elif type(stop) is str:
        stops = [stop]
    elif type(stop) is list and len(stop) <= 4 and all(type(s) is str for s in stop):
        stops = list(stop)
    else:
        return None
    include_usage = False
    if options is not None:
        if type(options) is not dict or not {"include_usage"}.issuperset(options):
            return None
        include_usage = options.get("include_usage", False)
        if type(include_usage) is not bool:
            return None
    return ChatRequest(
        model=model,
        messages=messages,
        temperature=None if temperature is None else float(temperature),
        top_p=None if top_p is None else float(top_p),
        max_tokens=max_completion_tokens or max_tokens,
        stop=stops,
        seed=seed,
        user=user,
        stream=bool(stream),
        include_usage=include_usage,
    )


class OpenAIIngress:
    name = "openai"
    wire = "openai"  # a stream from an OpenAI-compatible worker is relayed as it comes

    def parse(self, body: Any, headers: dict[str, str]) -> ChatRequest:
        plain = plain_request(body) if type(body) is dict else None
        if plain is not None:
            return plain
        try:
            wire = ChatCompletionIn.model_validate(body)
        except ValidationError as error:
            raise validation_error(error) from None
        return to_canonical(wire)

    def render_error(self, error: PodiumError) -> Response:
        return Response.json(error_body(error), error.status, retry_headers(error))

    def encode_response(
        self, response: ChatResponse, request: ChatRequest, outcome: Outcome
    ) -> bytes:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": response.text or None,
            "refusal": None,
        }
        if response.tool_calls:
            message["tool_calls"] = _tool_calls(response.tool_calls)
        elif message["content"] is None:
            message["content"] = ""
        usage = _usage(response.usage)
        usage["cost_usd"] = total_cost(outcome.run.attempts)
        return orjson.dumps(
            {
                "id": response.id
                if response.id.startswith("chatcmpl")
                else f"chatcmpl-{response.id}",
                "object": "chat.completion",
                "created": response.created or int(time.time()),
                "model": response.model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": response.finish_reason,
                        "logprobs": None,
                    }
                ],
                "usage": usage,
                "system_fingerprint": None,
            }
        )

    async def encode_stream(
        self,
        events: AsyncIterator[StreamEvent],
        request: ChatRequest,
        outcome: Outcome,
        context: RequestContext,
    ) -> AsyncIterator[bytes]:
        head = _chunk_head(outcome, context)
        # Every chunk is the same head and choice around its delta: the bytes around it are
        # made once per stream, so a chunk costs one small encode.
        before = b"data: " + head[:-1] + b',"choices":[{"index":0,"delta":'
        between = b',"logprobs":null,"finish_reason":'
        after = b"}]}\n\n"
        pending = between + b"null" + after

        yield before + b'{"role":"assistant","content":""}' + pending
        usage: Usage | None = None
        finish: str | None = None
        try:
            async for event in events:
                kind = type(event)
                if kind is TextDelta:
                    text = cast(TextDelta, event).text
                    if text:  # an empty one only marks a passage, which this format has not
                        yield before + b'{"content":' + orjson.dumps(text) + b"}" + pending
                elif kind is ToolCallDelta:
                    yield (
                        before
                        + orjson.dumps(_tool_call_delta(cast(ToolCallDelta, event)))
                        + pending
                    )
                elif kind is Finish:
                    finish = cast(Finish, event).reason
                elif kind is UsageReport:
                    usage = cast(UsageReport, event).usage
        except PodiumError as error:
            yield b"data: " + orjson.dumps(error_body(error)) + b"\n\n"
            return
        yield before + b"{}" + between + orjson.dumps(finish or "stop") + after
        if request.include_usage:
            attempts = outcome.run.attempts
            settled = usage or (attempts[-1].usage if attempts else Usage())
            yield _usage_chunk(head, settled, total_cost(attempts))
        yield DONE

    async def relay_stream(
        self,
        items: AsyncIterator[WireItem],
        request: ChatRequest,
        outcome: Outcome,
        context: RequestContext,
    ) -> AsyncIterator[bytes]:
        reported: WireUsage | None = None
        try:
            async for item in items:
                if type(item) is bytes:
                    yield item
                else:
                    reported = cast(WireUsage, item)
        except PodiumError as error:
            yield b"data: " + orjson.dumps(error_body(error)) + b"\n\n"
            return
        if request.include_usage:
            attempts = outcome.run.attempts
            cost = total_cost(attempts)
            event = reported.event if reported is not None else None
            if event is not None and isinstance(event.get("usage"), dict):
                # The upstream's own usage event (every figure it gave), with the cost added.
                event = {**event, "model": outcome.worker, "choices": []}
                event["usage"] = {**event["usage"], "cost_usd": cost}
                yield b"data: " + orjson.dumps(event) + b"\n\n"
            else:
                settled = attempts[-1].usage if attempts else Usage()
                yield _usage_chunk(_chunk_head(outcome, context), settled, cost)
        yield DONE
