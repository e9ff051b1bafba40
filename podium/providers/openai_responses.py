"""OpenAI Responses egress (``provider: openai-responses``): OpenAI models served through the
Responses API, some of them through nothing else, and any server that speaks it.

Podium sends every request whole, with ``store: false`` unless the worker's options say
otherwise: nothing is left at OpenAI for a later request to point at, and OpenAI keeps no copy
of the conversation for its default 30 days. The Responses API has no ``stop`` or ``seed``, so
those are not sent; its smallest ``max_output_tokens`` is 16, so a smaller limit is sent as 16.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict

from podium.errors import ProviderError, provider_error_from_status
from podium.image_tokens import GPT_4O, preset_for_model
from podium.providers.base import ProviderContext, ProviderRegistry
from podium.providers.http import sse_json
from podium.providers.openai import openai_upstream, tool_output
from podium.providers.openai_cache import (
    marked_parts,
    request_fields,
    takes_cache_fields,
    with_writes,
)
from podium.types import (
    ChatRequest,
    ChatResponse,
    DocumentPart,
    EventStream,
    Finish,
    FinishReason,
    ImagePart,
    JSONObject,
    Message,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageReport,
)
from podium.upstream_profile import OPENAI_IMAGES, UpstreamProfile

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MIN_OUTPUT_TOKENS = 16  # the API refuses a smaller max_output_tokens

# ``incomplete_details.reason`` as a canonical finish reason.
INCOMPLETE: dict[str, FinishReason] = {
    "max_output_tokens": "length",
    "content_filter": "content_filter",
}


class ResponsesOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The model takes ``reasoning.effort`` and ``text.verbosity`` (o-series, GPT-5): a
    # request's are passed on. Off by default: other models refuse them.
    reasoning: bool = False
    # Let OpenAI keep each response (``store: true``). Podium never reads one back.
    store: bool = False
    # Send OpenAI's prompt-cache fields, as for provider openai (by default when the base URL
    # is OpenAI's own API).
    prompt_cache: bool | None = None
    organization: str | None = None
    extra_headers: dict[str, str] = {}


def _content(message: Message) -> str | list[JSONObject]:
    if not message.has_images() and not message.has_documents():
        return message.text()
    return _parts(message)


def _parts(message: Message) -> list[JSONObject]:
    parts: list[JSONObject] = []
    for part in message.content:
        if isinstance(part, TextPart):
            parts.append({"type": "input_text", "text": part.text})
        elif isinstance(part, ImagePart):
            parts.append(_image(part))
        else:
            parts.append(_file(part))
    return parts


def _file(part: DocumentPart) -> JSONObject:
    if part.url is not None:
        return {"type": "input_file", "file_url": part.url}
    return {
        "type": "input_file",
        "filename": part.filename or part.title or "document.pdf",
        "file_data": f"data:{part.media_type};base64,{part.data}",
    }


def _image(part: ImagePart) -> JSONObject:
    url = part.url or f"data:{part.media_type or 'image/png'};base64,{part.data}"
    image: JSONObject = {"type": "input_image", "image_url": url}
    if part.detail:
        image["detail"] = part.detail
    return image


def encode_input(
    messages: list[Message], *, breakpoints: bool = False
) -> tuple[str | None, list[JSONObject]]:
    """The leading system messages as ``instructions``, the rest as input items. With
    ``breakpoints``, a marked message's parts carry them: such a system message is a
    ``system`` item (``instructions`` is a plain string), a tool output a list of parts."""
    leading: list[str] = []
    items: list[JSONObject] = []
    for message in messages:
        marked = breakpoints and message.has_breakpoint()
        if marked and message.role in ("system", "user", "tool"):
            parts = marked_parts(_parts(message), message)
            if message.role == "tool":
                items.append(
                    {
                        "type": "function_call_output",
                        "call_id": message.tool_call_id or "",
                        "output": parts,
                    }
                )
            else:  # after any instructions, as it would have been
                role = "user" if message.role == "user" else "system" if not items else "developer"
                items.append({"role": role, "content": parts})
        elif message.role == "system":
            if not items:
                leading.append(message.text())
            else:
                items.append({"role": "developer", "content": message.text()})
        elif message.role == "tool":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": message.tool_call_id or "",
                    "output": tool_output(message),
                }
            )
        elif message.role == "assistant":
            if message.content:
                items.append({"role": "assistant", "content": message.text()})
            items.extend(
                {
                    "type": "function_call",
                    "call_id": call.id,
                    "name": call.name,
                    "arguments": call.arguments,
                }
                for call in message.tool_calls
            )
        else:
            items.append({"role": "user", "content": _content(message)})
    return ("\n\n".join(leading) if leading else None), items


def encode_request(
    request: ChatRequest, model: str, options: ResponsesOptions, *, stream: bool
) -> JSONObject:
    instructions, items = encode_input(request.messages, breakpoints=bool(options.prompt_cache))
    payload: JSONObject = {"model": model, "input": items, "store": options.store}
    if options.prompt_cache:
        payload.update(request_fields(request))
    if instructions is not None:
        payload["instructions"] = instructions
    if request.tools:
        payload["tools"] = [
            {
                "type": "function",
                "name": tool.name,
                **({"description": tool.description} if tool.description else {}),
                "parameters": tool.parameters,
                # The API's default is strict, which refuses any schema that is not closed
                # and fully required: a caller who did not ask for it is not given it.
                "strict": bool(tool.strict),
            }
            for tool in request.tools
        ]
        if request.parallel_tool_calls is not None:
            payload["parallel_tool_calls"] = request.parallel_tool_calls
    if request.tool_choice is not None:
        choice = request.tool_choice
        payload["tool_choice"] = (
            {"type": "function", "name": choice.name} if choice.mode == "tool" else choice.mode
        )
    text: JSONObject = {}
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_object":
        text["format"] = {"type": "json_object"}
    elif fmt is not None and fmt.type == "json_schema":
        schema: JSONObject = {
            "type": "json_schema",
            "name": fmt.name or "output",
            "schema": fmt.schema or {},
        }
        if fmt.strict is not None:
            schema["strict"] = fmt.strict
        text["format"] = schema
    if options.reasoning:
        if request.reasoning_effort is not None:
            payload["reasoning"] = {"effort": request.reasoning_effort}
        if request.verbosity is not None:
            text["verbosity"] = request.verbosity
    if text:
        payload["text"] = text
    if request.temperature is not None:
        payload["temperature"] = request.temperature
    if request.top_p is not None:
        payload["top_p"] = request.top_p
    if request.user is not None:
        payload["safety_identifier"] = request.user
    if request.max_tokens is not None:
        payload["max_output_tokens"] = max(MIN_OUTPUT_TOKENS, request.max_tokens)
    if stream:
        payload["stream"] = True
    return payload


def decode_usage(data: Any) -> Usage:
    if not isinstance(data, dict):
        return Usage()
    details = data.get("input_tokens_details")
    usage = Usage(
        int(data.get("input_tokens") or 0),
        int(data.get("output_tokens") or 0),
        int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0,
    )
    return with_writes(usage, details)


def _finish(response: JSONObject, calls: bool) -> FinishReason:
    if response.get("status") == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        return INCOMPLETE.get(str(reason), "length")
    return "tool_calls" if calls else "stop"


# An error's ``code`` inside a Response (``response.failed``, an ``error`` event, a failed
# status) as the HTTP status the API gives the same error on its own.
STATUS_OF_CODE = {
    "rate_limit_exceeded": 429,
    "invalid_prompt": 400,
    "invalid_request_error": 400,
    "context_length_exceeded": 400,
    "server_error": 500,
    "vector_store_timeout": 504,
}


def _failure(worker: str, error: Any, *, mid_stream: bool) -> ProviderError:
    error = error if isinstance(error, dict) else {}
    message = error.get("message")
    where = "mid-stream" if mid_stream else "in its response"
    status = STATUS_OF_CODE.get(str(error.get("code")), 500)
    return provider_error_from_status(
        status,
        f"worker {worker!r} failed {where}" + (f": {message}" if message else ""),
        worker=worker,
    )


def decode_response(data: Any, worker: str) -> ChatResponse:
    if isinstance(data, dict) and data.get("status") == "failed":
        raise _failure(worker, data.get("error"), mid_stream=False)
    try:
        text: list[str] = []
        calls: list[ToolCall] = []
        for item in data["output"]:
            kind = item.get("type")
            if kind == "message":
                for part in item.get("content") or []:
                    if part.get("type") == "output_text":
                        text.append(part.get("text") or "")
                    elif part.get("type") == "refusal":
                        text.append(part.get("refusal") or "")
            elif kind == "function_call":
                calls.append(
                    ToolCall(
                        id=item.get("call_id") or f"call_{uuid.uuid4().hex[:24]}",
                        name=item["name"],
                        arguments=item.get("arguments") or "{}",
                    )
                )
            # Reasoning items and the rest carry nothing a caller's answer holds.
        return ChatResponse(
            str(data.get("id") or f"resp_{uuid.uuid4().hex}"),
            worker,
            "".join(text),
            calls,
            _finish(data, bool(calls)),
            decode_usage(data.get("usage")),
            int(data.get("created_at") or time.time()),
        )
    except (KeyError, TypeError, AttributeError):
        raise ProviderError(
            "upstream",
            f"worker {worker!r} answered in an unexpected shape",
            retryable=True,
            worker=worker,
        ) from None


class StreamDecoder:
    """The canonical events in a Responses stream's named events."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.calls: dict[int, int] = {}  # output index -> tool call index
        self.done = False

    def decode(self, event: JSONObject) -> list[StreamEvent]:
        kind = event.get("type")
        if kind in ("response.output_text.delta", "response.refusal.delta"):
            delta = event.get("delta")
            return [TextDelta(delta)] if isinstance(delta, str) and delta else []
        if kind == "response.output_item.added":
            item = event.get("item") or {}
            if item.get("type") != "function_call":
                return []
            index = self.calls[int(event.get("output_index") or 0)] = len(self.calls)
            return [
                ToolCallDelta(
                    index,
                    id=item.get("call_id"),
                    name=item.get("name"),
                    arguments=item.get("arguments") or "",
                )
            ]
        if kind == "response.function_call_arguments.delta":
            call = self.calls.get(int(event.get("output_index") or 0))
            delta = event.get("delta")
            if call is None or not isinstance(delta, str) or not delta:
                return []
            return [ToolCallDelta(call, arguments=delta)]
        if kind in ("response.completed", "response.incomplete"):
            self.done = True
            response = event.get("response") or {}
            return [
                Finish(_finish(response, bool(self.calls))),
                UsageReport(decode_usage(response.get("usage"))),
            ]
        if kind == "response.failed":
            response = event.get("response")
            error = response.get("error") if isinstance(response, dict) else None
            raise _failure(self.worker, error, mid_stream=True)
        if kind == "error":
            raise _failure(self.worker, event, mid_stream=True)
        return []


class OpenAIResponsesProvider:
    def __init__(self, context: ProviderContext) -> None:
        worker = context.worker
        options = ResponsesOptions.model_validate(worker.options)
        caches = takes_cache_fields(options.prompt_cache, worker.base_url or DEFAULT_BASE_URL)
        self.options = options.model_copy(update={"prompt_cache": caches})
        self.worker = worker.name
        self.model = worker.model
        self.upstream = openai_upstream(
            context, DEFAULT_BASE_URL, self.options.extra_headers, self.options.organization
        )

    async def start(self) -> None:
        return None

    def upstream_profile(self) -> UpstreamProfile:
        rule = preset_for_model(self.model, GPT_4O)
        return UpstreamProfile(image_rule=rule, image_limits=OPENAI_IMAGES)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        payload = encode_request(request, self.model, self.options, stream=False)
        data = await self.upstream.post_json("/responses", payload)
        try:
            return decode_response(data, self.worker)
        except ProviderError as error:  # a body with status "failed" quotes the vendor
            raise self.upstream.scrubbed(error) from None

    async def stream(self, request: ChatRequest) -> EventStream:
        payload = encode_request(request, self.model, self.options, stream=True)
        decoder = StreamDecoder(self.worker)
        async with self.upstream.open_stream("/responses", payload) as lines:
            async for event in sse_json(lines, self.worker):
                if not isinstance(event, dict):
                    continue
                for item in decoder.decode(event):
                    yield item
                if decoder.done:
                    return
        raise ProviderError(
            "upstream",
            f"worker {self.worker!r} ended its stream early",
            retryable=True,
            worker=self.worker,
        )

    async def aclose(self) -> None:
        return None


def register_providers(providers: ProviderRegistry) -> None:
    providers.register("openai-responses", OpenAIResponsesProvider)
