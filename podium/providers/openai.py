"""OpenAI Chat Completions egress: OpenAI itself and every OpenAI-compatible server (vLLM,
Ollama, llama.cpp's server, Together, DeepSeek, ...), chosen by ``base_url``."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from podium.errors import ProviderError
from podium.image_tokens import GPT_4O, preset_for_model
from podium.providers.base import ProviderContext, ProviderRegistry
from podium.providers.http import Upstream, sse_json
from podium.providers.openai_cache import (
    as_long,
    marked_parts,
    only_long_writes,
    request_fields,
    takes_cache_fields,
    with_writes,
)
from podium.providers.openai_relay import relay_chunks
from podium.types import (
    ChatRequest,
    ChatResponse,
    DocumentPart,
    Embeddings,
    EmbedRequest,
    EventStream,
    Finish,
    FinishReason,
    Message,
    RelayMeter,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageReport,
    WireStream,
)
from podium.upstream_profile import OPENAI_IMAGES, UpstreamProfile

DEFAULT_BASE_URL = "https://api.openai.com/v1"

FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


class OpenAIOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Newer OpenAI models reject ``max_tokens``; most compatible servers know only it.
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    # The model takes ``reasoning_effort`` and ``verbosity`` (OpenAI's o-series and GPT-5):
    # a request's are passed on. Off by default: other models refuse them.
    reasoning: bool = False
    # Send OpenAI's prompt-cache fields (breakpoints, prompt_cache_options, _key, _retention):
    # by default when the base URL is OpenAI's own API; compatible servers know none of them.
    prompt_cache: bool | None = None
    organization: str | None = None
    extra_headers: dict[str, str] = {}


def encode_message(message: Message) -> dict[str, Any]:
    content = message.content
    if len(content) == 1 and type(content[0]) is TextPart and message.role != "tool":
        # The usual message, one text part: what the general path below gives for it.
        if message.tool_calls:
            return _encode_message(message)
        if message.name:
            return {"role": message.role, "content": content[0].text, "name": message.name}
        return {"role": message.role, "content": content[0].text}
    return _encode_message(message)


def tool_output(message: Message) -> str:
    """A tool result's text for an OpenAI upstream, which has no ``is_error``: a failed tool's
    says so in words, or the model would read it as the tool's answer."""
    text = message.text()
    return f"Error: {text}" if message.is_error else text


def _encode_message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id or "",
            "content": tool_output(message),
        }
    encoded: dict[str, Any] = {"role": message.role}
    if message.has_images() or message.has_documents():
        encoded["content"] = _parts(message)
    else:
        encoded["content"] = message.text() if (message.content or not message.tool_calls) else None
    if message.name:
        encoded["name"] = message.name
    if message.tool_calls:
        encoded["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    return encoded


def encode_request(
    request: ChatRequest, model: str, options: OpenAIOptions, *, stream: bool
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": model,
        "messages": [encode_message(message) for message in request.messages],
    }
    if options.prompt_cache:
        _add_cache_fields(payload, request)
    if request.tools:
        payload["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    **({"description": tool.description} if tool.description else {}),
                    "parameters": tool.parameters,
                    **({"strict": tool.strict} if tool.strict is not None else {}),
                },
            }
            for tool in request.tools
        ]
    if request.tool_choice is not None:
        choice = request.tool_choice
        payload["tool_choice"] = (
            {"type": "function", "function": {"name": choice.name}}
            if choice.mode == "tool"
            else choice.mode
        )
    if request.parallel_tool_calls is not None and request.tools:
        payload["parallel_tool_calls"] = request.parallel_tool_calls
    if request.response_format is not None and request.response_format.type != "text":
        fmt = request.response_format
        if fmt.type == "json_object":
            payload["response_format"] = {"type": "json_object"}
        else:
            schema: dict[str, Any] = {"name": fmt.name or "output", "schema": fmt.schema or {}}
            if fmt.strict is not None:
                schema["strict"] = fmt.strict
            payload["response_format"] = {"type": "json_schema", "json_schema": schema}
    if request.temperature is not None:
        payload["temperature"] = request.temperature
    if request.top_p is not None:
        payload["top_p"] = request.top_p
    if request.seed is not None:
        payload["seed"] = request.seed
    if request.user is not None:
        payload["user"] = request.user
    if request.max_tokens is not None:
        payload[options.max_tokens_field] = request.max_tokens
    if request.stop:
        payload["stop"] = request.stop
    if options.reasoning:
        if request.reasoning_effort is not None:
            payload["reasoning_effort"] = request.reasoning_effort
        if request.verbosity is not None:
            payload["verbosity"] = request.verbosity
    if stream:
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}  # needed to price the call
    return payload


def _add_cache_fields(payload: dict[str, Any], request: ChatRequest) -> None:
    messages = payload["messages"]
    for index, message in enumerate(request.messages):
        if message.has_breakpoint():
            messages[index]["content"] = marked_parts(_parts(message), message)
    payload.update(request_fields(request))


def _parts(message: Message) -> list[dict[str, Any]]:
    """Every content part as its own block, where a breakpoint can go."""
    parts: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, DocumentPart):
            parts.append(_file(part))
        else:
            url = part.url or f"data:{part.media_type or 'image/png'};base64,{part.data}"
            image: dict[str, Any] = {"url": url}
            if part.detail:
                image["detail"] = part.detail
            parts.append({"type": "image_url", "image_url": image})
    return parts


def _file(part: DocumentPart) -> dict[str, Any]:
    if part.data is None:
        # Chat Completions takes a file inline or by an OpenAI file id, never by URL.
        raise ProviderError(
            "invalid_request",
            "this worker takes PDFs inline only (Chat Completions has no file URLs); "
            "send the document's bytes",
            retryable=False,
        )
    name = part.filename or part.title or "document.pdf"
    return {
        "type": "file",
        "file": {"filename": name, "file_data": f"data:{part.media_type};base64,{part.data}"},
    }


def decode_usage(data: Any) -> Usage:
    if not isinstance(data, dict):
        return Usage()
    details = data.get("prompt_tokens_details")
    # Positional (input, output, cached): a keyword argument to a dataclass costs ~0.5k
    # instructions more a call.
    usage = Usage(
        int(data.get("prompt_tokens") or 0),
        int(data.get("completion_tokens") or 0),
        int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0,
    )
    return with_writes(usage, details)


def decode_long_usage(data: Any) -> Usage:
    """:func:`decode_usage` for a request whose cache writes are all 12-hour ones."""
    return as_long(decode_usage(data))


def decode_response(data: Any, worker: str) -> ChatResponse:
    try:
        choice = data["choices"][0]
        message = choice.get("message") or {}
        wire_calls = message.get("tool_calls")
        calls = (
            [
                ToolCall(
                    id=call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
                    name=call["function"]["name"],
                    arguments=call["function"].get("arguments") or "{}",
                )
                for call in wire_calls
            ]
            if wire_calls
            else []
        )
        # Positional, in field order (id, model, text, tool_calls, finish_reason, usage,
        # created): a keyword argument to a dataclass costs ~0.5k instructions.
        return ChatResponse(
            str(data.get("id") or f"chatcmpl-{uuid.uuid4().hex}"),
            worker,
            message.get("content") or "",
            calls,
            FINISH_REASONS.get(choice.get("finish_reason") or "stop", "stop"),
            decode_usage(data.get("usage")),
            int(data.get("created") or time.time()),
        )
    except (KeyError, IndexError, TypeError, AttributeError):
        raise ProviderError(
            "upstream",
            f"worker {worker!r} answered in an unexpected shape",
            retryable=True,
            worker=worker,
        ) from None


def decode_chunk(data: Any) -> list[Any]:
    """The stream events one ``chat.completion.chunk`` carries."""
    events: list[Any] = []
    for choice in data.get("choices") or []:
        delta = choice.get("delta") or {}
        content = delta.get("content")
        if content:
            events.append(TextDelta(content))
        for call in delta.get("tool_calls") or []:
            function = call.get("function") or {}
            events.append(
                ToolCallDelta(
                    index=int(call.get("index") or 0),
                    id=call.get("id"),
                    name=function.get("name"),
                    arguments=function.get("arguments") or "",
                )
            )
        reason = choice.get("finish_reason")
        if reason:
            events.append(Finish(FINISH_REASONS.get(reason, "stop")))
    if data.get("usage"):
        events.append(UsageReport(decode_usage(data["usage"])))
    return events


def openai_upstream(
    context: ProviderContext,
    default_base_url: str,
    extra_headers: dict[str, str],
    organization: str | None,
) -> Upstream:
    """The worker's OpenAI upstream: its key as a bearer token, its organization, its
    headers."""
    worker = context.worker
    key = context.secrets.get(worker.api_key_env) if worker.api_key_env else None
    headers = dict(extra_headers)
    if key:
        headers["authorization"] = f"Bearer {key}"
    if organization:
        headers["openai-organization"] = organization
    return Upstream(
        context.http,
        worker=worker.name,
        base_url=worker.base_url or default_base_url,
        headers=headers,
        timeouts=worker.timeouts,
        secrets=[key],
        quota=context.quota,
    )


class OpenAIProvider:
    wire = "openai"  # an OpenAI client's stream can be relayed as the upstream sent it

    def __init__(self, context: ProviderContext, *, default_base_url: str = DEFAULT_BASE_URL):
        worker = context.worker
        options = OpenAIOptions.model_validate(worker.options)
        caches = takes_cache_fields(options.prompt_cache, worker.base_url or default_base_url)
        self.options = options.model_copy(update={"prompt_cache": caches})
        self.worker = worker.name
        self.model = worker.model
        self.upstream = openai_upstream(
            context, default_base_url, self.options.extra_headers, self.options.organization
        )

    async def start(self) -> None:
        return None

    def upstream_profile(self) -> UpstreamProfile:
        """OpenAI's image rule for the model's family, GPT-4o's for any other model (a vision
        model behind vLLM or Ollama bills its own way: give its worker ``image_tokens``);
        Chat Completions takes a PDF inline only, never by URL. OpenAI's image limits are
        assumed of every such server: looser than most self-hosted ones'."""
        image_rule = preset_for_model(self.model, GPT_4O)
        return UpstreamProfile(
            image_rule=image_rule, image_limits=OPENAI_IMAGES, document_urls=False
        )

    def _long(self, request: ChatRequest) -> bool:
        """Whether the cache writes this call reports are all 12-hour ones."""
        return bool(self.options.prompt_cache) and only_long_writes(request)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        payload = encode_request(request, self.model, self.options, stream=False)
        data = await self.upstream.post_json("/chat/completions", payload)
        response = decode_response(data, self.worker)
        if request.cache_explicit and self._long(request):
            as_long(response.usage)
        return response

    async def stream(self, request: ChatRequest) -> EventStream:
        payload = encode_request(request, self.model, self.options, stream=True)
        long = request.cache_explicit and self._long(request)
        async with self.upstream.open_stream("/chat/completions", payload) as lines:
            async for chunk in sse_json(lines, self.worker):
                if isinstance(chunk, dict) and "error" in chunk:
                    raise ProviderError(
                        "upstream",
                        f"worker {self.worker!r} failed mid-stream",
                        worker=self.worker,
                    )
                for event in decode_chunk(chunk):
                    if type(event) is UsageReport and long:
                        as_long(event.usage)
                    yield event

    def relay(self, request: ChatRequest, meter: RelayMeter | None = None) -> WireStream:
        payload = encode_request(request, self.model, self.options, stream=True)
        opening = self.upstream.open_stream("/chat/completions", payload)
        long = request.cache_explicit and self._long(request)
        decode = decode_long_usage if long else decode_usage
        return relay_chunks(opening, self.worker, decode, meter)

    async def embed(self, request: EmbedRequest) -> Embeddings:
        payload: dict[str, Any] = {
            "model": self.model,
            "input": request.inputs,
            "encoding_format": "float",
        }
        if request.dimensions is not None:
            payload["dimensions"] = request.dimensions
        if request.user is not None:
            payload["user"] = request.user
        data = await self.upstream.post_json("/embeddings", payload)
        return decode_embeddings(data, self.worker, len(request.inputs))

    async def aclose(self) -> None:
        return None


def decode_embeddings(data: Any, worker: str, count: int) -> Embeddings:
    """The vectors of an embeddings answer, put back in the inputs' order by ``index``."""
    try:
        rows = sorted(data["data"], key=lambda row: int(row["index"]))
        vectors = [[float(value) for value in row["embedding"]] for row in rows]
        usage = data.get("usage") or {}
        tokens = int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0)
    except (KeyError, TypeError, ValueError, AttributeError):
        vectors, tokens = [], 0
    if len(vectors) != count:
        raise ProviderError(
            "upstream",
            f"worker {worker!r} answered in an unexpected shape ({len(vectors)} vectors for "
            f"{count} inputs)",
            retryable=True,
            worker=worker,
        )
    return Embeddings(vectors, Usage(tokens, 0))


def register_providers(providers: ProviderRegistry) -> None:
    providers.register("openai", OpenAIProvider)
    # The same protocol by another name, so a config reads as what it points at.
    providers.register("openai-compatible", OpenAIProvider)
    providers.register("vllm", OpenAIProvider)
    providers.register("ollama", OpenAIProvider)
