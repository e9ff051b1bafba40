"""The provider socket: one implementation per wire protocol, looked up by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import ValidationError

from podium.config import ConfigError, WorkerConfig
from podium.providers.egress import Egress
from podium.providers.quota import QuotaObserver
from podium.secrets import SecretSource
from podium.shared_notes import NoteBoard
from podium.types import (
    ChatRequest,
    ChatResponse,
    Embeddings,
    EmbedRequest,
    EventStream,
    RelayMeter,
    WireStream,
)
from podium.upstream_profile import UpstreamProfile


def options_problems(error: ValidationError) -> str:
    """Each bad option as ``options.<field>: why`` (never the value: it is the user's file)."""
    problems = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if item["loc"]:
            message = f"options.{'.'.join(str(part) for part in item['loc'])}: {message}"
        problems.append(message)
    return "; ".join(problems)


class Provider(Protocol):
    """Speaks one upstream's wire protocol for one worker. ``request.model`` is what the caller
    asked for; a provider always sends its worker's own model name upstream."""

    async def complete(self, request: ChatRequest) -> ChatResponse: ...

    def stream(self, request: ChatRequest) -> EventStream: ...

    async def start(self) -> None:
        """Get ready to serve (load a model, warm a connection). Called once at app start."""

    async def aclose(self) -> None: ...


@runtime_checkable
class CautionedProvider(Provider, Protocol):
    """A provider with something its operator should know before it serves (a limit this
    machine cannot set, say): ``podium workers check`` and ``podium serve`` print it."""

    def warnings(self) -> list[str]: ...


@runtime_checkable
class ProfiledProvider(Provider, Protocol):
    """A provider that knows what its upstream does beyond its worker's configuration: how it
    bills an image (unless the worker sets ``image_tokens``), which images it refuses, whether
    it fetches a PDF by URL (podium/upstream_profile.py)."""

    def upstream_profile(self) -> UpstreamProfile: ...


@runtime_checkable
class EmbeddedProvider(Provider, Protocol):
    """A provider whose model runs inside each Podium process: it answers ``model_slots()``
    calls at once (llama.cpp's parallel slots), and each process has slots of its own. Unless its
    worker's ``limits`` say otherwise, Podium lets in that many calls at a time, counted by
    each process alone, never across replicas."""

    def model_slots(self) -> int: ...


@runtime_checkable
class EmbeddingProvider(Protocol):
    """A provider whose upstream also embeds text, for workers with ``role: embed``."""

    async def embed(self, request: EmbedRequest) -> Embeddings:
        """The vectors, in the inputs' order; the worker's own model name goes upstream."""


class RelayingProvider(Provider, Protocol):
    """A provider that can also hand its upstream's stream over as the upstream's own bytes
    (``wire`` names the format), for a caller that speaks the same one: no decoding into events
    and encoding back. The bytes are whole events; usage comes out as one :class:`WireUsage`."""

    wire: str

    def relay(self, request: ChatRequest, meter: RelayMeter | None = None) -> WireStream:
        """``meter`` is kept up to date with what has been relayed, for the engine's estimate
        of a stream whose usage never came."""
        ...


@dataclass(frozen=True, slots=True)
class ProviderContext:
    worker: WorkerConfig
    http: Egress
    secrets: SecretSource
    data_dir: Path
    # Told what the vendor says is left of the worker's quota (podium/providers/quota.py).
    quota: QuotaObserver | None = None
    # Where the provider leaves notes for the deployment's other processes and replicas
    # (podium/shared_notes.py); shared only once the deployment gives it a store.
    notes: NoteBoard = field(default_factory=NoteBoard)


ProviderFactory = Callable[[ProviderContext], Provider]


class ProviderRegistry:
    """Provider factories by name. Built-ins register through the same hook as plugins."""

    def __init__(self) -> None:
        self._factories: dict[str, ProviderFactory] = {}

    def register(self, name: str, factory: ProviderFactory) -> None:
        self._factories[name] = factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def create(self, context: ProviderContext) -> Provider:
        factory = self._factories.get(context.worker.provider)
        if factory is None:
            raise ConfigError(
                f"worker {context.worker.name!r}: unknown provider {context.worker.provider!r}; "
                f"known providers: {', '.join(self.names())}"
            )
        return factory(context)
