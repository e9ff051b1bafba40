"""A fake Google Gemini API server (``v1beta``): ``models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse`` with the documented ``GenerateContentResponse``,
``usageMetadata`` and error shapes (``{"error": {"code", "message", "status", "details"}}``,
429 ``RESOURCE_EXHAUSTED`` with a ``RetryInfo`` delay), with the knobs of
:class:`~podium.testing.fakes.Behaviour`.

Like the real API it refuses a missing ``x-goog-api-key`` when a key is required, roles other than
``user`` and ``model``, schema keys Gemini does not know, and function responses that do not
answer the previous turn's function calls.

It keeps explicit context caches too (``cachedContents``: create, get, list, patch, delete), as
the API documents them: a resource holds a model's system instruction, tools, tool config and
contents for a lifetime (``ttl``, default an hour, or ``expireTime``), if they reach the
minimum size (``cache_minimum_tokens``; smaller is a 400); ``generateContent`` with
``cachedContent`` reads it before its own contents and reports it as
``cachedContentTokenCount``. An unknown or expired name is a 404; a system instruction, tools
or tool config beside one, or another model's resource, a 400. ``clock`` (epoch seconds)
expires them; tests move it. Tokens are words, as everywhere in the fakes.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from podium.image_tokens import GEMINI
from podium.providers.gemini_signatures import SKIP_VALIDATOR, needs_signatures
from podium.testing.fakes import (
    BadPdf,
    Behaviour,
    Failure,
    FakeUpstream,
    Json,
    Received,
    SentImage,
    echo,
    fake_vector,
    image_tokens,
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


def images_of(body: Json) -> list[SentImage]:
    """The images the contents attach: inline base64, None for a file by URI."""
    images: list[SentImage] = []
    for content in body.get("contents", []):
        for part in content.get("parts", []) if isinstance(content, dict) else []:
            if not isinstance(part, dict):
                continue
            held = part.get("inlineData") or part.get("fileData")
            if isinstance(held, dict) and str(held.get("mimeType", "")).startswith("image/"):
                images.append((held.get("data") if "data" in held else None, None))
    return images


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


def system_of(body: Json) -> str:
    return " ".join(
        str(part.get("text", "")) for part in (body.get("systemInstruction") or {}).get("parts", [])
    )


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
    return check_contents(body)


def check_contents(body: Json) -> str | None:
    """The roles, the parts, the function calls' responses and the schemas of ``body``."""
    contents = body.get("contents") or []
    if not isinstance(contents, list):
        return "* contents: must be a list"
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


def unsigned_call(contents: list[Json], signed: set[str]) -> str | None:
    """Gemini 3's refusal of a history whose current turn (what follows the last user text)
    sends a function call back without the thought signature it came with: the first call of
    each of its model turns must carry one (a parallel call's others need not). ``contents``
    has passed :func:`check_contents`: each has a role and parts."""
    start = 0
    for index, content in enumerate(contents):
        if content["role"] == "user" and any("text" in part for part in content["parts"]):
            start = index + 1
    for index, content in enumerate(contents[start:], start):
        calls = [part for part in content["parts"] if "functionCall" in part]
        if content["role"] != "model" or not calls:
            continue
        signature = calls[0].get("thoughtSignature")
        if signature != SKIP_VALIDATOR and signature not in signed:
            name = calls[0]["functionCall"].get("name")
            return (
                "Function call is missing a thought_signature in functionCall parts. This is "
                "required for tools to work correctly, and missing thought_signature may lead "
                f"to degraded model performance. Additional data, function call `{name}`, "
                f"position {index + 1}. Please refer to "
                "https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
            )
    return None


CACHE_REFUSED = (
    "CachedContent can not be used with GenerateContent request setting system_instruction, "
    "tools or tool_config.\n\nProposed fix: move those values to CachedContent from "
    "GenerateContent request."
)
CACHE_NOT_FOUND = "CachedContent not found (or permission denied)"
CACHED_FIELDS = ("systemInstruction", "tools", "toolConfig")
DEFAULT_CACHE_TTL = 3600.0  # seconds: the API's default lifetime
_DURATION = re.compile(r"^(\d+(?:\.\d{1,9})?)s$")


def timestamp(seconds: float) -> str:
    """Epoch seconds as the API writes times: RFC 3339 in UTC with microseconds."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass
class CachedContent:
    """One ``cachedContents`` resource, as the fake keeps it."""

    name: str
    model: str
    held: Json  # contents, systemInstruction, tools, toolConfig: as created
    tokens: int
    created: float
    updated: float
    expires: float
    display_name: str | None = None

    def resource(self) -> Json:
        out: Json = {
            "name": self.name,
            "model": self.model,
            "createTime": timestamp(self.created),
            "updateTime": timestamp(self.updated),
            "expireTime": timestamp(self.expires),
            "usageMetadata": {"totalTokenCount": self.tokens},
        }
        if self.display_name is not None:
            out["displayName"] = self.display_name
        return out


class FakeGemini(FakeUpstream):
    def __init__(
        self,
        behaviour: Behaviour | None = None,
        *,
        cache_minimum_tokens: int = 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(behaviour)
        self.cache_minimum_tokens = cache_minimum_tokens
        self.clock = clock
        self.caches: dict[str, CachedContent] = {}
        self.signatures: set[str] = set()  # thought signatures given out with function calls

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1beta/models/{target}", self.generate)
        app.router.add_post("/v1beta/cachedContents", self.create_cache)
        app.router.add_get("/v1beta/cachedContents", self.list_caches)
        app.router.add_get("/v1beta/cachedContents/{id}", self.get_cache)
        app.router.add_patch("/v1beta/cachedContents/{id}", self.update_cache)
        app.router.add_delete("/v1beta/cachedContents/{id}", self.delete_cache)

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

    def stream_error_event(self, request: web.BaseRequest | None) -> bytes:
        message = self.with_key("The model is overloaded.", request)
        error = {"error": {"code": 503, "message": message, "status": "UNAVAILABLE"}}
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

    # -- cachedContents ----------------------------------------------------------------------

    async def admit_any(self, request: web.Request) -> tuple[Json, web.Response | None]:
        """:meth:`admit` for a request that may carry no body (a get, a list, a delete)."""
        if request.can_read_body and (await request.read()).strip():
            body, failure = await self.admit(request)
            return body or {}, failure
        self.received.append(Received(request.path, dict(request.headers), {}))
        if self.behaviour.latency:
            await self._work(self.behaviour.latency)
        if self.behaviour.require_key is not None and not self.key_ok(request):
            return {}, self.error_response(401, self.with_key("invalid credential", request))
        if self.behaviour.failures:
            return {}, self.failure_response(self.behaviour.failures.popleft())
        return {}, None

    def live_cache(self, name: str) -> CachedContent | None:
        """The resource ``name`` if it exists and has not expired (an expired one is gone)."""
        cached = self.caches.get(name)
        if cached is not None and cached.expires <= self.clock():
            del self.caches[name]
            return None
        return cached

    def expiry(self, body: Json, now: float) -> float | str:
        """When a resource asked for by ``body`` expires, or the API's complaint."""
        ttl, expire_time = body.get("ttl"), body.get("expireTime")
        if ttl is not None and expire_time is not None:
            return "Only one of ttl or expire_time may be set."
        if expire_time is not None:
            expires = parse_timestamp(expire_time)
            if expires is None:
                return f"Invalid value at 'cached_content.expire_time' ({expire_time})"
            if expires <= now:
                return "expire_time must be in the future."
            return expires
        if ttl is None:
            return now + DEFAULT_CACHE_TTL
        match = _DURATION.match(str(ttl))
        if match is None:
            return f"Invalid value at 'cached_content.ttl' ({ttl}): a duration such as '300s'"
        if float(match.group(1)) <= 0:
            return "ttl must be positive."
        return now + float(match.group(1))

    async def create_cache(self, request: web.Request) -> web.Response:
        body, failure = await self.admit(request)
        if failure is not None:
            return failure
        assert body is not None
        model = body.get("model")
        if not isinstance(model, str) or not model.startswith("models/"):
            return self.error_response(
                400,
                "* CreateCachedContentRequest.cached_content.model: a model is required "
                "(models/{model})",
            )
        problem = check_contents(body)
        if problem is not None:
            return self.error_response(400, problem)
        now = self.clock()
        expires = self.expiry(body, now)
        if isinstance(expires, str):
            return self.error_response(400, expires)
        held = {key: body[key] for key in ("contents", *CACHED_FIELDS) if key in body}
        try:
            _, page_tokens = pdf_tokens(documents_of(held))
        except BadPdf as bad:
            return self.error_response(400, f"Request contains an invalid argument: {bad}")
        text = prompt_of(held) + " " + system_of(held)
        tokens = (words(text) if text.strip() else 0) + page_tokens
        if tokens < self.cache_minimum_tokens:
            return self.error_response(
                400,
                f"Cached content is too small. total_token_count={tokens}, "
                f"min_total_token_count={self.cache_minimum_tokens}",
            )
        name = f"cachedContents/{secrets.token_hex(6)}"
        display = body.get("displayName")
        self.caches[name] = CachedContent(
            name, model, held, tokens, now, now, expires, None if display is None else str(display)
        )
        return web.json_response(self.caches[name].resource())

    async def get_cache(self, request: web.Request) -> web.Response:
        _, failure = await self.admit_any(request)
        if failure is not None:
            return failure
        cached = self.live_cache(f"cachedContents/{request.match_info['id']}")
        if cached is None:
            return self.error_response(404, CACHE_NOT_FOUND)
        return web.json_response(cached.resource())

    async def list_caches(self, request: web.Request) -> web.Response:
        _, failure = await self.admit_any(request)
        if failure is not None:
            return failure
        try:
            size = min(1000, max(1, int(request.query.get("pageSize") or 100)))
            start = int(request.query.get("pageToken") or 0)
        except ValueError:
            return self.error_response(400, "Invalid pageSize or pageToken.")
        names = [name for name in list(self.caches) if self.live_cache(name) is not None]
        page = names[start : start + size]
        out: Json = {}
        if page:
            out["cachedContents"] = [self.caches[name].resource() for name in page]
        if start + size < len(names):
            out["nextPageToken"] = str(start + size)
        return web.json_response(out)

    async def update_cache(self, request: web.Request) -> web.Response:
        body, failure = await self.admit(request)
        if failure is not None:
            return failure
        assert body is not None
        cached = self.live_cache(f"cachedContents/{request.match_info['id']}")
        if cached is None:
            return self.error_response(404, CACHE_NOT_FOUND)
        others = sorted(set(body) - {"ttl", "expireTime", "name"})
        if others or not ({"ttl", "expireTime"} & set(body)):
            return self.error_response(
                400, "Only the expiration (ttl or expire_time) of a CachedContent can be updated."
            )
        now = self.clock()
        expires = self.expiry(body, now)
        if isinstance(expires, str):
            return self.error_response(400, expires)
        cached.expires, cached.updated = expires, now
        return web.json_response(cached.resource())

    async def delete_cache(self, request: web.Request) -> web.Response:
        _, failure = await self.admit_any(request)
        if failure is not None:
            return failure
        name = f"cachedContents/{request.match_info['id']}"
        if self.live_cache(name) is None:
            return self.error_response(404, CACHE_NOT_FOUND)
        del self.caches[name]
        return web.json_response({})

    def with_cache(self, body: Json, model: str) -> tuple[Json, CachedContent | None] | str:
        """``body`` as the model reads it: after the contents of the resource it names, with the
        resource's system instruction and tools. Or the API's complaint, and its status."""
        name = body.get("cachedContent")
        if name is None:
            return body, None
        if any(field in body for field in CACHED_FIELDS):
            return CACHE_REFUSED
        cached = self.live_cache(str(name))
        if cached is None:
            return CACHE_NOT_FOUND
        if cached.model != f"models/{model}":
            return (
                f"Model used by GenerateContent request (models/{model}) and CachedContent "
                f"({cached.model}) has to be the same."
            )
        merged = {**body, **cached.held}
        merged["contents"] = [*cached.held.get("contents", []), *body.get("contents", [])]
        return merged, cached

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
        read = self.with_cache(body, model)
        if isinstance(read, str):
            return self.error_response(404 if read == CACHE_NOT_FOUND else 400, read)
        own = body  # what the request itself sent (beside a resource: its own contents)
        body, cached = read
        problem = check_contents(body) if cached is not None else None
        if problem is not None:
            return self.error_response(400, problem)
        try:
            _, page_tokens = pdf_tokens(documents_of(own))
        except BadPdf as bad:
            return self.error_response(400, f"Request contains an invalid argument: {bad}")
        signing = needs_signatures(model)  # Gemini 3 and later sign their calls
        unsigned = unsigned_call(body["contents"], self.signatures) if signing else None
        if unsigned is not None:
            return self.error_response(400, unsigned)
        text, calls = self.answer(body)
        if signing and calls:
            signature = secrets.token_urlsafe(24)
            self.signatures.add(signature)
            calls[0] = {**calls[0], "thoughtSignature": signature}
        config = body.get("generationConfig") or {}
        finish = "STOP"
        for sequence in config.get("stopSequences") or []:
            if sequence in text:
                text = text[: text.index(sequence)]
        limit = config.get("maxOutputTokens")
        if limit is not None and text and words(text) > limit:
            text, finish = " ".join(text.split()[:limit]), "MAX_TOKENS"
        pictured = image_tokens(images_of(own), GEMINI)
        if cached is None:
            prompt_tokens = words(prompt_of(body) + " " + system_of(body)) + page_tokens
        else:
            prompt_tokens = cached.tokens + words(prompt_of(own)) + page_tokens
        output_tokens = words(text) if text else 5
        details = [{"modality": "TEXT", "tokenCount": prompt_tokens}]
        if pictured:
            details.append({"modality": "IMAGE", "tokenCount": pictured})
        prompt_tokens += pictured
        usage: Json = {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": prompt_tokens + output_tokens,
            "promptTokensDetails": details,
        }
        if cached is not None:
            usage["cachedContentTokenCount"] = cached.tokens
            usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached.tokens}]
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
