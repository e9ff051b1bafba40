"""A fake Google Gemini API server (``v1beta``): ``models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse`` with the documented ``GenerateContentResponse``,
``usageMetadata`` and error shapes (``{"error": {"code", "message", "status", "details"}}``,
429 ``RESOURCE_EXHAUSTED`` with a ``RetryInfo`` delay), with the knobs of
:class:`~podium.testing.fakes.Behaviour`.

Like the real API it refuses a missing ``x-goog-api-key`` when a key is required, roles other than
``user`` and ``model``, schema keys Gemini does not know, and function responses that do not
answer the previous turn's function calls.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from aiohttp import web

from podium.testing.fakes import (
    BadPdf,
    Failure,
    FakeUpstream,
    Json,
    echo,
    fake_vector,
    pdf_tokens,
    words,
)

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

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


def _is_pdf(part: Json) -> bool:
    blob = part.get("inlineData") or part.get("fileData") or {}
    return isinstance(blob, dict) and blob.get("mimeType") == "application/pdf"


def _pdf_data(part: Json) -> str | None:
    """An inline PDF's base64 (None: a file by URI, not fetched)."""
    inline = part.get("inlineData")
    return str(inline.get("data", "")) if isinstance(inline, dict) else None


def documents_of(body: Json) -> list[str | None]:
    return [
        _pdf_data(part)
        for content in body.get("contents", [])
        if isinstance(content, dict)
        for part in content.get("parts", [])
        if isinstance(part, dict) and _is_pdf(part)
    ]


def prompt_of(body: Json) -> str:
    texts: list[str] = []
    for content in body.get("contents", []):
        for part in content.get("parts", []) if isinstance(content, dict) else []:
            if "text" in part:
                texts.append(str(part["text"]))
            elif _is_pdf(part):
                texts.append(pdf_tokens([_pdf_data(part)])[0])
            elif "functionResponse" in part:
                response = part["functionResponse"].get("response") or {}
                texts.append(str(response.get("output", response.get("error", response))))
    return "\n".join(texts)


def _schema_problem(schema: Any, where: str) -> str | None:
    if not isinstance(schema, dict):
        return None
    for key, value in schema.items():
        if key not in SCHEMA_KEYS:
            return f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}'"
        if key == "type" and not isinstance(value, str):
            return f"Invalid value at '{where}.type'"
        nested: list[tuple[Any, str]] = []
        if key == "properties" and isinstance(value, dict):
            nested = [(sub, f"{where}.properties[{name}]") for name, sub in value.items()]
        elif key == "items":
            nested = [(value, f"{where}.items")]
        for sub, path in nested:
            problem = _schema_problem(sub, path)
            if problem:
                return problem
    return None


def check_request(body: Json) -> str | None:
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    pending = 0
    for index, content in enumerate(contents):
        role = content.get("role") if isinstance(content, dict) else None
        if role not in ("user", "model"):
            return f"Please use a valid role: user, model. (contents[{index}])"
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            return f"* GenerateContentRequest.contents[{index}].parts: must not be empty."
        responses = sum(1 for part in parts if "functionResponse" in part)
        if pending and responses != pending:
            return (
                "Please ensure that the number of function response parts is equal to the number "
                "of function call parts of the function call turn."
            )
        pending = sum(1 for part in parts if "functionCall" in part) if role == "model" else 0
    for group in body.get("tools") or []:
        for index, declaration in enumerate(group.get("functionDeclarations") or []):
            problem = _schema_problem(
                declaration.get("parameters"),
                f"tools[0].function_declarations[{index}].parameters",
            )
            if problem:
                return problem
    config = body.get("generationConfig") or {}
    return _schema_problem(config.get("responseSchema"), "generation_config.response_schema")


class FakeGemini(FakeUpstream):
    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1beta/models/{target}", self.generate)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1beta"

    def key_ok(self, request: web.Request) -> bool:
        given = request.headers.get("x-goog-api-key") or request.query.get("key")
        return given == self.behaviour.require_key

    def error_response(self, status: int, message: str) -> web.Response:
        error: Json = {
            "code": status,
            "message": message,
            "status": STATUS_NAMES.get(status, "INTERNAL"),
        }
        return web.json_response({"error": error}, status=status)

    def failure_response(self, failure: Failure) -> web.Response:
        """Gemini says when to retry inside the body (``RetryInfo``), not in a header."""
        error: Json = {
            "code": failure.status,
            "message": failure.message,
            "status": STATUS_NAMES.get(failure.status, "INTERNAL"),
        }
        if failure.retry_after is not None:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{failure.retry_after:g}s",
                }
            ]
        return web.json_response({"error": error}, status=failure.status)

    def stream_error_event(self) -> bytes:
        error = {
            "error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}
        }
        return f"data: {json.dumps(error)}\r\n\r\n".encode()

    def answer(self, body: Json) -> tuple[str, list[dict[str, Any]]]:
        config = ((body.get("toolConfig") or {}).get("functionCallingConfig")) or {}
        declared = [
            declaration["name"]
            for group in body.get("tools") or []
            for declaration in group.get("functionDeclarations") or []
        ]
        if declared and self.behaviour.tool_call and config.get("mode") != "NONE":
            name, arguments = self.behaviour.tool_call
            return "", [{"functionCall": {"name": name, "args": json.loads(arguments)}}]
        if self.behaviour.reply is not None:
            return self.behaviour.reply, []
        if (body.get("generationConfig") or {}).get("responseMimeType") == "application/json":
            return json.dumps({"answer": echo(prompt_of(body))}), []
        return echo(prompt_of(body)), []

    async def embed(self, request: web.Request, model: str) -> web.Response:
        """``:batchEmbedContents``: a deterministic unit vector per text, and the API's 400s
        for a request whose model differs from the URL's or whose content has no text."""
        body, failure = await self.admit(request)
        if failure is not None:
            return failure
        assert body is not None
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return self.error_response(400, "* BatchEmbedContentsRequest.requests: required")
        vectors = []
        for index, one in enumerate(requests):
            if one.get("model") != f"models/{model}":
                return self.error_response(
                    400,
                    f"Model name in requests[{index}] must match the model in the URL "
                    f"(models/{model})",
                )
            parts = (one.get("content") or {}).get("parts") or []
            text = "".join(str(part.get("text", "")) for part in parts)
            if not text:
                return self.error_response(400, f"* requests[{index}].content: text is empty")
            size = int(one.get("outputDimensionality") or 8)
            vectors.append({"values": fake_vector(json.dumps(text), size)})
        return web.json_response({"embeddings": vectors})

    async def generate(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].partition(":")
        if method == "batchEmbedContents":
            return await self.embed(request, model)
        if method not in ("generateContent", "streamGenerateContent"):
            return self.error_response(404, f"method {method!r} is not found")
        streaming = method == "streamGenerateContent"
        body, failure = await self.admit(request)
        if failure is not None:
            return failure
        assert body is not None
        problem = check_request(body)
        if problem is not None:
            return self.error_response(400, problem)
        try:
            _, page_tokens = pdf_tokens(documents_of(body))
        except BadPdf as bad:
            return self.error_response(400, f"Request contains an invalid argument: {bad}")
        text, calls = self.answer(body)
        config = body.get("generationConfig") or {}
        finish = "STOP"
        for sequence in config.get("stopSequences") or []:
            if sequence in text:
                text = text[: text.index(sequence)]
        limit = config.get("maxOutputTokens")
        if limit is not None and text and words(text) > limit:
            text, finish = " ".join(text.split()[:limit]), "MAX_TOKENS"
        system = " ".join(
            str(part.get("text", ""))
            for part in (body.get("systemInstruction") or {}).get("parts", [])
        )
        prompt_tokens = words(prompt_of(body) + " " + system) + page_tokens
        output_tokens = words(text) if text else 5
        usage = {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": prompt_tokens + output_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
        }
        ident = uuid.uuid4().hex[:22]
        if not streaming:
            parts: list[Json] = ([{"text": text}] if text else []) + calls
            return web.json_response(
                self._chunk(ident, model, parts, finish, usage),
            )
        if request.query.get("alt") != "sse":
            return self.error_response(400, "this fake streams only with alt=sse")
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        pieces = [[{"text": piece}] for piece in self.pieces(text)] if text else []
        pieces.extend([call] for call in calls)
        pieces = pieces or [[{"text": ""}]]
        events: list[bytes] = []
        partial = {**usage, "candidatesTokenCount": 0}
        partial.pop("totalTokenCount")
        for index, parts in enumerate(pieces):
            last = index == len(pieces) - 1
            chunk = self._chunk(
                ident, model, parts, finish if last else None, usage if last else partial
            )
            events.append(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
        await self.paced(response, events)
        return response

    @staticmethod
    def _chunk(ident: str, model: str, parts: list[Json], finish: str | None, usage: Json) -> Json:
        candidate: Json = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish is not None:
            candidate["finishReason"] = finish
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": model,
            "responseId": ident,
        }
