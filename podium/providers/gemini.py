"""Google Gemini egress over REST: ``models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse``.

Gemini function calls carry no ids (newer models sometimes do); Podium gives each call a stable
id derived from the response, the call's position, name and arguments, and maps a tool result
back to its function by looking the id up in the conversation's earlier tool calls.

A request that marks a prompt-cache breakpoint may be sent beside an explicit context cache (a
``cachedContents`` resource holding its prefix): podium/providers/gemini_cache.py.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from podium.errors import ProviderError, provider_error_from_status
from podium.image_tokens import GEMINI
from podium.providers.base import ProviderContext, ProviderRegistry
from podium.providers.gemini_cache import (
    CachePlan,
    ContextCaches,
    Mark,
    Resource,
    default_minimum,
    plan_prefix,
    vanished,
    with_resource,
)
from podium.providers.gemini_signatures import (
    SKIP_VALIDATOR,
    ThoughtSignatures,
    needs_signatures,
)
from podium.providers.http import StreamBody, Upstream, sse_json
from podium.types import (
    CacheTTL,
    ChatRequest,
    ChatResponse,
    Embeddings,
    EmbedRequest,
    EventStream,
    Finish,
    FinishReason,
    Message,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageReport,
)
from podium.upstream_profile import GEMINI_IMAGES, UpstreamProfile

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"

FINISH_REASONS: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "LANGUAGE": "content_filter",
}

STATUS_OF_CODE: dict[str, int] = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}

# The subset of JSON Schema (an OpenAPI 3 schema object) Gemini accepts in ``parameters`` and
# ``responseSchema``; anything else (additionalProperties, $schema, ...) is refused upstream.
SCHEMA_KEYS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "maxItems",
        "minItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
        "items",
        "minimum",
        "maximum",
    }
)


class GeminiOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    safety_settings: list[dict[str, str]] = []  # passed through as ``safetySettings``
    thinking_budget: int | None = Field(None, ge=-1)
    # The model takes a thinking level (Gemini 3 and later): a request's reasoning effort is
    # passed on as ``thinkingConfig.thinkingLevel``. A fixed ``thinking_budget`` wins.
    reasoning: bool = False
    extra_headers: dict[str, str] = {}
    # Gemini's explicit context caching for requests that mark a prompt-cache breakpoint: a
    # ``cachedContents`` resource holds the prefix. "auto" creates one the second time a prefix
    # comes within its lifetime (a prefix seen once never pays storage), true at the first,
    # false never (Gemini's implicit cache still works).
    explicit_cache: bool | Literal["auto"] = "auto"
    # The smallest prefix worth a resource, in tokens (estimated: 4 characters a token); Gemini
    # refuses smaller. Unset: 4,096 for a Pro model, else 1,024 (Flash).
    explicit_cache_min_tokens: int | None = Field(None, ge=1)
    # The most resources the worker keeps track of; past it the least recently used is dropped
    # (it lives on at Gemini until it expires, already paid for).
    explicit_cache_max: int = Field(256, ge=1)


# OpenAI's reasoning efforts (and Anthropic's, which the Anthropic ingress passes on as they
# are) as Gemini's thinking levels.
THINKING_LEVELS = {
    "none": "MINIMAL",
    "minimal": "MINIMAL",
    "low": "LOW",
    "medium": "MEDIUM",
    "high": "HIGH",
    "xhigh": "XHIGH",
    "max": "XHIGH",
}


def gemini_schema(schema: Any) -> Any:
    """``schema`` cut down to what Gemini accepts: unknown keys dropped, ``type: [T, "null"]``
    turned into ``type: T, nullable: true``."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in SCHEMA_KEYS:
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: gemini_schema(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = gemini_schema(value)
        elif key == "anyOf" and isinstance(value, list):
            out[key] = [gemini_schema(sub) for sub in value]
        elif key == "type" and isinstance(value, list):
            kinds = [kind for kind in value if kind != "null"]
            out["type"] = kinds[0] if kinds else "string"
            if "null" in value:
                out["nullable"] = True
        else:
            out[key] = value
    return out


def call_id(seed: str, index: int, name: str, arguments: str) -> str:
    """A stable id for a call Gemini sent without one."""
    digest = hashlib.sha256(f"{seed}\x00{index}\x00{name}\x00{arguments}".encode()).hexdigest()
    return f"call_{digest[:24]}"


def _parts(
    message: Message, cuts: list[tuple[int, CacheTTL]] | None = None
) -> list[dict[str, Any]]:
    """The message's content as Gemini parts; ``cuts`` collects each breakpoint as the number of
    parts before it."""
    parts: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            if part.text:
                parts.append({"text": part.text})
        elif part.data is not None:
            parts.append(
                {"inlineData": {"mimeType": part.media_type or "image/png", "data": part.data}}
            )
        elif part.url is not None:
            parts.append(
                {"fileData": {"mimeType": part.media_type or "image/*", "fileUri": part.url}}
            )
        if cuts is not None and part.cache is not None:
            cuts.append((len(parts), part.cache))
    return parts


def _arguments(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text) if text.strip() else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def encode_contents(
    messages: list[Message],
    marks: list[Mark] | None = None,
    signatures: ThoughtSignatures | None = None,
    *,
    sentinel: bool = False,
) -> tuple[str, list[dict[str, Any]]]:
    """The system instruction and the ``contents`` turns; consecutive turns of one role merge
    (Gemini wants every function response of a turn in one content). ``marks``, when given,
    collects where each prompt-cache breakpoint falls in ``contents`` (one on a system message
    falls before them all: the system instruction is always part of a cached prefix). A call
    the model made goes back with its thought signature from ``signatures``; ``sentinel``: a
    turn whose first call has none gets Google's stand-in (gemini_signatures.py)."""
    system: list[str] = []
    names: dict[str, str] = {}
    contents: list[dict[str, Any]] = []
    for message in messages:
        cuts: list[tuple[int, CacheTTL]] | None = None
        if marks is not None and message.has_breakpoint():
            cuts = []
        if message.role == "system":
            if message.text():
                system.append(message.text())
            if cuts is not None and marks is not None:
                marks.extend((0, 0, ttl) for ttl in _lifetimes(message))
            continue
        if message.role == "tool":
            name = names.get(message.tool_call_id or "") or message.name or "tool"
            key = "error" if message.is_error else "output"
            role, parts = (
                "user",
                [{"functionResponse": {"name": name, "response": {key: message.text()}}}],
            )
            if cuts is not None:
                cuts.extend((1, ttl) for ttl in _lifetimes(message))
        elif message.role == "assistant":
            role, parts = "model", _parts(message, cuts)
            for index, call in enumerate(message.tool_calls):
                names[call.id] = call.name
                part: dict[str, Any] = {
                    "functionCall": {"name": call.name, "args": _arguments(call.arguments)}
                }
                signature = signatures.get(call.id) if signatures is not None else None
                if signature is None and sentinel and index == 0:
                    signature = SKIP_VALIDATOR
                if signature is not None:
                    part["thoughtSignature"] = signature
                parts.append(part)
        else:
            role, parts = "user", _parts(message, cuts)
        if cuts is not None and message.cache is not None and message.role != "tool":
            cuts.append((len(parts), message.cache))
        if not parts:
            if cuts and marks is not None and contents:
                end = (len(contents) - 1, len(contents[-1]["parts"]))
                marks.extend((*end, ttl) for _, ttl in cuts)
            continue
        offset = 0
        if contents and contents[-1]["role"] == role:
            offset = len(contents[-1]["parts"])
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
        if cuts and marks is not None:
            marks.extend((len(contents) - 1, offset + count, ttl) for count, ttl in cuts)
    return "\n\n".join(system), contents


def _lifetimes(message: Message) -> list[CacheTTL]:
    """The lifetimes of every breakpoint on a message and its parts."""
    ttls = [part.cache for part in message.content if part.cache is not None]
    return [*ttls, message.cache] if message.cache is not None else ttls


def encode_request(
    request: ChatRequest,
    options: GeminiOptions,
    *,
    max_output_tokens: int | None,
    marks: list[Mark] | None = None,
    signatures: ThoughtSignatures | None = None,
    sentinel: bool = False,
) -> dict[str, Any]:
    """The ``generateContent`` body. ``marks``, when given, collects the breakpoints' places in
    ``contents`` (a tool's falls before them all: tools are always part of a cached prefix);
    ``signatures`` and ``sentinel``: see :func:`encode_contents`."""
    system, contents = encode_contents(request.messages, marks, signatures, sentinel=sentinel)
    if marks is not None:
        marks.extend((0, 0, tool.cache) for tool in request.tools if tool.cache is not None)
    payload: dict[str, Any] = {"contents": contents}
    if system:
        payload["systemInstruction"] = {"parts": [{"text": system}]}
    if request.tools:
        payload["tools"] = [
            {
                "functionDeclarations": [
                    {
                        "name": tool.name,
                        **({"description": tool.description} if tool.description else {}),
                        "parameters": gemini_schema(tool.parameters),
                    }
                    for tool in request.tools
                ]
            }
        ]
    if request.tool_choice is not None and (request.tools or request.tool_choice.mode == "none"):
        mode = request.tool_choice.mode
        config: dict[str, Any] = {
            "mode": {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}[mode]
        }
        if mode == "tool" and request.tool_choice.name:
            config["allowedFunctionNames"] = [request.tool_choice.name]
        payload["toolConfig"] = {"functionCallingConfig": config}
    generation: dict[str, Any] = {}
    if request.temperature is not None:
        generation["temperature"] = request.temperature
    if request.top_p is not None:
        generation["topP"] = request.top_p
    limit = request.max_tokens or max_output_tokens
    if limit is not None:
        generation["maxOutputTokens"] = limit
    if request.stop:
        generation["stopSequences"] = request.stop[:5]  # Gemini's limit
    if request.seed is not None:
        generation["seed"] = request.seed
    fmt = request.response_format
    if fmt is not None and fmt.type != "text":
        generation["responseMimeType"] = "application/json"
        if fmt.type == "json_schema" and fmt.schema:
            generation["responseSchema"] = gemini_schema(fmt.schema)
    if options.thinking_budget is not None:
        generation["thinkingConfig"] = {"thinkingBudget": options.thinking_budget}
    elif options.reasoning and request.reasoning_effort is not None:
        effort = request.reasoning_effort
        level = THINKING_LEVELS.get(effort.lower(), effort.upper())  # others: Gemini judges
        generation["thinkingConfig"] = {"thinkingLevel": level}
    if generation:
        payload["generationConfig"] = generation
    if options.safety_settings:
        payload["safetySettings"] = options.safety_settings
    return payload


def decode_usage(data: Any) -> Usage:
    if not isinstance(data, dict):
        return Usage()
    return Usage(
        input_tokens=int(data.get("promptTokenCount") or 0),
        # Thinking tokens are billed as output.
        output_tokens=int(data.get("candidatesTokenCount") or 0)
        + int(data.get("thoughtsTokenCount") or 0),
        cached_input_tokens=int(data.get("cachedContentTokenCount") or 0),
    )


def _candidate(data: dict[str, Any]) -> dict[str, Any]:
    candidates = data.get("candidates") or []
    first = candidates[0] if candidates else {}
    return first if isinstance(first, dict) else {}


def _reason(raw: str | None, has_calls: bool, blocked: bool) -> FinishReason:
    if blocked:
        return "content_filter"
    if has_calls and raw in (None, "STOP"):
        return "tool_calls"
    return FINISH_REASONS.get(raw or "STOP", "stop")


def _blocked(data: dict[str, Any]) -> bool:
    feedback = data.get("promptFeedback") or {}
    return bool(isinstance(feedback, dict) and feedback.get("blockReason"))


def decode_response(
    data: Any,
    worker: str,
    signatures: ThoughtSignatures | None = None,
    *,
    one_call: bool = False,
) -> ChatResponse:
    """``one_call``: the caller asked for no parallel calls, so the first is kept (Gemini has
    no such setting); as :class:`StreamDecoder` does."""
    try:
        candidate = _candidate(data)
        seed = str(data.get("responseId") or "")
        text: list[str] = []
        calls: list[ToolCall] = []
        for part in (candidate.get("content") or {}).get("parts") or []:
            if part.get("thought"):
                continue
            if "text" in part:
                text.append(part["text"])
            elif "functionCall" in part and not (one_call and calls):
                call = part["functionCall"]
                arguments = orjson.dumps(call.get("args") or {}).decode()
                ident = call.get("id") or call_id(seed, len(calls), call["name"], arguments)
                if signatures is not None and "thoughtSignature" in part:
                    signatures.keep(ident, part["thoughtSignature"])
                calls.append(ToolCall(ident, call["name"], arguments))
        return ChatResponse(
            id=seed or f"gemini-{uuid.uuid4().hex}",
            model=worker,
            text="".join(text),
            tool_calls=calls,
            finish_reason=_reason(candidate.get("finishReason"), bool(calls), _blocked(data)),
            usage=decode_usage(data.get("usageMetadata")),
        )
    except (KeyError, TypeError, AttributeError):
        raise ProviderError(
            "upstream",
            f"worker {worker!r} answered in an unexpected shape",
            retryable=True,
            worker=worker,
        ) from None


_DELAY = re.compile(r"^(\d+(?:\.\d+)?)s$")


def retry_delay(body: bytes) -> float | None:
    """The ``RetryInfo.retryDelay`` (``"30s"``) a Gemini error body carries, in seconds."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and "retryDelay" in detail:
            match = _DELAY.match(str(detail["retryDelay"]))
            if match:
                return float(match.group(1))
    return None


class StreamDecoder:
    """Gemini stream chunks are whole ``GenerateContentResponse`` objects: text parts are
    deltas, each function call arrives whole, usage is cumulative and the last one counts."""

    def __init__(
        self, worker: str, signatures: ThoughtSignatures | None = None, *, one_call: bool = False
    ) -> None:
        self.worker = worker
        self.signatures = signatures
        self.one_call = one_call  # the caller asked for no parallel calls: the first is kept
        self.usage: Usage | None = None
        self.calls = 0
        self.reason: str | None = None
        self.blocked = False
        self.seed = uuid.uuid4().hex

    def decode(self, chunk: dict[str, Any]) -> list[StreamEvent]:
        if "error" in chunk:
            error = chunk["error"] if isinstance(chunk["error"], dict) else {}
            status = STATUS_OF_CODE.get(str(error.get("status")), int(error.get("code") or 500))
            raise provider_error_from_status(
                status,
                f"worker {self.worker!r} failed mid-stream: {error.get('message') or 'no message'}",
                worker=self.worker,
            )
        if chunk.get("responseId"):
            self.seed = str(chunk["responseId"])
        if chunk.get("usageMetadata"):
            self.usage = decode_usage(chunk["usageMetadata"])
        self.blocked = self.blocked or _blocked(chunk)
        candidate = _candidate(chunk)
        events: list[StreamEvent] = []
        for part in (candidate.get("content") or {}).get("parts") or []:
            if part.get("thought"):
                continue
            if part.get("text"):
                events.append(TextDelta(part["text"]))
            elif "functionCall" in part and not (self.one_call and self.calls):
                call = part["functionCall"]
                arguments = orjson.dumps(call.get("args") or {}).decode()
                name = str(call.get("name") or "")
                ident = call.get("id") or call_id(self.seed, self.calls, name, arguments)
                if self.signatures is not None and "thoughtSignature" in part:
                    self.signatures.keep(ident, part["thoughtSignature"])
                events.append(ToolCallDelta(self.calls, id=ident, name=name, arguments=arguments))
                self.calls += 1
        if candidate.get("finishReason"):
            self.reason = candidate["finishReason"]
        return events

    def finish(self) -> list[StreamEvent]:
        events: list[StreamEvent] = [Finish(_reason(self.reason, self.calls > 0, self.blocked))]
        if self.usage is not None:
            events.append(UsageReport(self.usage))
        return events


@dataclass(slots=True)
class Prepared:
    """A request's ``generateContent`` body, and the context cache it is sent beside (if any)."""

    payload: dict[str, Any]
    plan: CachePlan | None = None
    resource: Resource | None = None

    def charged(self, usage: Usage) -> Usage:
        """``usage``, with the storage of the resource this answer used if no answer has been
        charged for it yet (the request that created it, unless that one failed)."""
        if self.resource is None:
            return usage
        hours = self.resource.bill()
        if not hours:
            return usage
        return replace(usage, cache_storage_token_hours=usage.cache_storage_token_hours + hours)


class GeminiProvider:
    def __init__(self, context: ProviderContext) -> None:
        worker = context.worker
        self.options = GeminiOptions.model_validate(worker.options)
        self.worker = worker.name
        self.model = worker.model.removeprefix("models/")
        self.max_output_tokens = worker.max_output_tokens
        self.signatures = ThoughtSignatures()  # of the calls this model made, by call id
        self.sentinel = needs_signatures(self.model)
        key = context.secrets.get(worker.api_key_env) if worker.api_key_env else None
        headers = dict(self.options.extra_headers)
        if key:
            headers["x-goog-api-key"] = key  # a header, never ?key=, so URLs never hold it
        self.upstream = Upstream(
            context.http,
            worker=worker.name,
            base_url=worker.base_url or DEFAULT_BASE_URL,
            headers=headers,
            timeouts=worker.timeouts,
            secrets=[key],
            retry_after_in_body=retry_delay,
        )
        self.caches: ContextCaches | None = None
        if self.options.explicit_cache is not False:
            minimum = self.options.explicit_cache_min_tokens or default_minimum(self.model)
            self.caches = ContextCaches(
                self.upstream,
                worker=worker.name,
                model=self.model,
                eager=self.options.explicit_cache is True,
                minimum_tokens=minimum,
                capacity=self.options.explicit_cache_max,
                notes=context.notes,
            )

    async def start(self) -> None:
        return None

    def upstream_profile(self) -> UpstreamProfile:
        return UpstreamProfile(image_rule=GEMINI, image_limits=GEMINI_IMAGES)

    def _payload(self, request: ChatRequest) -> dict[str, Any]:
        return encode_request(
            request,
            self.options,
            max_output_tokens=self.max_output_tokens,
            signatures=self.signatures,
            sentinel=self.sentinel,
        )

    async def _prepare(self, request: ChatRequest) -> Prepared:
        """The body to send: beside a context cache of the prefix when the request marks a
        breakpoint and one is (or is now) kept for it, else whole."""
        if self.caches is None:
            return Prepared(self._payload(request))
        marks: list[Mark] = []
        payload = encode_request(
            request,
            self.options,
            max_output_tokens=self.max_output_tokens,
            marks=marks,
            signatures=self.signatures,
            sentinel=self.sentinel,
        )
        if not marks and request.cache is None:
            return Prepared(payload)
        plan = plan_prefix(payload, marks, request.cache, self.model)
        if plan is None:
            return Prepared(payload)
        resource = await self.caches.lease(plan)
        if resource is None:
            return Prepared(payload)
        return Prepared(with_resource(payload, plan, resource.name), plan, resource)

    async def _again(self, prepared: Prepared, error: ProviderError) -> Prepared:
        """After Gemini refused the context cache a request named as unknown (it expired or
        was deleted), the body to send instead: beside a new one, else whole. Any other error
        is raised."""
        plan, resource = prepared.plan, prepared.resource
        if plan is None or resource is None or self.caches is None or not vanished(error):
            raise error
        self.caches.forget(plan.key, resource.name)
        fresh = await self.caches.lease(plan, again=True)
        if fresh is None:
            return Prepared(plan.payload)
        return Prepared(with_resource(plan.payload, plan, fresh.name), plan, fresh)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        path = f"/models/{self.model}:generateContent"
        prepared = await self._prepare(request)
        try:
            data = await self.upstream.post_json(path, prepared.payload)
        except ProviderError as error:
            prepared = await self._again(prepared, error)
            data = await self.upstream.post_json(path, prepared.payload)
        one_call = request.parallel_tool_calls is False
        response = decode_response(data, self.worker, self.signatures, one_call=one_call)
        response.usage = prepared.charged(response.usage)
        return response

    async def _open(
        self, stack: AsyncExitStack, request: ChatRequest
    ) -> tuple[Prepared, StreamBody]:
        path = f"/models/{self.model}:streamGenerateContent?alt=sse"
        prepared = await self._prepare(request)
        try:
            return prepared, await stack.enter_async_context(
                self.upstream.open_stream(path, prepared.payload)
            )
        except ProviderError as error:
            prepared = await self._again(prepared, error)
        return prepared, await stack.enter_async_context(
            self.upstream.open_stream(path, prepared.payload)
        )

    async def stream(self, request: ChatRequest) -> EventStream:
        one_call = request.parallel_tool_calls is False
        decoder = StreamDecoder(self.worker, self.signatures, one_call=one_call)
        async with AsyncExitStack() as stack:
            prepared, lines = await self._open(stack, request)
            async for chunk in sse_json(lines, self.worker):
                if isinstance(chunk, dict):
                    for event in decoder.decode(chunk):
                        yield event
        if decoder.reason is None and not decoder.blocked:
            raise ProviderError(
                "upstream",
                f"worker {self.worker!r} ended its stream early",
                retryable=True,
                worker=self.worker,
            )
        if decoder.usage is not None:
            decoder.usage = prepared.charged(decoder.usage)
        for event in decoder.finish():
            yield event

    async def embed(self, request: EmbedRequest) -> Embeddings:
        """``:batchEmbedContents``, one request per text. Gemini reports no token count for
        embeddings: the engine estimates it."""
        one: dict[str, Any] = {"model": f"models/{self.model}"}
        if request.dimensions is not None:
            one["outputDimensionality"] = request.dimensions
        payload = {
            "requests": [{**one, "content": {"parts": [{"text": text}]}} for text in request.inputs]
        }
        data = await self.upstream.post_json(f"/models/{self.model}:batchEmbedContents", payload)
        try:
            vectors = [[float(v) for v in row["values"]] for row in data["embeddings"]]
        except (KeyError, TypeError, ValueError):
            vectors = []
        if len(vectors) != len(request.inputs):
            raise ProviderError(
                "upstream",
                f"worker {self.worker!r} answered in an unexpected shape ({len(vectors)} "
                f"vectors for {len(request.inputs)} inputs)",
                retryable=True,
                worker=self.worker,
            )
        return Embeddings(vectors)

    async def aclose(self) -> None:
        if self.caches is not None:
            await self.caches.aclose()


def register_providers(providers: ProviderRegistry) -> None:
    providers.register("gemini", GeminiProvider)
