"""The OpenAI Responses API's request, read into the canonical :class:`ChatRequest`.

``instructions`` becomes a system message, ``developer`` messages system ones, and
``function_call`` / ``function_call_output`` items the assistant's tool calls and their
results, so any worker can answer, whatever wire format it speaks. ``previous_response_id`` is
read here and resolved by the ingress that keeps responses (podium/api/responses_stored.py).
What needs state Podium does not keep (a conversation object, a stored prompt) and tools OpenAI
runs on its own servers are refused by name, saying what to send instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError

from podium.api.openai import BreakpointIn, Wire, cache_fields
from podium.api.tool_choice import check_tool_choice
from podium.documents import attached
from podium.errors import PodiumError
from podium.responses.compaction import CompactionReader, Compactions
from podium.types import (
    CacheTTL,
    ChatRequest,
    ContentPart,
    ImagePart,
    JSONObject,
    Message,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    any_attachments,
)


class InputText(Wire):
    type: Literal["input_text"]
    text: str
    prompt_cache_breakpoint: BreakpointIn | None = None


class InputImage(Wire):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["auto", "low", "high"] | None = None
    prompt_cache_breakpoint: BreakpointIn | None = None


class InputFile(Wire):
    type: Literal["input_file"]
    file_data: str | None = None
    file_id: str | None = None
    file_url: str | None = None
    filename: str | None = None
    detail: Literal["auto", "low", "high"] | None = None  # how OpenAI renders pages: its own
    prompt_cache_breakpoint: BreakpointIn | None = None


class CacheOptionsIn(Wire):
    mode: Literal["implicit", "explicit"] | None = None
    ttl: Literal["30m", "12h"] | None = None
    comparison_response_id: str | None = None  # diagnostics of a stored response: none here
    prewarm: Literal[False] | None = None  # a call that answers nothing: not through Podium


class OutputText(Wire):
    type: Literal["output_text"]
    text: str
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class Refusal(Wire):
    type: Literal["refusal"]
    refusal: str


Part = Annotated[
    InputText | InputImage | InputFile | OutputText | Refusal, Field(discriminator="type")
]


class MessageItem(Wire):
    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[Part]
    id: str | None = None
    status: str | None = None
    phase: str | None = None


class FunctionCallItem(Wire):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(Wire):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[InputText]
    id: str | None = None
    status: str | None = None


class ReasoningItem(BaseModel):
    """A reasoning model's earlier reasoning, sent back by clients that keep no state. Only
    the model that wrote it can read it, so Podium drops it."""

    model_config = ConfigDict(extra="allow")
    type: Literal["reasoning"]


class CompactionItem(Wire):
    """A summary ``POST /v1/responses/compact`` wrote (podium/responses/compaction.py)."""

    type: Literal["compaction"]
    encrypted_content: str = Field(min_length=1, max_length=4_000_000)
    id: str | None = None
    created_by: str | None = None


class ItemReference(Wire):
    """An item of a stored response or conversation, named by its id: the ingress that keeps
    responses puts the item itself in its place (podium/api/responses_stored.py)."""

    type: Literal["item_reference"]
    id: str = Field(min_length=1, max_length=256)


def _item_type(value: Any) -> str:
    if isinstance(value, dict):
        kind = value.get("type", "message")  # an easy input message has no type
        return kind if isinstance(kind, str) else "message"
    return str(getattr(value, "type", "message"))


Item = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[ReasoningItem, Tag("reasoning")]
    | Annotated[CompactionItem, Tag("compaction")]
    | Annotated[ItemReference, Tag("item_reference")],
    Discriminator(_item_type),
]


class FunctionTool(Wire):
    type: Literal["function"]
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionChoice(Wire):
    type: Literal["function"]
    name: str


class TextFormat(Wire):
    type: Literal["text"]


class JSONObjectFormat(Wire):
    type: Literal["json_object"]


class JSONSchemaFormat(Wire):
    type: Literal["json_schema"]
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(Wire):
    format: (
        Annotated[TextFormat | JSONObjectFormat | JSONSchemaFormat, Field(discriminator="type")]
        | None
    ) = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(Wire):
    effort: str | None = Field(None, min_length=1, max_length=32)
    summary: str | None = None
    generate_summary: str | None = None


class StreamOptions(Wire):
    include_obfuscation: bool | None = None


class ConversationRef(Wire):
    id: str = Field(min_length=1, max_length=256)


class ResponsesIn(Wire):
    model: str = Field(min_length=1, max_length=256)
    input: str | list[Item]
    instructions: str | None = None  # not carried over to a response that continues this one
    previous_response_id: str | None = Field(None, min_length=1, max_length=256)
    conversation: Annotated[str, Field(min_length=1, max_length=256)] | ConversationRef | None = (
        None
    )
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["auto", "none", "required"] | FunctionChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    metadata: dict[str, str] | None = None
    user: str | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    # Prompt caching: passed on to workers that take them (docs/wire-formats.md).
    prompt_cache_key: str | None = Field(None, max_length=1024)
    prompt_cache_options: CacheOptionsIn | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    store: bool | None = None  # keep the response (unless podium.yaml says responses.store: false)
    # "auto": the oldest items go when the conversation outgrows the worker's context window.
    truncation: Literal["auto", "disabled"] | None = None
    # Accepted for compatibility; they do not change how Podium routes or answers, but for
    # ``service_tier: "flex"``: background priority (podium/capacity.py), said in the answer.
    safety_identifier: str | None = None
    service_tier: str | None = None
    include: list[str] | None = None
    max_tool_calls: int | None = Field(None, ge=1)
    background: bool | None = None  # answered off the request: podium/responses/background.py
    top_logprobs: Literal[0] | None = None


# Fields that need what Podium does not keep: a stored prompt.
STATEFUL_FIELDS = {
    "prompt": (
        "Podium keeps no stored prompts; send the prompt's text in 'instructions' and 'input'"
    ),
}
NO_STORE = (
    "this gateway keeps no responses or conversations (responses.store is off in its configuration)"
)

# Tool types OpenAI runs on its own servers: no worker here can run them.
HOSTED_TOOLS = frozenset(
    {"web_search", "web_search_preview", "file_search", "code_interpreter", "computer_use",
     "computer_use_preview", "image_generation", "mcp", "local_shell", "shell", "apply_patch",
     "custom"}
)  # fmt: skip

# Pydantic names a union's branch in an error's location, after the field or list index that
# holds the union: the tag of a discriminated union, or a type for the others.
_TAGS = frozenset(
    {"message", "function_call", "function_call_output", "reasoning", "compaction",
     "item_reference", "input_text",
     "input_image", "output_text", "refusal", "text", "json_object", "json_schema", "function",
     "FunctionChoice"}
)  # fmt: skip
_UNION_FIELDS = frozenset({"input", "content", "output", "format", "tool_choice"})


def _path(location: tuple[int | str, ...]) -> str:
    path = ""
    previous: int | str = ""
    for index, part in enumerate(location):
        if isinstance(part, int):
            path += f"[{part}]"
        elif "[" in part or part in ("str", "int", "float", "bool"):
            pass  # a type's name: ``str``, ``list[...]``, ``literal[...]``
        elif (
            part in _TAGS
            and index < len(location) - 1
            and (isinstance(previous, int) or previous in _UNION_FIELDS)
        ):
            pass  # a branch of the union the previous part holds
        else:
            path += f".{part}" if path else part
        previous = part
    return path


def validation_error(error: ValidationError) -> PodiumError:
    errors = error.errors()
    # An item or part of an unknown type fails every branch; its own error ("Input tag
    # 'input_file' ... expected tags: ...") says why, the string branch's does not.
    # Otherwise the deepest failure is the one about what the caller meant.
    deepest = max(errors, key=lambda item: len(item["loc"]))
    first = next((e for e in errors if e["type"] == "union_tag_invalid"), deepest)
    path = _path(tuple(first["loc"]))
    if first["type"] == "extra_forbidden":
        message = f"Unknown parameter: '{path}'."
    elif first["type"] == "missing":
        message = f"Missing required parameter: '{path}'."
    elif first["type"] == "union_tag_invalid":
        ctx = first.get("ctx") or {}
        message = (
            f"Invalid value for '{path}': type {ctx.get('tag')!r} is not supported "
            f"(supported: {ctx.get('expected_tags')})."
        )
    else:
        message = f"Invalid value for '{path}': {first['msg']}."
    return PodiumError("invalid_request", message, param=path or None)


def _refuse_what_podium_cannot_serve(body: dict[str, Any]) -> None:
    """Stored state and hosted tools, refused by name before the body is validated, so the
    caller learns what to do instead of reading a schema error."""
    for name, instead in STATEFUL_FIELDS.items():
        if body.get(name) is not None:
            raise PodiumError(
                "invalid_request",
                f"'{name}' is not supported: {instead}.",
                param=name,
                code="unsupported_parameter",
            )
    tools = body.get("tools")
    if isinstance(tools, list):
        for index, tool in enumerate(tools):
            kind = tool.get("type") if isinstance(tool, dict) else None
            if isinstance(kind, str) and kind != "function":
                hosted = " is a tool OpenAI runs on its own servers" if _hosted(kind) else ""
                raise PodiumError(
                    "invalid_request",
                    f"tools[{index}]: type {kind!r}{hosted}; Podium's workers call only "
                    "function tools.",
                    param=f"tools[{index}].type",
                    code="unsupported_tool",
                )


def _hosted(kind: str) -> bool:
    return kind in HOSTED_TOOLS or kind.startswith(("web_search", "computer_use"))


def _parts(
    content: str | list[Any], role: str, where: str, lifetime: CacheTTL
) -> list[ContentPart]:
    if isinstance(content, str):
        return [TextPart(content)]
    parts: list[ContentPart] = []
    for index, part in enumerate(content):
        if isinstance(part, InputText):
            parts.append(TextPart(part.text, _breakpoint(part, lifetime)))
        elif isinstance(part, OutputText):
            parts.append(TextPart(part.text))
        elif isinstance(part, Refusal):
            parts.append(TextPart(part.refusal))
        elif role != "user":
            kind = "files" if isinstance(part, InputFile) else "images"
            raise PodiumError(
                "invalid_request",
                f"Invalid value for '{where}[{index}]': only user messages may hold {kind}.",
                param=f"{where}[{index}]",
            )
        elif isinstance(part, InputFile):
            parts.append(
                attached(
                    part.file_data,
                    file_id=part.file_id,
                    url=part.file_url,
                    filename=part.filename,
                    cache=_breakpoint(part, lifetime),
                    where=f"{where}[{index}]",
                )
            )
        elif part.image_url is None and part.file_id is None:
            raise PodiumError(
                "invalid_request",
                f"Invalid value for '{where}[{index}]': give the image by 'image_url' (a URL or "
                "a data: URL) or by 'file_id' (a file uploaded to /v1/files).",
                param=f"{where}[{index}]",
            )
        elif part.image_url is None:
            cache = _breakpoint(part, lifetime)
            parts.append(ImagePart(file_id=part.file_id, detail=part.detail, cache=cache))
        else:
            parts.append(_image(part, _breakpoint(part, lifetime)))
    return parts


def _breakpoint(part: InputText | InputImage | InputFile, lifetime: CacheTTL) -> CacheTTL | None:
    """A part's breakpoint, for its own lifetime or the request's (``lifetime``)."""
    mark = part.prompt_cache_breakpoint
    return None if mark is None else mark.ttl or lifetime


def _image(part: InputImage, cache: CacheTTL | None) -> ImagePart:
    url = part.image_url or ""
    if url.startswith("data:") and ";base64," in url:
        head, data = url[5:].split(";base64,", 1)
        return ImagePart(data=data, media_type=head, detail=part.detail, cache=cache)
    return ImagePart(url=url, detail=part.detail, cache=cache)


def _messages(wire: ResponsesIn, reader: CompactionReader | None) -> list[Message]:
    options = wire.prompt_cache_options
    lifetime: CacheTTL = (options.ttl if options else None) or "30m"
    messages: list[Message] = []
    if wire.instructions:
        messages.append(Message("system", [TextPart(wire.instructions)]))
    if isinstance(wire.input, str):
        messages.append(Message("user", [TextPart(wire.input)]))
        return messages
    messages += item_messages(wire.input, lifetime, reader=reader)
    return messages


_ITEMS: TypeAdapter[list[Item]] = TypeAdapter(list[Item])


def history_messages(
    items: list[JSONObject], compactions: Compactions | None = None, lifetime: CacheTTL = "30m"
) -> list[Message]:
    """The messages of a stored conversation's items (each turn's input, then its output)."""
    reader = compactions.reader() if compactions is not None else None
    try:
        return item_messages(_ITEMS.validate_python(items), lifetime, "history", reader)
    except ValidationError as error:
        raise PodiumError(
            "api_error", "a stored response could not be read back; it may predate this version"
        ) from error


def item_messages(
    items: list[Any],
    lifetime: CacheTTL,
    where: str = "input",
    reader: CompactionReader | None = None,
) -> list[Message]:
    messages: list[Message] = []
    for index, item in enumerate(items):
        if isinstance(item, MessageItem):
            role = "system" if item.role == "developer" else item.role
            content = _parts(item.content, item.role, f"{where}[{index}].content", lifetime)
            messages.append(Message(role, content))
        elif isinstance(item, FunctionCallItem):
            call = ToolCall(item.call_id, item.name, item.arguments)
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant":
                last.tool_calls.append(call)  # one turn's calls, in one assistant message
            else:
                messages.append(Message("assistant", [], tool_calls=[call]))
        elif isinstance(item, FunctionCallOutputItem):
            output = item.output
            text = output if isinstance(output, str) else "".join(p.text for p in output)
            messages.append(Message("tool", [TextPart(text)], tool_call_id=item.call_id))
        elif isinstance(item, CompactionItem):
            param = f"{where}[{index}].encrypted_content"
            if reader is None:
                raise PodiumError(
                    "invalid_request",
                    f"'{param}': this gateway reads no compaction items.",
                    param=param,
                    code="invalid_compaction",
                )
            summary = reader.open(item.encrypted_content, param)
            messages.append(Message("assistant", [TextPart(summary)]))
    return messages


def _response_format(text: TextConfig | None) -> ResponseFormat | None:
    fmt = text.format if text is not None else None
    if fmt is None:
        return None
    if isinstance(fmt, JSONSchemaFormat):
        return ResponseFormat("json_schema", fmt.schema_, fmt.name, fmt.strict)
    return ResponseFormat(fmt.type)


@dataclass(slots=True)
class ResponsesRequest(ChatRequest):
    """The canonical request, and the request fields a Response object repeats back."""

    echo: JSONObject = field(default_factory=dict)
    previous_response_id: str | None = None
    conversation_id: str | None = None
    truncate: bool = False  # truncation "auto": podium/responses/truncation.py
    store: bool = True  # the client's wish; kept only where responses.store is on
    raw_input: str | list[Any] = ""  # ``input`` as sent, kept as the client sent it
    background: bool = False  # answered off the request that asked, and kept from its start
    # Whose compaction items the input holds: only their owner may send them (checked once the
    # caller is known, podium/api/responses_compact.py).
    compaction_owners: frozenset[str] = frozenset()
    # The ids of the stored items the input names (``item_reference``), and the body as sent,
    # to be read again with the items in their place; until then they are left out.
    references: tuple[str, ...] = ()
    body: JSONObject | None = None
    response_id: str | None = None  # set by the ingress that keeps responses


def to_canonical(wire: ResponsesIn, compactions: Compactions | None = None) -> ResponsesRequest:
    reader = compactions.reader() if compactions is not None else None
    messages = _messages(wire, reader)
    referring = isinstance(wire.input, list) and any(
        isinstance(item, ItemReference) for item in wire.input
    )
    if not referring and not any(message.role != "system" for message in messages):
        raise PodiumError(
            "invalid_request",
            "Invalid value for 'input': it holds no message or tool output to answer.",
            param="input",
        )
    tool_choice: ToolChoice | None = None
    if isinstance(wire.tool_choice, str):
        tool_choice = ToolChoice(mode=wire.tool_choice)
    elif wire.tool_choice is not None:
        tool_choice = ToolChoice(mode="tool", name=wire.tool_choice.name)
    tools = [
        Tool(
            t.name,
            t.description,
            t.parameters or {"type": "object", "properties": {}},
            strict=t.strict,
        )
        for t in wire.tools or []
    ]
    check_tool_choice(tool_choice, tools)
    return ResponsesRequest(
        model=wire.model,
        messages=messages,
        tools=tools,
        tool_choice=tool_choice,
        response_format=_response_format(wire.text),
        temperature=wire.temperature,
        top_p=wire.top_p,
        max_tokens=wire.max_output_tokens,
        user=wire.user,
        metadata=wire.metadata or {},
        stream=bool(wire.stream),
        include_usage=True,  # a Response always reports its usage
        parallel_tool_calls=wire.parallel_tool_calls,
        reasoning_effort=wire.reasoning.effort if wire.reasoning else None,
        verbosity=wire.text.verbosity if wire.text else None,
        echo=_echo(wire),
        previous_response_id=wire.previous_response_id,
        conversation_id=_conversation_id(wire),
        truncate=wire.truncation == "auto",
        store=wire.store is not False,
        background=_background(wire),
        compaction_owners=frozenset(reader.owners) if reader is not None else frozenset(),
        attachments=isinstance(wire.input, list) and any_attachments(messages),
        **cache_fields(
            wire.prompt_cache_options, wire.prompt_cache_key, wire.prompt_cache_retention
        ),
    )


def _background(wire: ResponsesIn) -> bool:
    if wire.background and wire.store is False:
        raise PodiumError(
            "invalid_request",
            "A background response must be stored: it is read back by its id when done. "
            "Leave 'store' out (true by default) or set it to true.",
            param="background",
            code="unsupported_parameter",
        )
    return bool(wire.background)


def _conversation_id(wire: ResponsesIn) -> str | None:
    conversation = wire.conversation
    if conversation is None:
        return None
    if wire.previous_response_id is not None:
        raise PodiumError(
            "invalid_request",
            "'previous_response_id' and 'conversation' cannot be used together: a response "
            "continues either a stored response or a conversation.",
            param="conversation",
        )
    return conversation if isinstance(conversation, str) else conversation.id


def _echo(wire: ResponsesIn) -> JSONObject:
    """The request's settings as a Response object states them (OpenAI's defaults filled in)."""
    text: JSONObject = {"format": {"type": "text"}}
    if wire.text is not None:
        text = wire.text.model_dump(by_alias=True, exclude_none=True) or text
        text.setdefault("format", {"type": "text"})
    tool_choice: Any = wire.tool_choice or "auto"
    if not isinstance(tool_choice, str):
        tool_choice = tool_choice.model_dump()
    return {
        "instructions": wire.instructions,
        "max_output_tokens": wire.max_output_tokens,
        "metadata": wire.metadata or {},
        "parallel_tool_calls": True
        if wire.parallel_tool_calls is None
        else wire.parallel_tool_calls,
        "previous_response_id": wire.previous_response_id,
        "conversation": {"id": _conversation_id(wire)} if wire.conversation else None,
        "reasoning": {
            "effort": wire.reasoning.effort if wire.reasoning else None,
            "summary": wire.reasoning.summary if wire.reasoning else None,
        },
        "store": False,  # true only once a response has been kept
        "background": bool(wire.background),
        "temperature": 1.0 if wire.temperature is None else wire.temperature,
        "text": text,
        "tool_choice": tool_choice,
        "tools": [tool.model_dump(exclude_none=True) for tool in wire.tools or []],
        "top_p": 1.0 if wire.top_p is None else wire.top_p,
        "truncation": wire.truncation or "disabled",
        "user": wire.user,
        "safety_identifier": wire.safety_identifier,
        "prompt_cache_key": wire.prompt_cache_key,
        "service_tier": "flex" if wire.service_tier == "flex" else "default",
    }


def parse(body: Any, compactions: Compactions | None = None) -> ResponsesRequest:
    if not isinstance(body, dict):
        raise PodiumError("invalid_request", "request body must be a JSON object")
    _refuse_what_podium_cannot_serve(body)
    try:
        wire = ResponsesIn.model_validate(body)
    except ValidationError as error:
        raise validation_error(error) from None
    request = to_canonical(wire, compactions)
    request.raw_input = body["input"]
    if isinstance(wire.input, list):
        references = [item.id for item in wire.input if isinstance(item, ItemReference)]
        if references:
            request.references, request.body = tuple(references), body
    return request
