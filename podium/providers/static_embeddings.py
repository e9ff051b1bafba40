"""Embeddings computed inside Podium (``provider: static``, ``role: embed``): the static
MiniLM model Podium ships for its own routers (``model: minilm-l6-static256``, 256 dimensions,
distilled from all-MiniLM-L6-v2 with model2vec), or any model2vec folder (``options.path``).

A text's vector is the mean of its tokens' rows, L2-normalised: no network, no GPU, a few
microseconds a text. It reads at most the model's first 512 tokens of a text. Quality is a
static model's: good for routing, deduplication and small retrieval sets, below a transformer
embedding model's.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, ConfigDict, ValidationError

from podium.config import ConfigError
from podium.errors import ProviderError
from podium.providers.base import ProviderContext, ProviderRegistry, options_problems
from podium.routing.embeddings import DEFAULT_MODEL, StaticEmbedder, models_dir
from podium.types import ChatRequest, ChatResponse, Embeddings, EmbedRequest, EventStream, Usage

# More texts than this are encoded on a thread, not on the event loop.
LOOP_BATCH = 64


class StaticOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str | None = None  # a model2vec folder (vectors.npy, tokenizer.json, meta.json)


class StaticEmbeddingProvider:
    def __init__(self, context: ProviderContext) -> None:
        worker = context.worker
        if worker.role != "embed":
            raise ConfigError(
                f"worker {worker.name!r}: provider static only embeds text; give it role: embed"
            )
        try:
            options = StaticOptions.model_validate(worker.options)
        except ValidationError as error:
            raise ConfigError(f"worker {worker.name!r}: {options_problems(error)}") from None
        if options.path is None and worker.model != DEFAULT_MODEL:
            raise ConfigError(
                f"worker {worker.name!r}: provider static ships model {DEFAULT_MODEL!r}; "
                f"for another, give options.path (a model2vec folder)"
            )
        self.worker = worker.name
        self._path = options.path or str(models_dir() / DEFAULT_MODEL)
        self._embedder: StaticEmbedder | None = None

    async def start(self) -> None:
        await self._load()

    async def _load(self) -> StaticEmbedder:
        if self._embedder is None:
            self._embedder = await asyncio.to_thread(StaticEmbedder.load, self._path)
        return self._embedder

    async def embed(self, request: EmbedRequest) -> Embeddings:
        embedder = await self._load()
        if request.dimensions is not None and request.dimensions != embedder.dim:
            raise ProviderError(
                "invalid_request",
                f"worker {self.worker!r} makes {embedder.dim}-dimensional vectors and cannot "
                f"shorten them to {request.dimensions}",
                worker=self.worker,
            )
        texts = request.inputs
        if len(texts) > LOOP_BATCH:
            vectors, counts = await asyncio.to_thread(embedder.encode_counted, texts)
        else:
            vectors, counts = embedder.encode_counted(texts)
        return Embeddings(vectors.tolist(), Usage(sum(counts), 0))

    async def complete(self, request: ChatRequest) -> ChatResponse:
        raise self._only_embeds()

    async def stream(self, request: ChatRequest) -> EventStream:
        raise self._only_embeds()
        yield  # an async generator, as the socket expects

    def _only_embeds(self) -> ProviderError:
        return ProviderError(
            "invalid_request", f"worker {self.worker!r} only embeds text", worker=self.worker
        )

    async def aclose(self) -> None:
        return None


def register_providers(providers: ProviderRegistry) -> None:
    providers.register("static", StaticEmbeddingProvider)
