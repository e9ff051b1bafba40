"""The Anthropic Messages API's request, read into the canonical :class:`ChatRequest`.

Blocks become canonical parts (documents as text, tool results as tool messages, thinking
blocks dropped), ``cache_control`` breakpoints stay on what they marked, and every refusal is
worded as Anthropic words it (``messages.0.content.0.text: Field required``).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from podium.api.tool_choice import check_tool_choice
from podium.documents import PDF, TEXT
from podium.errors import PodiumError
from podium.types import (
    CacheTTL,
    ChatRequest,
    ContentPart,
    DocumentPart,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    any_attachments,
)

DEFAULT_VERSION = "2023-06-01"
# A missing header means DEFAULT_VERSION. Any real date is accepted (SDKs send newer dates as
# Anthropic adds versions; Podium answers every one in the same, documented shape); anything
# else is refused so a broken client learns it at once.
_VERSION_SHAPE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


W = TypeVar("W", bound=BaseModel)


class CacheControl(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


# Anthropic's limit on cache breakpoints in one request.
MAX_CACHE_BREAKPOINTS = 4


def _ttl(control: CacheControl | None) -> CacheTTL | None:
    """A block's cache breakpoint as the canonical TTL (Anthropic's default is 5 minutes)."""
    if control is None:
        return None
    return control.ttl or "5m"


class TextBlock(Wire):
    type: Literal["text"]
    text: str
    cache_control: CacheControl | None = None
    citations: list[dict[str, Any]] | None = None


class Base64Source(Wire):
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str


class URLSource(Wire):
    type: Literal["url"]
    url: str


class FileSource(Wire):
    """A file uploaded through the Files API, by its id (read by podium/documents.py)."""

    type: Literal["file"]
    file_id: str = Field(min_length=1)


class ImageBlock(Wire):
    type: Literal["image"]
    source: Annotated[Base64Source | URLSource | FileSource, Field(discriminator="type")]
    cache_control: CacheControl | None = None


class DocumentBlock(Wire):
    """A document. Plain-text and content sources are read as text, after the title and
    context; a PDF (inline, by URL or by an uploaded file's id) is read by podium/documents.py."""

    type: Literal["document"]
    source: dict[str, Any]
    title: str | None = None
    context: str | None = None
    citations: dict[str, Any] | None = None
    cache_control: CacheControl | None = None


ResultPart = Annotated[TextBlock | ImageBlock, Field(discriminator="type")]
_RESULT_PARTS: TypeAdapter[list[TextBlock | ImageBlock]] = TypeAdapter(list[ResultPart])


class ToolUseBlock(Wire):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any]
    cache_control: CacheControl | None = None
    # Accepted and not acted on: what the SDK's own blocks carry when a client stores a reply
    # with ``model_dump()`` and sends it back (who called the tool; a tool search's toolset).
    caller: dict[str, Any] | None = None
    toolset_name: str | None = None


class ToolResultBlock(Wire):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: str | list[ResultPart] | None = None
    is_error: bool | None = None
    cache_control: CacheControl | None = None
    toolset_name: str | None = None


class ThinkingBlock(Wire):
    """Earlier turns' reasoning, sent back by clients that keep it; Podium drops it."""

    type: Literal["thinking", "redacted_thinking"]
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None


Block = Annotated[
    TextBlock | ImageBlock | DocumentBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock,
    Field(discriminator="type"),
]


class MessageIn(Wire):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class ToolDef(Wire):
    type: Literal["custom"] | None = None
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,128}$")
    description: str | None = None
    input_schema: dict[str, Any]
    cache_control: CacheControl | None = None
    strict: bool | None = None  # arguments always match input_schema (OpenAI's strict too)
    # Accepted and not acted on: they tune Anthropic's own tool machinery.
    input_examples: list[dict[str, Any]] | None = None
    eager_input_streaming: bool | None = None
    defer_loading: bool | None = None
    allowed_callers: list[str] | None = None


class ChoiceAuto(Wire):
    type: Literal["auto"]
    disable_parallel_tool_use: bool | None = None


class ChoiceAny(Wire):
    type: Literal["any"]
    disable_parallel_tool_use: bool | None = None


class ChoiceTool(Wire):
    type: Literal["tool"]
    name: str
    disable_parallel_tool_use: bool | None = None


class ChoiceNone(Wire):
    type: Literal["none"]


ToolChoiceIn = Annotated[
    ChoiceAuto | ChoiceAny | ChoiceTool | ChoiceNone, Field(discriminator="type")
]


class MetadataIn(Wire):
    user_id: str | None = Field(None, max_length=256)


class JSONFormat(Wire):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(Wire):
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: JSONFormat | None = None


class ThinkingIn(BaseModel):
    """Thinking settings: they set the reasoning effort of workers that take one (see
    :func:`reasoning_effort`); the answer carries no thinking blocks."""

    model_config = ConfigDict(extra="allow")
    type: Literal["enabled", "disabled", "adaptive", "between_tools"]
    budget_tokens: int | None = None


# Anthropic's effort levels as the effort every OpenAI reasoning model takes.
EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


def reasoning_effort(wire: MessagesIn) -> str | None:
    """The reasoning effort an Anthropic request asks for, for workers that take one:
    ``output_config.effort`` when given, else read from ``thinking`` (disabled: low; a
    budget under 4k tokens: low, under 16k: medium, more: high)."""
    effort = wire.output_config.effort if wire.output_config else None
    if effort is not None:
        return EFFORTS[effort]
    thinking = wire.thinking
    if thinking is None:
        return None
    if thinking.type == "disabled":
        return "low"
    budget = thinking.budget_tokens
    if thinking.type != "enabled" or budget is None:
        return None
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


class MessagesIn(Wire):
    model: str = Field(min_length=1, max_length=256)
    messages: list[MessageIn] = Field(min_length=1)
    # Anthropic allows 0 (warm the prompt cache, generate nothing); not passed on (docs).
    max_tokens: int = Field(ge=1)
    system: str | list[TextBlock] | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)  # accepted; the canonical request has no top_k
    metadata: MetadataIn | None = None
    stream: bool | None = Field(False, strict=True)
    tools: list[ToolDef] | None = None
    tool_choice: ToolChoiceIn | None = None
    output_config: OutputConfig | None = None
    thinking: ThinkingIn | None = None
    # Caches the prompt up to its last cacheable block (passed on to Anthropic workers).
    cache_control: CacheControl | None = None
    # Accepted and not acted on: they steer Anthropic's own infrastructure.
    service_tier: Literal["auto", "standard_only"] | None = None
    inference_geo: str | None = None
    speed: Literal["standard", "fast"] | None = None
    diagnostics: dict[str, Any] | None = None
    user_profile_id: str | None = None
    workspace_id: str | None = None


class CountTokensIn(Wire):
    model: str = Field(min_length=1, max_length=256)
    messages: list[MessageIn] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[ToolDef] | None = None
    tool_choice: ToolChoiceIn | None = None
    # What a create call takes and the count does not change: clients count with the same
    # arguments they will send, so these are read as create reads them and not counted.
    output_config: OutputConfig | None = None
    thinking: ThinkingIn | None = None
    cache_control: CacheControl | None = None
    speed: Literal["standard", "fast"] | None = None
    user_profile_id: str | None = None
    workspace_id: str | None = None


# pydantic's names for union branches, which are not fields a caller wrote
_BRANCHES = frozenset(
    {
        "str",
        "list[...]",
        "text",
        "image",
        "tool_use",
        "tool_result",
        "thinking",
        "redacted_thinking",
        "base64",
        "url",
        "auto",
        "any",
        "tool",
        "none",
    }
)


def _path(location: tuple[int | str, ...]) -> str:
    # The last element is always a real field (a branch name never ends a location), which
    # matters where a field shares a branch's name (a text block's ``text``).
    *head, last = [str(part) for part in location] or [""]
    parts = [part for part in head if part not in _BRANCHES and "[" not in part]
    scalar = last in ("str", "int", "float", "bool", "") or "[" in last
    return ".".join(parts if scalar else [*parts, last])


def validation_error(error: ValidationError) -> PodiumError:
    """Anthropic's own wording: ``<path>: <reason>``."""
    # Of a union's failed branches, the deepest failure names what the caller got wrong.
    first = max(error.errors(), key=lambda item: len(item["loc"]))
    path = _path(tuple(first["loc"]))
    kind = first["type"]
    if kind == "missing":
        reason = "Field required"
    elif kind == "extra_forbidden":
        reason = "Extra inputs are not permitted"
    elif kind == "union_tag_invalid":
        ctx = first.get("ctx") or {}
        reason = (
            f"Input tag {ctx.get('tag')!r} found using 'type' is not supported "
            f"(expected one of {ctx.get('expected_tags')})"
        )
    else:
        reason = first["msg"]
    return PodiumError("invalid_request", f"{path}: {reason}" if path else reason, param=path)


def _result_parts(content: str | list[TextBlock | ImageBlock] | None) -> list[ContentPart]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)]
    return [_part(block) for block in content]


def _part(block: TextBlock | ImageBlock) -> ContentPart:
    cache = _ttl(block.cache_control)
    if isinstance(block, TextBlock):
        return TextPart(block.text, cache)
    if isinstance(block.source, Base64Source):
        return ImagePart(data=block.source.data, media_type=block.source.media_type, cache=cache)
    if isinstance(block.source, FileSource):
        return ImagePart(file_id=block.source.file_id, cache=cache)
    return ImagePart(url=block.source.url, cache=cache)


def _document(block: DocumentBlock, where: str, number: int) -> list[ContentPart]:
    """The document as text parts: a heading of its title and context, then its text, kept
    apart from the blocks around it (text parts are joined as they are). A plain-text one to
    be cited stays a document, for a worker that cites; ``number``: its place among the
    request's documents, as citations count."""
    source = block.source
    kind = source.get("type")
    content = source.get("content")
    cited = bool((block.citations or {}).get("enabled"))
    if kind == "text" and isinstance(source.get("data"), str) and cited:
        text = DocumentPart(
            text=source["data"],
            media_type=TEXT,
            title=block.title,
            context=block.context,
            cache=_ttl(block.cache_control),
            citations=True,
            index=number,
        )
        return [text]
    if kind == "text" and isinstance(source.get("data"), str):
        body: list[ContentPart] = [TextPart(source["data"])]
    elif kind == "content" and isinstance(content, str):
        body = [TextPart(content)]
    elif kind == "content" and isinstance(content, list):
        try:
            blocks = _RESULT_PARTS.validate_python(content)
        except ValidationError as error:
            first = error.errors()[0]
            path = ".".join(str(p) for p in first["loc"])
            raise PodiumError(
                "invalid_request",
                f"{where}.source.content.{path}: {first['msg']}",
                param=f"{where}.source.content",
            ) from None
        body = [_part(item) for item in blocks]
    elif kind in ("text", "content"):
        raise PodiumError(
            "invalid_request",
            f"{where}.source: a {kind} source needs its {'data' if kind == 'text' else kind}",
            param=f"{where}.source",
        )
    else:
        pdf = _pdf(block, where)
        pdf.citations, pdf.index = cited, number
        return [pdf]
    title = f"Document: {block.title}" if block.title else None
    heading = "\n".join(line for line in (title, block.context) if line)
    before = [TextPart(f"{heading}\n\n")] if heading else []
    return [*before, *body, TextPart("\n\n", _ttl(block.cache_control))]


def _pdf(block: DocumentBlock, where: str) -> DocumentPart:
    """A PDF by its bytes, its URL, or (the Files API) its file id."""
    source = block.source
    kind = source.get("type")
    part = DocumentPart(title=block.title, context=block.context, cache=_ttl(block.cache_control))
    if kind == "base64" and isinstance(source.get("data"), str):
        if source.get("media_type") != PDF:
            raise PodiumError(
                "invalid_request",
                f"{where}.source.media_type: Input should be 'application/pdf'",
                param=f"{where}.source.media_type",
            )
        part.data = source["data"]
        return part
    if kind == "url" and isinstance(source.get("url"), str):
        part.url = source["url"]
        return part
    if kind == "file" and isinstance(source.get("file_id"), str):
        part.file_id = source["file_id"]
        return part
    if kind in ("base64", "url", "file"):
        needed = {"base64": "data", "url": "url", "file": "file_id"}[kind]
        raise PodiumError(
            "invalid_request",
            f"{where}.source.{needed}: Field required",
            param=f"{where}.source.{needed}",
        )
    raise PodiumError(
        "invalid_request",
        f"{where}.source: Input tag {str(kind)[:64]!r} found using 'type' is not supported "
        "(expected one of 'base64', 'url', 'file', 'text', 'content')",
        param=f"{where}.source",
    )


def _system(system: str | list[TextBlock] | None) -> list[Message]:
    if system is None:
        return []
    if isinstance(system, list) and any(block.cache_control for block in system):
        # Kept as parts, so a breakpoint stays where the caller put it; the separators are
        # parts of their own (a marked block's text is cached exactly as it was sent).
        parts: list[ContentPart] = []
        for block in system:
            if parts:
                parts.append(TextPart("\n\n"))
            parts.append(TextPart(block.text, _ttl(block.cache_control)))
        return [Message("system", parts)]
    text = system if isinstance(system, str) else "\n\n".join(block.text for block in system)
    return [Message("system", [TextPart(text)])] if text else []


def _messages(wire: list[MessageIn]) -> list[Message]:
    messages: list[Message] = []
    documents = 0  # so far: citations number them
    for index, message in enumerate(wire):
        blocks: list[Any] = (
            [TextBlock(type="text", text=message.content)]
            if isinstance(message.content, str)
            else list(message.content)
        )
        if message.role == "assistant":
            parts: list[ContentPart] = []
            calls: list[ToolCall] = []
            cache: CacheTTL | None = None
            for block in blocks:
                if isinstance(block, TextBlock):
                    parts.append(_part(block))
                elif isinstance(block, ToolUseBlock):
                    calls.append(ToolCall(block.id, block.name, orjson.dumps(block.input).decode()))
                    # A call has no part of its own: its breakpoint ends the message.
                    cache = _ttl(block.cache_control) or cache
                elif isinstance(block, ThinkingBlock):
                    continue
                else:
                    raise PodiumError(
                        "invalid_request",
                        f"messages.{index}.content: assistant messages may hold only text and "
                        f"tool_use blocks, not {block.type}",
                        param=f"messages.{index}.content",
                    )
            messages.append(Message("assistant", parts, tool_calls=calls, cache=cache))
            continue
        parts = []
        for block in blocks:
            if isinstance(block, ToolResultBlock):
                # A tool result is its own canonical message; results precede the user's text
                # in Anthropic's format, so the order is kept.
                messages.append(
                    Message(
                        "tool",
                        _result_parts(block.content),
                        tool_call_id=block.tool_use_id,
                        is_error=bool(block.is_error),
                        cache=_ttl(block.cache_control),
                    )
                )
            elif isinstance(block, TextBlock | ImageBlock):
                parts.append(_part(block))
            elif isinstance(block, DocumentBlock):
                parts += _document(block, f"messages.{index}.content", documents)
                documents += 1
            elif isinstance(block, ToolUseBlock):
                raise PodiumError(
                    "invalid_request",
                    f"messages.{index}.content: tool_use blocks belong in assistant messages",
                    param=f"messages.{index}.content",
                )
        if parts:
            messages.append(Message("user", parts))
    return messages


def _tool_choice(choice: Any) -> tuple[ToolChoice | None, bool | None]:
    if choice is None:
        return None, None
    parallel = None
    disabled = getattr(choice, "disable_parallel_tool_use", None)
    if disabled is not None:
        parallel = not disabled
    if isinstance(choice, ChoiceAny):
        return ToolChoice("required"), parallel
    if isinstance(choice, ChoiceTool):
        return ToolChoice("tool", choice.name), parallel
    if isinstance(choice, ChoiceNone):
        return ToolChoice("none"), parallel
    return ToolChoice("auto"), parallel


def check_version(headers: dict[str, str]) -> str:
    version = headers.get("anthropic-version")
    if version is None:
        return DEFAULT_VERSION
    version = version.strip()
    try:
        valid = bool(_VERSION_SHAPE.match(version)) and date.fromisoformat(version) is not None
    except ValueError:
        valid = False
    if not valid:
        raise PodiumError(
            "invalid_request",
            f"anthropic-version: {version[:40]!r} is not a valid version "
            f"(expected a date such as {DEFAULT_VERSION!r})",
            param="anthropic-version",
        )
    return version


def _count_breakpoints(wire: MessagesIn) -> int:
    blocks: list[Any] = [*(wire.tools or [])]
    if isinstance(wire.system, list):
        blocks += wire.system
    for message in wire.messages:
        if isinstance(message.content, list):
            blocks += message.content
            for block in message.content:
                if isinstance(block, ToolResultBlock) and isinstance(block.content, list):
                    blocks += block.content
    return sum(1 for block in blocks if getattr(block, "cache_control", None) is not None)


def _tools(tools: list[ToolDef] | None) -> list[Tool]:
    return [
        Tool(t.name, t.description, t.input_schema, _ttl(t.cache_control), t.strict)
        for t in tools or []
    ]


def to_canonical(wire: MessagesIn) -> ChatRequest:
    breakpoints = _count_breakpoints(wire)
    if breakpoints > MAX_CACHE_BREAKPOINTS:
        raise PodiumError(
            "invalid_request",
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {breakpoints}.",
        )
    choice, parallel = _tool_choice(wire.tool_choice)
    output = wire.output_config.format if wire.output_config else None
    messages = _system(wire.system) + _messages(wire.messages)
    tools = _tools(wire.tools)
    check_tool_choice(choice, tools)
    return ChatRequest(
        response_format=ResponseFormat("json_schema", output.schema_, "output")
        if output is not None
        else None,
        model=wire.model,
        messages=messages,
        tools=tools,
        tool_choice=choice,
        temperature=wire.temperature,
        top_p=wire.top_p,
        max_tokens=wire.max_tokens,
        stop=list(wire.stop_sequences or []),
        user=wire.metadata.user_id if wire.metadata else None,
        stream=bool(wire.stream),
        include_usage=True,
        parallel_tool_calls=parallel,
        reasoning_effort=reasoning_effort(wire),
        cache=_ttl(wire.cache_control),
        attachments=any_attachments(messages),
    )


def _read(model: type[W], body: Any, headers: dict[str, str]) -> W:
    """The body as ``model``, after its ``anthropic-version``; refusals in Anthropic's words."""
    check_version(headers)
    try:
        return model.model_validate(body)
    except ValidationError as error:
        raise validation_error(error) from None


def parse_count_tokens(body: Any, headers: dict[str, str]) -> ChatRequest:
    """``POST /v1/messages/count_tokens``'s body as the request it counts (its documents not
    yet read: :func:`podium.workers.estimate_input_tokens` counts them once they are)."""
    wire = _read(CountTokensIn, body, headers)
    messages = _system(wire.system) + _messages(wire.messages)
    return ChatRequest(
        model=wire.model,
        messages=messages,
        tools=_tools(wire.tools),
        attachments=any_attachments(messages),
    )


def parse_messages(body: Any, headers: dict[str, str]) -> ChatRequest:
    """``POST /v1/messages``'s body (and its ``anthropic-version``) as the canonical request."""
    return to_canonical(_read(MessagesIn, body, headers))
