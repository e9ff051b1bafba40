"""A fake OpenAI server: Chat Completions' documented response, chunk, usage and error shapes,
with the knobs of :class:`~podium.testing.fakes.Behaviour`, and the Responses API
(:mod:`podium.testing.responses_fake`)."""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from typing import Any

from aiohttp import web

from podium.image_tokens import GPT_4O, preset_for_model
from podium.testing.fakes import (
    BadPdf,
    Behaviour,
    FakeUpstream,
    Json,
    Quota,
    SentImage,
    data_url_payload,
    echo,
    fake_vector,
    go_duration,
    image_tokens,
    images_refused,
    pdf_tokens,
    words,
)
from podium.testing.prompt_cache import CacheRefusal, Prefix, PromptCache, openai_chat_blocks
from podium.testing.responses_fake import respond
from podium.upstream_profile import OPENAI_IMAGES

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
}


def prompt_of(body: Json) -> str:
    texts: list[str] = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "file":
                    texts.append(pdf_tokens([_file_data(part)])[0])
                else:
                    texts.append(part.get("text", ""))
    return "\n".join(texts)


def _file_data(part: Json) -> str:
    file = part.get("file")
    data = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data, str):
        # Only OpenAI's own uploads could be named by id; none exist here.
        raise BadPdf("Missing required parameter: 'messages.content.file.file_data'.")
    return data_url_payload(data)


def documents_of(body: Json) -> list[str | None]:
    """The base64 of each PDF the messages attach."""
    return [
        _file_data(part)
        for message in body.get("messages", [])
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if isinstance(part, dict) and part.get("type") == "file"
    ]


def images_of(body: Json) -> list[SentImage]:
    """The images the messages attach: a data URL's payload, None for a web URL."""
    images: list[SentImage] = []
    for message in body.get("messages", []):
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "image_url":
                image = part.get("image_url") or {}
                url = image.get("url") if isinstance(image, dict) else None
                data = url if isinstance(url, str) and url.startswith("data:") else None
                images.append((data, image.get("detail") if isinstance(image, dict) else None))
    return images


class FakeOpenAI(FakeUpstream):
    """``prompt_cache`` turns on OpenAI's prompt cache (GPT-5.6 and later: breakpoints, and
    writes reported); without one the fake caches nothing, as older models report."""

    def __init__(
        self, behaviour: Behaviour | None = None, *, prompt_cache: PromptCache | None = None
    ) -> None:
        super().__init__(behaviour)
        self.prompt_cache = prompt_cache

    def cache_details(self, prefix: Prefix, prompt_tokens: int) -> Json:
        """``cached_tokens`` and, with a cache, ``cache_write_tokens`` and their split."""
        if self.prompt_cache is None:
            return {"cached_tokens": 0}
        use = self.prompt_cache.use(prefix)
        read = min(use.read, prompt_tokens)
        written = min(use.total_written, prompt_tokens - read)
        long = min(use.written_long, written)
        return {
            "cached_tokens": read,
            "cache_write_tokens": written,
            "cache_write_tokens_details": {
                "ttl_30m_tokens": written - long,
                "ttl_12h_tokens": long,
            },
        }

    def quota_headers(self, quota: Quota) -> dict[str, str]:
        # OpenAI's: limits, what is left, and durations until each bucket is full ("6m0s").
        return {
            "x-ratelimit-limit-requests": str(quota.requests_limit),
            "x-ratelimit-remaining-requests": str(quota.requests_remaining),
            "x-ratelimit-reset-requests": go_duration(quota.requests_reset),
            "x-ratelimit-limit-tokens": str(quota.tokens_limit),
            "x-ratelimit-remaining-tokens": str(quota.tokens_remaining),
            "x-ratelimit-reset-tokens": go_duration(quota.tokens_reset),
        }

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/responses", self.responses)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_get("/v1/models", self.models)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def error_response(self, status: int, message: str) -> web.Response:
        code = "rate_limit_exceeded" if status == 429 else None
        if status == 401:
            code = "invalid_api_key"
        body = {
            "error": {
                "message": message,
                "type": ERROR_TYPES.get(status, "server_error"),
                "param": None,
                "code": code,
            }
        }
        return web.json_response(body, status=status)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        return await respond(self, request)

    async def embeddings(self, request: web.Request) -> web.Response:
        """Deterministic unit vectors (from each text's hash), in the API's shape; the API's
        400s for a missing model or input, an empty string and a bad encoding format."""
        body, failure = await self.admit(request)
        if failure is not None:
            return failure
        assert body is not None
        if not body.get("model"):
            return self.error_response(400, "you must provide a model parameter")
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            return self.error_response(400, "'$.input' is invalid. Please check the API reference")
        if any(isinstance(text, str) and not text for text in inputs):
            return self.error_response(400, "'$.input' is invalid. Please check the API reference")
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            return self.error_response(400, f"Invalid value for 'encoding_format': {encoding!r}")
        size = int(body.get("dimensions") or 8)
        rows = []
        for index, text in enumerate(inputs):
            vector = fake_vector(json.dumps(text), size)
            embedding: Any = vector
            if encoding == "base64":
                embedding = base64.b64encode(struct.pack(f"<{size}f", *vector)).decode()
            rows.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(words(text) if isinstance(text, str) else len(text) for text in inputs)
        return web.json_response(
            {
                "object": "list",
                "data": rows,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}],
            }
        )

    def answer(self, body: Json) -> tuple[str, list[dict[str, Any]]]:
        if body.get("tools") and self.behaviour.tool_call and body.get("tool_choice") != "none":
            name, arguments = self.behaviour.tool_call
            return "", [
                {
                    "id": f"call_{uuid.uuid4().hex[:12]}",
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            ]
        if self.behaviour.reply is not None:
            return self.behaviour.reply, []
        fmt = body.get("response_format") or {}
        if fmt.get("type") in ("json_object", "json_schema"):
            return json.dumps({"answer": echo(prompt_of(body))}), []
        return echo(prompt_of(body)), []

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body, failure = await self.admit(request)
        if failure is not None:
            return failure
        assert body is not None
        if not isinstance(body.get("messages"), list) or not body.get("model"):
            return self.error_response(400, "messages and model are required")
        try:
            _, page_tokens = pdf_tokens(documents_of(body))
        except BadPdf as bad:
            return self.error_response(400, str(bad))
        refused = images_refused(images_of(body), OPENAI_IMAGES)
        if refused is not None:
            return self.error_response(400, refused)
        prompt_tokens = words(prompt_of(body)) + page_tokens
        prompt_tokens += image_tokens(images_of(body), preset_for_model(body["model"], GPT_4O))
        try:
            details = self.cache_details(openai_chat_blocks(body), prompt_tokens)
        except CacheRefusal as refusal:
            return self.error_response(400, str(refusal))
        details.pop("cache_write_tokens_details", None)  # Chat Completions reports the total
        text, calls = self.answer(body)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        finish = "tool_calls" if calls else "stop"
        if limit is not None and words(text) > limit:
            text = " ".join(text.split()[:limit])
            finish = "length"
        completion_tokens = words(text) if text else 5
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": details,
        }
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if not body.get("stream"):
            message: dict[str, Any] = {
                "role": "assistant",
                "content": text or None,
                "refusal": None,
            }
            if calls:
                message["tool_calls"] = calls
            return web.json_response(
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": created,
                    "model": body["model"],
                    "choices": [
                        {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
                    ],
                    "usage": usage,
                }
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)

        def event(choices: list[Any], **extra: Any) -> bytes:
            data = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": body["model"],
                "choices": choices,
                **extra,
            }
            return f"data: {json.dumps(data)}\n\n".encode()

        events = [
            event(
                [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
            )
        ]
        if calls:
            for index, call in enumerate(calls):
                events.append(
                    event(
                        [
                            {
                                "index": 0,
                                "delta": {
                                    "tool_calls": [
                                        {
                                            "index": index,
                                            "id": call["id"],
                                            "type": "function",
                                            "function": {
                                                "name": call["function"]["name"],
                                                "arguments": "",
                                            },
                                        }
                                    ]
                                },
                                "finish_reason": None,
                            }
                        ]
                    )
                )
                for piece in self.pieces(call["function"]["arguments"]):
                    events.append(
                        event(
                            [
                                {
                                    "index": 0,
                                    "delta": {
                                        "tool_calls": [
                                            {"index": index, "function": {"arguments": piece}}
                                        ]
                                    },
                                    "finish_reason": None,
                                }
                            ]
                        )
                    )
        else:
            for piece in self.pieces(text):
                events.append(
                    event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
                )
        events.append(event([{"index": 0, "delta": {}, "finish_reason": finish}]))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(event([], usage=usage))
        events.append(b"data: [DONE]\n\n")
        await self.paced(response, events)
        return response
