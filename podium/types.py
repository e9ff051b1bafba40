"""The canonical request, response and stream shapes every ingress and provider translate to.

Ingress modules (``podium.api.*``) parse a vendor wire format into a :class:`ChatRequest`;
provider modules (``podium.providers.*``) turn a :class:`ChatRequest` into an upstream call and
its answer back into a :class:`ChatResponse` or a stream of :data:`StreamEvent`. Nothing outside
those two layers knows any vendor's wire format.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeAlias

Role: TypeAlias = Literal["system", "user", "assistant", "tool"]
FinishReason: TypeAlias = Literal["stop", "length", "tool_calls", "content_filter", "error"]
JSONObject: TypeAlias = dict[str, Any]
# A prompt-cache breakpoint: the prefix up to and including the marked item may be cached by
# the upstream for at least this long (Anthropic's ``cache_control`` offers 5m and 1h, OpenAI's
# ``prompt_cache_breakpoint`` 30m and 12h; each egress takes the nearest its upstream offers).
CacheTTL: TypeAlias = Literal["5m", "30m", "1h", "12h"]
CACHE_SECONDS: dict[str, int] = {"5m": 300, "30m": 1800, "1h": 3600, "12h": 43200}


def nearest_lifetime(ttl: CacheTTL, offered: tuple[CacheTTL, ...]) -> CacheTTL:
    """The shortest lifetime ``offered`` that lasts at least ``ttl``, else the longest."""
    ranked = sorted(offered, key=CACHE_SECONDS.__getitem__)
    for lifetime in ranked:
        if CACHE_SECONDS[lifetime] >= CACHE_SECONDS[ttl]:
            return lifetime
    return ranked[-1]


@dataclass(slots=True)
class TextPart:
    text: str
    cache: CacheTTL | None = None


@dataclass(slots=True)
class ImagePart:
    """An image given either by URL or inline as base64 ``data`` with its media type (or, until
    the gateway reads it, by the id of a file its caller uploaded: podium/documents.py)."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    detail: str | None = None
    cache: CacheTTL | None = None
    file_id: str | None = None


@dataclass(slots=True)
class DocumentPart:
    """A PDF the caller attached: inline as base64 ``data``, by ``url`` (the worker fetches it)
    or, until the gateway reads it, by the ``file_id`` of an upload. ``text`` is what the
    gateway extracted from it (podium/documents.py): the detectors and the injection screen
    read it, and a worker that reads no PDFs is sent it instead of the file. None: not read (a
    URL) or nothing to read (a scanned page)."""

    data: str | None = None
    url: str | None = None
    file_id: str | None = None
    filename: str | None = None
    title: str | None = None  # Anthropic's ``title`` and ``context``: said before the text
    context: str | None = None
    text: str | None = None
    pages: int = 0
    cache: CacheTTL | None = None
    media_type: str = "application/pdf"
    # A PDF without text: its first pages drawn as PNG (base64), for a worker that reads images
    # but not PDFs (``documents.scan_pages``; empty without the renderer).
    page_images: list[str] = field(default_factory=list)
    # The caller asks the worker to cite it (Anthropic's ``citations``); ``index``: its number
    # among the documents of the caller's request, as citations name it (None: its position);
    # ``from_file``: the upload it was read from, which a citation names too.
    citations: bool = False
    index: int | None = None
    from_file: str | None = None


ContentPart: TypeAlias = TextPart | ImagePart | DocumentPart


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, exactly as the model produced it


@dataclass(slots=True)
class Message:
    role: Role
    content: list[ContentPart] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None
    is_error: bool = False  # a tool result that reports a failure
    # A breakpoint after the whole message: its tool calls, or a tool result's content.
    cache: CacheTTL | None = None

    def text(self) -> str:
        content = self.content
        if len(content) == 1 and type(content[0]) is TextPart:  # the usual case, ~5x faster
            return content[0].text
        return "".join(part.text for part in content if isinstance(part, TextPart))

    def text_length(self) -> int:
        """``len(self.text())``, without building the text."""
        content = self.content
        if len(content) == 1 and type(content[0]) is TextPart:
            return len(content[0].text)
        return sum(len(part.text) for part in self.content if isinstance(part, TextPart))

    def has_images(self) -> bool:
        for part in self.content:  # noqa: SIM110 (a plain loop is faster than any() here)
            if type(part) is ImagePart:
                return True
        return False

    def has_documents(self) -> bool:
        for part in self.content:  # noqa: SIM110 (as above)
            if type(part) is DocumentPart:
                return True
        return False

    def has_breakpoint(self) -> bool:
        """Whether the message, or any part of it, marks a prompt-cache breakpoint."""
        if self.cache is not None:
            return True
        for part in self.content:  # noqa: SIM110 (as above)
            if part.cache is not None:
                return True
        return False


@dataclass(slots=True)
class Tool:
    name: str
    description: str | None = None
    parameters: JSONObject = field(default_factory=lambda: {"type": "object", "properties": {}})
    cache: CacheTTL | None = None
    # Structured Outputs for a function: its arguments always match ``parameters``. Passed on
    # to OpenAI-compatible, Responses and Anthropic workers; None: the caller did not say.
    strict: bool | None = None


@dataclass(slots=True)
class ToolChoice:
    """``auto`` lets the model decide, ``none`` forbids tools, ``required`` forces some tool and
    ``tool`` forces the one named."""

    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None


@dataclass(slots=True)
class ResponseFormat:
    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: JSONObject | None = None
    name: str | None = None
    strict: bool | None = None


@dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[Message]
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    response_format: ResponseFormat | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    user: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    stream: bool = False
    include_usage: bool = False
    parallel_tool_calls: bool | None = None
    # OpenAI reasoning models' knobs: passed on to workers whose options say they take them
    # (``options.reasoning``), dropped for the rest.
    reasoning_effort: str | None = None
    verbosity: str | None = None
    # Prompt caching. ``cache``: cache the prompt up to its last item too (Anthropic's top-level
    # ``cache_control``, OpenAI's implicit breakpoint); ``cache_explicit``: only at the marked
    # breakpoints (OpenAI's ``mode: explicit``); ``cache_key`` and ``cache_retention``: OpenAI's
    # ``prompt_cache_key`` and ``prompt_cache_retention``, for workers that take them.
    cache: CacheTTL | None = None
    cache_explicit: bool = False
    cache_key: str | None = None
    cache_retention: str | None = None
    # Set by the ingress that parsed a document part or an image named by a file id (what
    # podium/documents.py reads): the request path asks this flag, not every part of every
    # message. It may outlive them (read, or sent as text), never the other way round.
    attachments: bool = False

    def prompt_text(self) -> str:
        """Every message's text, joined: what routers and detectors read."""
        return "\n".join(message.text() for message in self.messages)

    def prompt_length(self) -> int:
        """``len(self.prompt_text())``, without building the text: what token estimates need."""
        length = -1 if self.messages else 0  # the separators: one fewer than the messages
        for message in self.messages:
            length += message.text_length() + 1
        return length

    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text()
        return ""

    def has_images(self) -> bool:
        for message in self.messages:  # noqa: SIM110 (as above)
            if message.has_images():
                return True
        return False

    def document_parts(self) -> list[DocumentPart]:
        if not self.attachments:
            return []
        return [
            part
            for message in self.messages
            for part in message.content
            if type(part) is DocumentPart
        ]

    def documents_length(self) -> int:
        """The characters of text read from the request's documents (token estimates add it
        to :meth:`prompt_length`)."""
        return sum(len(part.text or "") for part in self.document_parts())


def any_attachments(messages: list[Message]) -> bool:
    """Whether a message holds a document part or an image named by a file id (the ingresses
    set ``ChatRequest.attachments`` by it)."""
    for message in messages:
        for part in message.content:
            if type(part) is DocumentPart or (type(part) is ImagePart and part.file_id):
                return True
    return False


def has_breakpoints(request: ChatRequest) -> bool:
    """Whether the request marks a prompt-cache breakpoint of its own anywhere."""
    for tool in request.tools:
        if tool.cache is not None:
            return True
    for message in request.messages:  # noqa: SIM110 (as in Message.has_images)
        if message.has_breakpoint():
            return True
    return False


def without_breakpoints(request: ChatRequest) -> ChatRequest:
    """A copy of the request with no prompt-cache breakpoint on any part, message or tool."""
    messages = [
        replace(
            message,
            cache=None,
            content=[replace(part, cache=None) for part in message.content],
        )
        for message in request.messages
    ]
    tools = [replace(tool, cache=None) for tool in request.tools]
    return replace(request, messages=messages, tools=tools)


@dataclass(slots=True)
class Usage:
    """Token counts. ``input_tokens`` counts every input token; of them,
    ``cached_input_tokens`` were read from the upstream's prompt cache and
    ``cache_write_tokens`` (the standard lifetime: Anthropic's 5 minutes, OpenAI's 30) and
    ``cache_write_long_tokens`` (Anthropic's hour, OpenAI's 12 hours) written to it, which
    vendors charge above the input price. ``cache_storage_token_hours``: prompt-cache storage
    the call bought (Gemini's context caches: 10,000 tokens kept 5 minutes are 833), priced by
    ``price.cache_storage_per_hour``."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_long_tokens: int = 0
    cache_storage_token_hours: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def cache_written_tokens(self) -> int:
        return self.cache_write_tokens + self.cache_write_long_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.cache_write_long_tokens + other.cache_write_long_tokens,
            self.cache_storage_token_hours + other.cache_storage_token_hours,
        )


CitedLocation: TypeAlias = Literal["page", "char", "block"]


@dataclass(slots=True)
class Citation:
    """A passage of one of the request's documents that supports part of an answer: pages
    ``start`` to ``end`` (from 1, ``end`` past the last) of a PDF, characters of a plain-text
    document, or blocks of a document given as content (from 0, ``end`` past the last)."""

    cited_text: str
    document_index: int  # among the request's documents, in order
    location: CitedLocation
    start: int
    end: int
    document_title: str | None = None
    file_id: str | None = None  # the upload the document was read from


@dataclass(slots=True)
class CitedSpan:
    """Characters ``start`` to ``end`` of an answer's text, and the citations that support them."""

    start: int
    end: int
    citations: list[Citation]


@dataclass(slots=True)
class ChatResponse:
    id: str
    model: str
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: FinishReason = "stop"
    usage: Usage = field(default_factory=Usage)
    created: int = 0
    stop_sequence: str | None = None  # which stop sequence ended the answer, when known
    citations: list[CitedSpan] = field(default_factory=list)  # in order, not overlapping


def passages(response: ChatResponse) -> list[tuple[str, list[Citation]]]:
    """The answer's text cut at its cited spans, each piece with the citations that support
    it (none between them); no empty piece."""
    text = response.text
    if not response.citations:
        return [(text, [])] if text else []
    pieces: list[tuple[str, list[Citation]]] = []
    at = 0
    for span in response.citations:
        if span.start > at:
            pieces.append((text[at : span.start], []))
        pieces.append((text[span.start : span.end], span.citations))
        at = max(at, span.end)
    if at < len(text):
        pieces.append((text[at:], []))
    return [(piece, cited) for piece, cited in pieces if piece]


def spans_of(pieces: list[tuple[str, list[Citation]]]) -> list[CitedSpan]:
    """The cited spans of the text ``pieces`` join to (what :func:`passages` cut)."""
    spans: list[CitedSpan] = []
    at = 0
    for text, cited in pieces:
        if cited:
            spans.append(CitedSpan(at, at + len(text), cited))
        at += len(text)
    return spans


# -- embeddings --------------------------------------------------------------------------------


@dataclass(slots=True)
class EmbedRequest:
    """Texts to embed, in order. ``dimensions`` asks a model that can shorten its vectors."""

    model: str
    inputs: list[str]
    dimensions: int | None = None
    user: str | None = None


@dataclass(slots=True)
class Embeddings:
    vectors: list[list[float]]  # one per input, in the inputs' order
    usage: Usage = field(default_factory=Usage)


# -- streaming ---------------------------------------------------------------------------------


@dataclass(slots=True)
class TextDelta:
    """More of the answer's text. ``passage``: it starts a new passage of the answer (a content
    block of Anthropic's), so a :class:`CitationDelta` that follows is of that passage alone."""

    text: str
    passage: bool = False


@dataclass(slots=True)
class CitationDelta:
    """A citation supporting the passage of the answer in progress (begun by the last
    ``TextDelta`` with ``passage`` set, else the start of the answer)."""

    citation: Citation


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of one tool call. The first piece of a call carries its ``id`` and ``name``; later
    pieces carry more of ``arguments``. ``index`` says which call of the turn it belongs to."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class Finish:
    reason: FinishReason
    stop_sequence: str | None = None  # which stop sequence ended the answer, when known


@dataclass(slots=True)
class UsageReport:
    usage: Usage


StreamEvent: TypeAlias = TextDelta | CitationDelta | ToolCallDelta | Finish | UsageReport
EventStream: TypeAlias = AsyncGenerator[StreamEvent, None]


# -- relayed streams ---------------------------------------------------------------------------
# When the caller speaks the provider's own wire format and nothing needs to change the events,
# the provider's stream bytes pass through as they arrive (whole events, any number a chunk).
# The only decoded item is the usage the provider reported, kept for the end of the stream,
# where the ingress re-emits it with the cost once the call is settled.


@dataclass(slots=True)
class WireUsage:
    """Usage in a relayed stream: the figures, and the provider's own usage event (None when
    the provider sent none and the figures are Podium's estimate)."""

    usage: Usage
    event: JSONObject | None = None


WireItem: TypeAlias = bytes | WireUsage
WireStream: TypeAlias = AsyncGenerator[WireItem, None]


@dataclass(slots=True)
class RelayMeter:
    """What a relayed stream has passed on so far, for an estimate of its answer when the
    provider reports no usage, or the caller hangs up before the usage comes."""

    bytes: int = 0
    events: int = 0
    wrapping: int = 0  # one event's bytes around its text, learned from the first with text

    def answer_tokens(self) -> int:
        text = max(0, self.bytes - self.events * self.wrapping)
        return (text + 3) // 4 if text else 0


async def collect(events: EventStream, *, id: str, model: str) -> ChatResponse:
    """Fold a stream of events into the response it adds up to."""
    text: list[str] = []
    calls: dict[int, ToolCall] = {}
    response = ChatResponse(id=id, model=model)
    cited = Passages()
    async for event in events:
        if isinstance(event, TextDelta):
            text.append(event.text)
            cited.text(event)
        elif isinstance(event, CitationDelta):
            cited.cite(event.citation)
        elif isinstance(event, ToolCallDelta):
            call = calls.setdefault(event.index, ToolCall(id="", name="", arguments=""))
            call.id = event.id or call.id
            call.name = event.name or call.name
            call.arguments += event.arguments
        elif isinstance(event, Finish):
            response.finish_reason = event.reason
            response.stop_sequence = event.stop_sequence
        else:
            response.usage = event.usage
    response.text = "".join(text)
    response.tool_calls = [calls[index] for index in sorted(calls)]
    response.citations = cited.spans()
    return response


class Passages:
    """Folds a stream's passages and citations into the cited spans of its text."""

    def __init__(self) -> None:
        self.length = 0
        self.start = 0  # of the passage in progress
        self.citations: list[Citation] = []
        self.cited: list[CitedSpan] = []

    def text(self, delta: TextDelta) -> None:
        if delta.passage:
            self._close()
            self.start = self.length
        self.length += len(delta.text)

    def cite(self, citation: Citation) -> None:
        self.citations.append(citation)

    def _close(self) -> None:
        if self.citations:
            self.cited.append(CitedSpan(self.start, self.length, self.citations))
            self.citations = []

    def spans(self) -> list[CitedSpan]:
        self._close()
        return self.cited
