"""OpenAI's Responses API on the fake OpenAI server (``POST /v1/responses``), written from the
API's documentation and independent of Podium's own Responses code, so that each checks the
other: the Response object, the named stream events with their sequence numbers, usage, the
``incomplete`` status, and the API's refusals (unknown parameters, ``max_output_tokens`` below
16, a ``previous_response_id`` it does not hold).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from podium.image_tokens import GPT_4O, preset_for_model
from podium.testing.fakes import (
    BadPdf,
    Json,
    SentImage,
    data_url_payload,
    image_tokens,
    pdf_tokens,
    words,
)
from podium.testing.prompt_cache import CacheRefusal, responses_blocks

if TYPE_CHECKING:
    from podium.testing.openai_fake import FakeOpenAI

KNOWN_FIELDS = frozenset(
    {"model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "text",
     "reasoning", "max_output_tokens", "temperature", "top_p", "metadata", "user", "stream",
     "stream_options", "store", "include", "truncation", "safety_identifier",
     "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention", "service_tier",
     "background",
     "max_tool_calls", "top_logprobs", "previous_response_id", "conversation", "prompt"}
)  # fmt: skip
MIN_OUTPUT_TOKENS = 16


def invalid(message: str, param: str | None, code: str | None = None) -> web.Response:
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return web.json_response({"error": error}, status=400)


def refusal(body: Json) -> web.Response | None:
    """The API's own 400 for a body it does not take, else None."""
    unknown = sorted(set(body) - KNOWN_FIELDS)
    if unknown:
        return invalid(f"Unknown parameter: '{unknown[0]}'.", unknown[0], "unknown_parameter")
    for field in ("model", "input"):
        if not body.get(field):
            return invalid(f"Missing required parameter: '{field}'.", field)
    previous = body.get("previous_response_id")
    if previous is not None:
        return invalid(f"Previous response with id '{previous}' not found.", "previous_response_id")
    limit = body.get("max_output_tokens")
    if limit is not None and (not isinstance(limit, int) or limit < MIN_OUTPUT_TOKENS):
        return invalid(
            "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= "
            f"{MIN_OUTPUT_TOKENS}, but got {limit} instead.",
            "max_output_tokens",
            "integer_below_min_value",
        )
    for index, item in enumerate(body["input"] if isinstance(body["input"], list) else []):
        kind = item.get("type", "message") if isinstance(item, dict) else None
        if kind not in ("message", "function_call", "function_call_output", "reasoning"):
            return invalid(f"Invalid value: '{kind}'.", f"input[{index}].type")
    return None


def _part_text(part: Json) -> str:
    if part.get("type") == "input_file":
        return pdf_tokens([_file_data(part)])[0]
    return str(part.get("text", ""))


def _file_data(part: Json) -> str | None:
    """An input file's base64 (None: given by URL, not fetched)."""
    if isinstance(part.get("file_url"), str):
        return None
    data = part.get("file_data")
    if not isinstance(data, str):
        # Only OpenAI's own uploads could be named by id; none exist here.
        raise BadPdf("Missing required parameter: 'input[].content[].file_data'.")
    return data_url_payload(data)


def documents_of(body: Json) -> list[str | None]:
    """The base64 of each file the input attaches (None for one given by URL)."""
    items = body.get("input")
    return [
        _file_data(part)
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, dict) and isinstance(item.get("content"), list)
        for part in item["content"]
        if isinstance(part, dict) and part.get("type") == "input_file"
    ]


def images_of(body: Json) -> list[SentImage]:
    """The images the input attaches: a data URL's payload, None for a web URL."""
    items = body.get("input")
    images: list[SentImage] = []
    for item in items if isinstance(items, list) else []:
        content = item.get("content") if isinstance(item, dict) else None
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "input_image":
                url = part.get("image_url")
                data = url if isinstance(url, str) and url.startswith("data:") else None
                images.append((data, part.get("detail")))
    return images


def chat_view(body: Json) -> Json:
    """The request as the fake's Chat Completions answerer reads one: messages, tools, the
    tool choice and the response format."""
    messages: list[Json] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    items = body["input"]
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            content = item.get("content")
            if isinstance(content, list):
                content = [{"text": _part_text(part)} for part in content]
            messages.append({"role": item.get("role"), "content": content})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "content": item.get("output")})
    view: Json = {"messages": messages}
    if body.get("tools"):
        view["tools"] = body["tools"]
    choice = body.get("tool_choice")
    if choice is not None:
        view["tool_choice"] = choice
    fmt = (body.get("text") or {}).get("format")
    if isinstance(fmt, dict):
        view["response_format"] = {"type": fmt.get("type")}
    return view


async def respond(fake: FakeOpenAI, request: web.Request) -> web.StreamResponse:
    body, failure = await fake.admit(request)
    if failure is not None:
        return failure
    assert body is not None
    refused = refusal(body)
    if refused is not None:
        return refused
    try:
        _, page_tokens = pdf_tokens(documents_of(body))
    except BadPdf as bad:
        return invalid(str(bad), "input")
    view = chat_view(body)
    text, calls = fake.answer(view)
    limit = body.get("max_output_tokens")
    status, incomplete = "completed", None
    if not calls and limit is not None and words(text) > limit:
        text = " ".join(text.split()[:limit])
        status, incomplete = "incomplete", {"reason": "max_output_tokens"}
    input_tokens = words("\n".join(_texts(view["messages"]))) + page_tokens
    input_tokens += image_tokens(images_of(body), preset_for_model(str(body["model"]), GPT_4O))
    try:
        details = fake.cache_details(responses_blocks(body), input_tokens)
    except CacheRefusal as refused_cache:
        return invalid(str(refused_cache), "prompt_cache_options")
    output_tokens = words(text) if text else 5
    answer = Answer(body, status, incomplete, text, calls, input_tokens, output_tokens, details)
    if not body.get("stream"):
        return web.json_response(answer.response(final=True))
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    events = answer.events(fake.pieces)
    failing_at = fake.behaviour.error_stream_after or 0
    in_stream = fake.with_key("The server had an error.", request)
    await fake.paced(response, events, error_event=answer.error_event(failing_at, in_stream))
    return response


def _texts(messages: list[Json]) -> list[str]:
    texts: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(str(part.get("text", "")) for part in content)
    return texts


class Answer:
    """One answer as a Response object and as its stream of events."""

    def __init__(
        self,
        body: Json,
        status: str,
        incomplete: Json | None,
        text: str,
        calls: list[Json],
        input_tokens: int,
        output_tokens: int,
        details: Json,
    ) -> None:
        self.body = body
        self.status = status
        self.incomplete = incomplete
        self.text = text
        self.calls = calls
        self.id = f"resp_{uuid.uuid4().hex}"
        self.created_at = int(time.time())
        self.usage = {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cache_write_tokens": 0, **details},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        }
        self.sequence = 0

    def items(self, *, final: bool) -> list[Json]:
        done = "completed" if final else "in_progress"
        items: list[Json] = []
        if not self.calls:
            items.append(
                {
                    "id": f"msg_{self.id[5:]}",
                    "type": "message",
                    "status": "incomplete" if self.status == "incomplete" else done,
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": self.text, "annotations": []}],
                }
            )
        for call in self.calls:
            items.append(
                {
                    "id": f"fc_{call['id']}",
                    "type": "function_call",
                    "status": done,
                    "call_id": call["id"],
                    "name": call["function"]["name"],
                    "arguments": call["function"]["arguments"],
                }
            )
        return items

    def response(self, *, final: bool) -> Json:
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status if final else "in_progress",
            "error": None,
            "incomplete_details": self.incomplete if final else None,
            "instructions": self.body.get("instructions"),
            "max_output_tokens": self.body.get("max_output_tokens"),
            "model": self.body["model"],
            "output": self.items(final=True) if final else [],
            "parallel_tool_calls": self.body.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "reasoning": self.body.get("reasoning") or {"effort": None, "summary": None},
            "store": self.body.get("store", True),
            "temperature": self.body.get("temperature", 1.0),
            "text": self.body.get("text") or {"format": {"type": "text"}},
            "tool_choice": self.body.get("tool_choice", "auto"),
            "tools": self.body.get("tools") or [],
            "top_p": self.body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": self.usage if final else None,
            "metadata": self.body.get("metadata") or {},
        }

    def event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()

    def error_event(self, sequence: int, message: str) -> bytes:
        """The in-stream error, numbered as the event it takes the place of."""
        self.sequence = sequence
        return self.event("error", code="server_error", message=message, param=None)

    def events(self, pieces: Any) -> list[bytes]:
        events = [
            self.event("response.created", response=self.response(final=False)),
            self.event("response.in_progress", response=self.response(final=False)),
        ]
        for index, item in enumerate(self.items(final=True)):
            opened = {**item, "status": "in_progress"}
            if item["type"] == "message":
                opened["content"] = []
                part = {"type": "output_text", "text": "", "annotations": []}
                events.append(
                    self.event("response.output_item.added", output_index=index, item=opened)
                )
                events.append(
                    self.event(
                        "response.content_part.added",
                        item_id=item["id"],
                        output_index=index,
                        content_index=0,
                        part=part,
                    )
                )
                for piece in pieces(self.text):
                    events.append(
                        self.event(
                            "response.output_text.delta",
                            item_id=item["id"],
                            output_index=index,
                            content_index=0,
                            delta=piece,
                            logprobs=[],
                        )
                    )
                events.append(
                    self.event(
                        "response.output_text.done",
                        item_id=item["id"],
                        output_index=index,
                        content_index=0,
                        text=self.text,
                        logprobs=[],
                    )
                )
                events.append(
                    self.event(
                        "response.content_part.done",
                        item_id=item["id"],
                        output_index=index,
                        content_index=0,
                        part={**part, "text": self.text},
                    )
                )
            else:
                opened["arguments"] = ""
                events.append(
                    self.event("response.output_item.added", output_index=index, item=opened)
                )
                for piece in pieces(item["arguments"]):
                    events.append(
                        self.event(
                            "response.function_call_arguments.delta",
                            item_id=item["id"],
                            output_index=index,
                            delta=piece,
                        )
                    )
                events.append(
                    self.event(
                        "response.function_call_arguments.done",
                        item_id=item["id"],
                        output_index=index,
                        name=item["name"],
                        arguments=item["arguments"],
                    )
                )
            events.append(self.event("response.output_item.done", output_index=index, item=item))
        final = "response.completed" if self.status == "completed" else "response.incomplete"
        events.append(self.event(final, response=self.response(final=True)))
        return events
