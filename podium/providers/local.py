"""Open-weight models running inside Podium, through llama.cpp (``xllamacpp``).

llama.cpp's own server runs in-process on a loopback port and speaks the OpenAI protocol, so
this provider is a wrapper: it verifies and loads the model, starts the server, and hands every
call to :class:`~podium.providers.openai.OpenAIProvider` pointed at it.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from podium.config import ConfigError, WorkerConfig
from podium.documents import PDF
from podium.errors import ProviderError
from podium.modelfiles import ModelFileError, PinnedModel, catalogue, resolve, verify
from podium.providers.base import ProviderContext, ProviderRegistry, options_problems
from podium.providers.openai import OpenAIProvider
from podium.types import ChatRequest, ChatResponse, EventStream


class LocalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None  # a name from podium.modelfiles.catalogue()
    path: Path | None = None  # or any GGUF file, which must then be pinned
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    n_ctx: int = Field(4096, ge=256)
    threads: int = Field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)), ge=1)
    parallel: int = Field(2, ge=1, le=64)
    chat_template: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> LocalOptions:
        if (self.model is None) == (self.path is None):
            raise ValueError("give exactly one of options.model (a catalogue name) or options.path")
        if self.path is not None and self.sha256 is None:
            raise ValueError("options.path needs options.sha256: local model files are pinned")
        return self


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class LocalServer:
    """One llama.cpp server thread pool in this process, serving one model on loopback."""

    def __init__(self, model_path: Path, options: LocalOptions) -> None:
        self.model_path = model_path
        self.options = options
        self.port = 0
        self._server: Any = None

    def start(self) -> None:
        import xllamacpp  # heavy native library: imported only when a local worker starts

        params = xllamacpp.CommonParams()
        params.model.path = str(self.model_path)
        params.n_ctx = self.options.n_ctx * self.options.parallel  # per-slot context
        params.n_parallel = self.options.parallel
        params.cpuparams.n_threads = self.options.threads
        params.cpuparams_batch.n_threads = self.options.threads
        params.hostnames = ["127.0.0.1"]
        params.verbosity = -1
        params.warmup = False
        params.use_jinja = True  # the model's own chat template, tool calls included
        if self.options.chat_template:
            params.chat_template = self.options.chat_template
        self.port = _free_port()
        params.port = self.port
        self._server = xllamacpp.Server(params)

    def stop(self) -> None:
        self._server = None  # the server thread stops when its handle is released


class LocalProvider:
    def __init__(self, context: ProviderContext) -> None:
        self.context = context
        self.worker: WorkerConfig = context.worker
        try:
            self.options = LocalOptions.model_validate(context.worker.options)
        except ValidationError as error:
            raise ConfigError(f"worker {self.worker.name!r}: {options_problems(error)}") from None
        self.pinned: PinnedModel | None = None
        if self.options.model is not None:
            self.pinned = catalogue().get(self.options.model)
            if self.pinned is None:
                raise ConfigError(
                    f"worker {self.worker.name!r}: unknown local model {self.options.model!r}; "
                    f"known: {', '.join(sorted(catalogue()))}"
                )
        self._server: LocalServer | None = None
        self._inner: OpenAIProvider | None = None
        self._lock = asyncio.Lock()

    def model_slots(self) -> int:
        return self.options.parallel

    def model_file(self) -> Path:
        """The verified model file; raises :class:`ModelFileError` when missing or mismatched."""
        if self.pinned is not None:
            return resolve(self.pinned, self.context.data_dir / "models")
        assert self.options.path is not None and self.options.sha256 is not None
        path = self.options.path.expanduser()
        if not path.is_file():
            raise ModelFileError(f"no model file at {path}")
        verify(path, self.options.sha256, name=self.worker.name)
        return path

    async def start(self) -> None:
        async with self._lock:
            if self._inner is not None:
                return
            path = await asyncio.to_thread(self.model_file)
            server = LocalServer(path, self.options)
            await asyncio.to_thread(server.start)
            self._server = server
            inner_worker = self.worker.model_copy(
                update={
                    "provider": "openai",
                    "base_url": f"http://127.0.0.1:{server.port}/v1",
                    "api_key_env": None,
                    "options": {},
                }
            )
            self._inner = OpenAIProvider(
                ProviderContext(
                    worker=inner_worker,
                    http=self.context.http,
                    secrets=self.context.secrets,
                    data_dir=self.context.data_dir,
                )
            )

    async def _ready(self, request: ChatRequest) -> OpenAIProvider:
        if request.has_images():
            # The models run here read text only (no multimodal projector is loaded); llama.cpp
            # would answer 500, which counts against the worker. This is the caller's error.
            raise ProviderError(
                "invalid_request",
                f"worker {self.worker.name!r} runs a text-only model and cannot read images",
                worker=self.worker.name,
            )
        if request.attachments and any(part.media_type == PDF for part in request.document_parts()):
            # Declared ``documents`` by mistake: the model reads the text Podium extracts.
            raise ProviderError(
                "invalid_request",
                f"worker {self.worker.name!r} runs a text-only model and cannot read PDFs; "
                "drop 'documents' from its capabilities and it is sent their text",
                worker=self.worker.name,
            )
        if self._inner is None:
            try:
                await self.start()
            except ModelFileError as error:
                raise ProviderError("overloaded", str(error), worker=self.worker.name) from None
        assert self._inner is not None
        return self._inner

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return await (await self._ready(request)).complete(request)

    async def stream(self, request: ChatRequest) -> EventStream:
        inner = await self._ready(request)
        async for event in inner.stream(request):
            yield event

    async def aclose(self) -> None:
        if self._server is not None:
            server, self._server, self._inner = self._server, None, None
            await asyncio.to_thread(server.stop)


def register_providers(providers: ProviderRegistry) -> None:
    providers.register("local", LocalProvider)
