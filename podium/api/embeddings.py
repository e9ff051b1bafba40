"""OpenAI embeddings ingress: ``POST /v1/embeddings``, answered by workers with ``role: embed``
(podium/embedding.py), in OpenAI's format: vectors as floats or, as the OpenAI SDK asks by
default, as base64 little-endian float32."""

from __future__ import annotations

import base64
import struct
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError

from podium.api.http import Handler, Request, Response
from podium.api.ingress import refuse_provider_fields
from podium.api.openai import OpenAIIngress, Wire, validation_error
from podium.batches.endpoints import ContextFactory, batch_endpoints
from podium.context import RequestContext
from podium.embedding import EmbeddingPath
from podium.errors import PodiumError
from podium.gateway import total_cost
from podium.types import EmbedRequest, JSONObject

if TYPE_CHECKING:
    from podium.app import Podium
    from podium.gateway import Gateway

MAX_INPUTS = 2048  # OpenAI's limit for one request


class EmbeddingsIn(Wire):
    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


def parse(body: Any) -> tuple[EmbedRequest, str]:
    """The canonical request and the encoding the caller wants the vectors in."""
    if not isinstance(body, dict):
        raise PodiumError("invalid_request", "request body must be a JSON object")
    try:
        wire = EmbeddingsIn.model_validate(body)
    except ValidationError as error:
        raise validation_error(error) from None
    inputs = [wire.input] if isinstance(wire.input, str) else wire.input
    if not inputs:
        raise PodiumError("invalid_request", "'input' must not be empty", param="input")
    if len(inputs) > MAX_INPUTS:
        raise PodiumError(
            "invalid_request",
            f"'input' may hold at most {MAX_INPUTS} texts, not {len(inputs)}",
            param="input",
        )
    texts: list[str] = []
    for index, text in enumerate(inputs):
        if not isinstance(text, str):
            raise PodiumError(
                "invalid_request",
                "'input' must be text: token ids are not accepted, since each embedding "
                "worker has its own tokenizer",
                param="input",
                code="unsupported_input",
            )
        if not text:
            raise PodiumError(
                "invalid_request", f"'input[{index}]' is an empty string", param=f"input[{index}]"
            )
        texts.append(text)
    return EmbedRequest(wire.model, texts, wire.dimensions, wire.user), wire.encoding_format


def encode(vector: list[float], encoding: str) -> Any:
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def answer(vectors: list[list[float]], encoding: str, worker: str, usage: JSONObject) -> JSONObject:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": encode(vector, encoding)}
            for index, vector in enumerate(vectors)
        ],
        "model": worker,
        "usage": usage,
    }


def embeddings_handler(
    gateway: Gateway, path: EmbeddingPath, limit: int, contexts: ContextFactory
) -> Handler:
    """The handler of ``POST /v1/embeddings``, its contexts made by ``contexts`` (a batch's
    requests run under the key that created the batch: podium/batches/endpoints.py)."""
    errors = OpenAIIngress()

    async def embeddings(http: Request) -> Response:
        context = contexts("embeddings", http.headers)
        try:
            body = await http.json(limit)
            if isinstance(body, dict):
                refuse_provider_fields(body, http.headers)
            request, encoding = parse(body)
        except PodiumError:
            # As on the chat endpoints: who is calling is answered before what they sent.
            await gateway.authenticate(context)
            raise
        try:
            outcome = await path.embed(request, context)
        except PodiumError as error:
            response = errors.render_error(error)
            response.headers.setdefault("x-podium-trace-id", context.trace_id)
            return response
        tokens = outcome.embeddings.usage.input_tokens
        usage = {
            "prompt_tokens": tokens,
            "total_tokens": tokens,
            "cost_usd": total_cost(outcome.run.attempts),
        }
        body = answer(outcome.embeddings.vectors, encoding, outcome.worker, usage)
        return Response.json(body, headers=outcome.headers(context))

    return embeddings


def register_app(podium: Podium) -> None:
    limit = podium.config.server.max_body_bytes
    path = EmbeddingPath(podium.gateway, podium.engine)
    handler = embeddings_handler(podium.gateway, path, limit, RequestContext)
    podium.app.route("POST", "/v1/embeddings", handler, OpenAIIngress())
    batch_endpoints(podium).add(
        "/v1/embeddings",
        lambda contexts: embeddings_handler(podium.gateway, path, limit, contexts),
    )
