"""A fake Anthropic Messages server: the documented message object, the streaming event
sequence (message_start ... message_stop, with ping and usage), error objects, 429 with
retry-after and 529 overloaded, with the knobs of :class:`~podium.testing.fakes.Behaviour`.

It also checks what the real API checks and a translator most easily gets wrong: the
``anthropic-version`` and ``x-api-key`` headers, ``max_tokens``, strictly alternating roles, and
tool results that answer the previous turn's tool_use ids and come first in their turn. And it
keeps a prompt cache (:mod:`podium.testing.prompt_cache`): ``cache_control`` breakpoints read
and write it, and ``usage`` says how much, as the real API's does.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from podium.image_tokens import CLAUDE
from podium.testing.fakes import (
    BadPdf,
    Behaviour,
    FakeUpstream,
    Json,
    Quota,
    SentImage,
    echo,
    image_tokens,
    images_refused,
    pdf_text,
    pdf_tokens,
    words,
)
from podium.testing.prompt_cache import CacheRefusal, PromptCache, anthropic_blocks
from podium.upstream_profile import ANTHROPIC_IMAGES

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    texts: list[str] = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif block.get("type") == "document":
            source = block.get("source") or {}
            if source.get("type") == "text":
                texts.append(str(source.get("data", "")))
            else:
                texts.append(pdf_tokens([_pdf_data(block)])[0])
        elif block.get("type") == "tool_result":
            texts.extend(_texts(block.get("content") or ""))
    return texts


def _pdf_data(block: Json) -> str | None:
    """A PDF document block's base64 (None: given by URL, not fetched)."""
    source = block.get("source") or {}
    kind = source.get("type")
    if kind == "url":
        return None
    if kind != "base64" or not isinstance(source.get("data"), str):
        raise BadPdf("source: Input tag found using 'type' is not supported here")
    if source.get("media_type") != "application/pdf":
        raise BadPdf("source.media_type: Input should be 'application/pdf'")
    return str(source["data"])


def documents_of(body: Json) -> list[str | None]:
    """The base64 of each PDF the messages attach (None for one given by URL)."""
    return [
        _pdf_data(block)
        for message in body.get("messages", [])
        if isinstance(message, dict) and isinstance(message.get("content"), list)
        for block in message["content"]
        if isinstance(block, dict)
        and block.get("type") == "document"
        and (block.get("source") or {}).get("type") != "text"
    ]


def images_of(body: Json) -> list[SentImage]:
    """The images the messages attach (in tool results too): base64, None for a URL."""
    images: list[SentImage] = []
    for message in body.get("messages", []):
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            inner = block.get("content") if block.get("type") == "tool_result" else None
            for part in [block, *(inner if isinstance(inner, list) else [])]:
                if isinstance(part, dict) and part.get("type") == "image":
                    source = part.get("source") or {}
                    images.append(
                        (source.get("data") if source.get("type") == "base64" else None, None)
                    )
    return images


def cited_documents(body: Json) -> list[tuple[int, Json]]:
    """The document blocks that ask to be cited, with their place among all documents."""
    blocks = [
        block
        for message in body.get("messages", [])
        if isinstance(message, dict) and isinstance(message.get("content"), list)
        for block in message["content"]
        if isinstance(block, dict) and block.get("type") == "document"
    ]
    return [
        (index, block)
        for index, block in enumerate(blocks)
        if (block.get("citations") or {}).get("enabled")
    ]


def citation_of(index: int, block: Json) -> Json:
    """What the fake cites of a document: the first line of its text (of a PDF, the first
    page's, as the fakes' PDFs hold one line a page)."""
    source = block.get("source") or {}
    base: Json = {"document_index": index, "document_title": block.get("title"), "file_id": None}
    if source.get("type") == "text":
        text = str(source.get("data") or "")
        line = text.split("\n", 1)[0]
        return {
            "type": "char_location",
            "cited_text": line,
            **base,
            "start_char_index": 0,
            "end_char_index": len(line),
        }
    text, _ = pdf_text(_pdf_data(block))
    return {
        "type": "page_location",
        "cited_text": text.split("\n", 1)[0],
        **base,
        "start_page_number": 1,
        "end_page_number": 2,
    }


def prompt_of(body: Json) -> str:
    texts: list[str] = []
    for message in body.get("messages", []):
        if isinstance(message, dict):
            texts.extend(_texts(message.get("content")))
    return "\n".join(texts)


EFFORTS = ("low", "medium", "high", "xhigh", "max")


def check_messages(body: Json) -> str | None:
    """What the real API would refuse in ``body``, or None."""
    effort = (body.get("output_config") or {}).get("effort")
    if effort is not None and effort not in EFFORTS:
        allowed = ", ".join(f"'{value}'" for value in EFFORTS)
        return f"output_config.effort: Input should be {allowed}"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: Field required"
    for sequence in body.get("stop_sequences") or []:
        if not str(sequence).strip():
            return "stop_sequences: each stop sequence must contain non-whitespace"
    tool_blocks = any(
        isinstance(block, dict) and block.get("type") in ("tool_use", "tool_result")
        for message in messages
        if isinstance(message, dict) and isinstance(message.get("content"), list)
        for block in message["content"]
    )
    if tool_blocks and not body.get("tools"):
        return "Requests which include `tool_use` or `tool_result` blocks must define tools."
    previous_role: str | None = None
    pending: set[str] = set()
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            return f"messages.{index}.role: Input should be 'user' or 'assistant'"
        if role == previous_role:
            return f"messages: roles must alternate between user and assistant (at {index})"
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list):
            return f"messages.{index}.content: Input should be a valid list"
        seen_other = False
        for block in blocks:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text" and not block.get("text"):
                return f"messages.{index}: text content blocks must be non-empty"
            if kind == "tool_result":
                if seen_other:
                    return f"messages.{index}: tool_result blocks must come first"
                if block.get("tool_use_id") not in pending:
                    return f"messages.{index}: unexpected tool_use_id {block.get('tool_use_id')}"
                pending.discard(block["tool_use_id"])
            else:
                seen_other = True
        if role == "assistant":
            if pending:
                return f"messages.{index}: tool_use ids without tool_result: {sorted(pending)}"
            pending = {
                b["id"] for b in blocks if isinstance(b, dict) and b.get("type") == "tool_use"
            }
        previous_role = role
    return None


class FakeAnthropic(FakeUpstream):
    def __init__(
        self, behaviour: Behaviour | None = None, *, prompt_cache: PromptCache | None = None
    ) -> None:
        super().__init__(behaviour)
        self.prompt_cache = prompt_cache or PromptCache()

    def quota_headers(self, quota: Quota) -> dict[str, str]:
        # Anthropic's: limits, what is left, and the moment (RFC 3339) each is full again.
        def moment(seconds: float) -> str:
            return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")

        return {
            "anthropic-ratelimit-requests-limit": str(quota.requests_limit),
            "anthropic-ratelimit-requests-remaining": str(quota.requests_remaining),
            "anthropic-ratelimit-requests-reset": moment(quota.requests_reset),
            "anthropic-ratelimit-tokens-limit": str(quota.tokens_limit),
            "anthropic-ratelimit-tokens-remaining": str(quota.tokens_remaining),
            "anthropic-ratelimit-tokens-reset": moment(quota.tokens_reset),
        }

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self.messages)

    @property
    def base_url(self) -> str:
        return self.url

    def key_ok(self, request: web.Request) -> bool:
        # The API takes the key as x-api-key or, as current SDKs send it, a bearer token.
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        given = request.headers.get("x-api-key") or bearer
        return given == self.behaviour.require_key

    def error_response(self, status: int, message: str) -> web.Response:
        body = {
            "type": "error",
            "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message},
            "request_id": f"req_{uuid.uuid4().hex[:24]}",
        }
        return web.json_response(body, status=status)

    def stream_error_event(self, request: web.BaseRequest | None) -> bytes:
        message = self.with_key("Overloaded", request)
        error = {"type": "error", "error": {"type": "overloaded_error", "message": message}}
        return f"event: error\ndata: {json.dumps(error)}\n\n".encode()

    def answer(self, body: Json) -> tuple[str, list[dict[str, Any]]]:
        choice = body.get("tool_choice") or {}
        tools = body.get("tools") or []
        if tools and choice.get("type") == "tool":
            forced = str(choice.get("name"))
            if self.behaviour.tool_call and self.behaviour.tool_call[0] == forced:
                arguments = self.behaviour.tool_call[1]
            else:
                arguments = json.dumps({"answer": echo(prompt_of(body))})
            return "", [self._call(forced, arguments)]
        if tools and self.behaviour.tool_call and choice.get("type") != "none":
            return "", [self._call(*self.behaviour.tool_call)]
        if self.behaviour.reply is not None:
            return self.behaviour.reply, []
        return echo(prompt_of(body)), []

    @staticmethod
    def _call(name: str, arguments: str) -> dict[str, Any]:
        return {
            "type": "tool_use",
            "id": f"toolu_{uuid.uuid4().hex[:24]}",
            "name": name,
            "input": json.loads(arguments),
        }

    async def messages(self, request: web.Request) -> web.StreamResponse:
        if "anthropic-version" not in request.headers:
            return self.error_response(400, "anthropic-version: header is required")
        body, failure = await self.admit(request)
        if failure is not None:
            return failure
        assert body is not None
        problem = check_messages(body)
        if problem is not None:
            return self.error_response(400, problem)
        try:
            _, page_tokens = pdf_tokens(documents_of(body))
        except BadPdf as bad:
            return self.error_response(400, f"messages: {bad}")
        refused = images_refused(images_of(body), ANTHROPIC_IMAGES)
        if refused is not None:
            return self.error_response(400, f"messages: {refused}")
        try:
            cached = self.prompt_cache.use(anthropic_blocks(body))
        except CacheRefusal as refusal:
            return self.error_response(400, str(refusal))
        text, calls = self.answer(body)
        stop_reason, stop_sequence = ("tool_use" if calls else "end_turn"), None
        for sequence in body.get("stop_sequences") or []:
            if sequence in text:
                text, stop_reason, stop_sequence = (
                    text[: text.index(sequence)],
                    "stop_sequence",
                    sequence,
                )
        limit = int(body["max_tokens"])
        if text and words(text) > limit:
            text, stop_reason, stop_sequence = " ".join(text.split()[:limit]), "max_tokens", None
        system = body.get("system") or ""
        if isinstance(system, list):
            system = "\n".join(str(block.get("text", "")) for block in system)
        prompt = words(prompt_of(body)) + (words(system) if system else 0) + page_tokens
        prompt += image_tokens(images_of(body), CLAUDE)
        content: list[Json] = [{"type": "text", "text": text}] if text else []
        if stop_reason == "end_turn":  # each cited document quoted in a passage of its own
            for index, block in cited_documents(body):
                citation = citation_of(index, block)
                quote = f" It reads: {citation['cited_text']}"
                content.append({"type": "text", "text": quote, "citations": [citation]})
        said = sum(words(block["text"]) for block in content)
        read = min(cached.read, prompt)
        written = min(cached.total_written, prompt - read)
        hour = min(cached.written_long, written)
        usage = {
            "input_tokens": prompt - read - written,
            "output_tokens": said or 5,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": written - hour,
                "ephemeral_1h_input_tokens": hour,
            },
        }
        message: Json = {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content + calls,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": usage,
        }
        if not body.get("stream"):
            return web.json_response(message)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await self.paced(response, self.events(message))
        return response

    def events(self, message: Json) -> list[bytes]:
        def sse(event: str, data: Json) -> bytes:
            return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()

        usage = message["usage"]
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1},
        }
        events = [
            sse("message_start", {"type": "message_start", "message": start}),
            sse("ping", {"type": "ping"}),
        ]
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                # As the API streams a cited passage: an empty block, its citations, its text.
                opening: Json = {"type": "text", "text": ""}
                pieces = [
                    {"type": "citations_delta", "citation": citation}
                    for citation in block.get("citations") or []
                ]
                pieces += [
                    {"type": "text_delta", "text": piece} for piece in self.pieces(block["text"])
                ]
            else:
                opening = {**block, "input": {}}
                pieces = [
                    {"type": "input_json_delta", "partial_json": piece}
                    for piece in self.pieces(json.dumps(block["input"]))
                ]
            events.append(
                sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": opening},
                )
            )
            events.extend(
                sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
                for delta in pieces
            )
            events.append(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
        events.append(
            sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": message["stop_reason"],
                        "stop_sequence": message["stop_sequence"],
                    },
                    "usage": {"output_tokens": usage["output_tokens"]},
                },
            )
        )
        events.append(sse("message_stop", {"type": "message_stop"}))
        return events
