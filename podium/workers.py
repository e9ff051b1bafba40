"""Workers (a provider + a model + prices + a data-handling profile) and the live pool of them.

The pool changes at run time: add, reprice, drain and remove go through
:class:`WorkerPool` without a restart, and requests already running keep the worker they have.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

from podium.breaker import Breaker, CircuitBreaker
from podium.capacity import Capacity, RateBuckets, SharedSlots
from podium.config import ConfigError, Price, WorkerConfig, WorkerLimits, name_clash
from podium.media import request_media
from podium.policy.limits import MemoryLimits
from podium.providers.base import (
    EmbeddedProvider,
    EmbeddingProvider,
    ProfiledProvider,
    Provider,
    ProviderContext,
    ProviderRegistry,
)
from podium.providers.egress import Egress
from podium.secrets import SecretSource
from podium.shared_notes import NoteBoard, SharedNotes
from podium.types import ChatRequest, Message, Tool, Usage

K = TypeVar("K")
V = TypeVar("V")


class Rates(Protocol):
    """What pricing reads of a :class:`Price` (USD per one million tokens)."""

    @property
    def input(self) -> float: ...
    @property
    def output(self) -> float: ...
    @property
    def cached_input(self) -> float | None: ...
    @property
    def tiers(self) -> Sequence[object]: ...
    def at(self, input_tokens: int) -> Rates: ...


@dataclass(frozen=True, slots=True)
class PlainRates:
    """A :class:`Price`'s rates as a plain object: a pydantic model's attributes cost about
    five times a slot's to read, and the cost guard prices several workers a request."""

    input: float
    output: float
    cached_input: float | None
    tiers: tuple[tuple[int, PlainRates], ...] = ()  # (above, rates), ascending

    @classmethod
    def of(cls, price: Price) -> PlainRates:
        tiers = tuple((tier.above, cls.of(price.at(tier.above + 1))) for tier in price.tiers)
        return cls(price.input, price.output, price.cached_input, tiers)

    def at(self, input_tokens: int) -> PlainRates:
        chosen = self
        for above, rates in self.tiers:
            if input_tokens > above:
                chosen = rates
        return chosen


# What a prompt-cache write costs, as a multiple of the input price, when a price leaves it
# unset: Anthropic's rates for its 5-minute and 1-hour caches.
CACHE_WRITE_RATE = 1.25
CACHE_WRITE_LONG_RATE = 2.0


def price_usage(price: Price, usage: Usage) -> float:
    """USD for ``usage`` at ``price`` (per one million tokens; a long prompt at its tier's)."""
    usd = price_tokens(price, usage.input_tokens, usage.output_tokens, usage.cached_input_tokens)
    if usage.cache_write_tokens or usage.cache_write_long_tokens:
        # The tier is read again only here: every read of a pydantic model's field goes
        # through its __getattr__ hook (~400 instructions), and most calls write no cache.
        if price.tiers:
            price = price.at(usage.input_tokens)
        usd += cache_write_premium(price, usage)
    if (
        usage.cache_storage_token_hours
    ):  # Gemini's context caches (podium/providers/gemini_cache.py)
        usd += usage.cache_storage_token_hours * price.cache_storage_per_hour / 1_000_000
    return usd


def cache_write_premium(price: Price, usage: Usage) -> float:
    """What writing to the prompt cache costs above the input price the writes already paid."""
    five = price.cache_write if price.cache_write is not None else price.input * CACHE_WRITE_RATE
    hour = (
        price.cache_write_long
        if price.cache_write_long is not None
        else price.input * CACHE_WRITE_LONG_RATE
    )
    return (
        usage.cache_write_tokens * (five - price.input)
        + usage.cache_write_long_tokens * (hour - price.input)
    ) / 1_000_000


def price_tokens(
    price: Rates, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0
) -> float:
    """:func:`price_usage` without making a Usage: estimates price several workers a request."""
    if price.tiers:
        price = price.at(input_tokens)
    # min(cached_input_tokens, input_tokens), written out: the builtin costs more than this.
    cached = cached_input_tokens if cached_input_tokens < input_tokens else input_tokens
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    return (
        (input_tokens - cached) * price.input + cached * cached_rate + output_tokens * price.output
    ) / 1_000_000


MESSAGE_OVERHEAD_TOKENS = 4  # role markers and separators around each message


def estimate_input_tokens(request: ChatRequest) -> int:
    """A request's input, estimated as :func:`estimate_tokens` does: every message's text and
    tool calls, a few tokens of role markers each, every tool's definition and its documents'
    text. Budgets reserve by it, adding what the images and PDF pages cost each worker
    (podium/media.py), and so do the token-counting endpoints (:func:`count_input_tokens`)."""
    messages = request.messages
    tokens = tokens_for_length(request.prompt_length()) + MESSAGE_OVERHEAD_TOKENS * len(messages)
    if request.attachments:
        tokens += tokens_for_length(request.documents_length())
    for message in messages:
        for call in message.tool_calls:
            tokens += tokens_for_length(len(call.name) + len(call.arguments))
    if request.tools:
        tokens += estimate_tool_tokens(request.tools)
    return tokens


def prompt_tokens(request: ChatRequest, worker: WorkerConfig) -> int:
    """``tokens_for_length(request.prompt_length())``, as ``worker`` would read the request:
    with its documents' text, and what its images and PDF pages cost it
    (podium/media.py)."""
    length = request.prompt_length()
    if not request.attachments and not request.has_images():
        return tokens_for_length(length)
    if request.attachments:
        length += request.documents_length()
    return tokens_for_length(length) + request_media(request).tokens(worker)


def count_input_tokens(request: ChatRequest, worker: WorkerConfig | None) -> int:
    """What the token-counting endpoints answer: :func:`estimate_input_tokens`, plus what the
    request's images and PDF pages cost ``worker`` (the one its model names, else the default
    one); with no worker, its images by Claude's rule."""
    tokens = estimate_input_tokens(request)
    if not request.attachments and not request.has_images():
        return tokens
    media = request_media(request)
    return tokens + (media.unrouted_tokens() if worker is None else media.tokens(worker))


def estimate_message_tokens(message: Message) -> int:
    """One message's share of :func:`estimate_input_tokens` (its text rounded on its own)."""
    tokens = tokens_for_length(message.text_length()) + MESSAGE_OVERHEAD_TOKENS
    for call in message.tool_calls:
        tokens += tokens_for_length(len(call.name) + len(call.arguments))
    return tokens


def estimate_tool_tokens(tools: Iterable[Tool]) -> int:
    """What the tools' definitions add to a request's input."""
    return sum(
        estimate_tokens(f"{tool.name} {tool.description or ''} {tool.parameters}") for tool in tools
    )


def estimate_tokens(text: str) -> int:
    """A cheap token estimate (about four characters a token) for budgets and routing."""
    return tokens_for_length(len(text))


def tokens_for_length(characters: int) -> int:
    """:func:`estimate_tokens` for a text of this many characters."""
    tokens = (characters + 3) // 4
    return tokens if tokens > 1 else 1  # max(1, tokens): the builtin costs 1k instructions


@dataclass(slots=True)
class Worker:
    config: WorkerConfig
    provider: Provider
    breaker: Breaker
    capacity: Capacity  # its limits' room; its provider reports the vendor's quota to it
    draining: bool = False
    in_flight: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name

    def cost(self, usage: Usage) -> float:
        return price_usage(self.config.price, usage)

    @property
    def uses_tokens(self) -> bool:
        """False for a worker that only checks (a program, not a model): a usage of zero is
        then the truth, not an upstream that did not say."""
        return self.config.role == "answer"


BreakerFactory = Callable[[WorkerConfig], Breaker]


class PoolAnswers(Generic[K, V]):
    """Answers worked out from the pool (which workers clear a class, say), kept per key until
    the pool changes: ``WorkerPool.version`` moves with every load, add, update, drain and
    remove. ``compute`` works out the answer for a key."""

    def __init__(self, pool: WorkerPool, compute: Callable[[K], V]) -> None:
        self._pool = pool
        self._compute = compute
        self._answers: dict[K, V] = {}
        self._version = -1

    def get(self, key: K) -> V:
        if self._version != self._pool.version:
            self._answers.clear()
            self._version = self._pool.version
        answers = self._answers
        if key in answers:
            return answers[key]
        answer = answers[key] = self._compute(key)
        return answer


def worker_named(
    model: str,
    workers: Iterable[WorkerConfig],
    aliases: Mapping[str, str],
    role: Literal["answer", "check", "embed"],
) -> WorkerConfig | None:
    """The worker of ``role`` that ``model`` names, by its name, one of its aliases or a
    configured alias; None if none does."""
    target = aliases.get(model, model)
    for worker in workers:
        if worker.role == role and (worker.name == target or model in worker.aliases):
            return worker
    return None


class NameClashError(ConfigError):
    """A worker's name or alias would make a model name mean two workers."""


def limits_for(config: WorkerConfig, provider: Provider) -> WorkerLimits:
    """The worker's limits; for a model running in this process (an :class:`EmbeddedProvider`)
    given no concurrency of its own, calls at once up to its slots. Beyond them a call would
    wait in the server's own line, where no priority holds and no other worker is tried; it
    waits in Podium's instead, as long as it would have waited there (``timeouts.first_byte``)."""
    limits = config.limits
    if (
        isinstance(provider, EmbeddedProvider)
        and limits.concurrency is None
        and limits.adaptive is None
    ):
        wait = max(limits.queue_seconds, config.timeouts.first_byte)
        slots = provider.model_slots()
        return limits.model_copy(update={"concurrency": slots, "queue_seconds": wait})
    return limits


class WorkerPool:
    def __init__(
        self,
        providers: ProviderRegistry,
        *,
        http: Egress,
        secrets: SecretSource,
        data_dir: Path,
        breakers: BreakerFactory | None = None,
    ) -> None:
        self._providers = providers
        self._http = http
        self._secrets = secrets
        self._data_dir = data_dir
        self._breakers: BreakerFactory = breakers or (lambda c: CircuitBreaker(c.breaker))
        self._buckets: RateBuckets = MemoryLimits()
        self._shared: SharedSlots | None = None
        self.notes = NoteBoard()  # every provider's, shared once a store is set
        self._workers: dict[str, Worker] = {}
        self._lock = asyncio.Lock()
        self.aliases: dict[str, str] = {}  # the configuration's own, checked against new names
        # Counts changes (load, add, update, drain, remove): what is worked out from the pool
        # per request can be kept until it moves.
        self.version = 0
        # Called with a worker's name after each change at run time (add, update, drain,
        # remove): replicas publish their changes through these (podium/state/pool_sync.py).
        self.listeners: list[Callable[[str], None]] = []

    def _changed(self, name: str) -> None:
        self.version += 1
        for listener in self.listeners:
            listener(name)

    def set_rate_buckets(self, buckets: RateBuckets) -> None:
        """Where workers' per-minute limits are counted (the key limits' store, shared by
        replicas when it is Redis), for every worker, now and later."""
        self._buckets = buckets
        for worker in self._workers.values():
            worker.capacity.buckets = buckets

    def set_shared_slots(self, shared: SharedSlots) -> None:
        """Count workers' ``limits.concurrency`` across the replicas too (in Redis), for every
        worker, now and later."""
        self._shared = shared
        for worker in self._workers.values():
            if not isinstance(worker.provider, EmbeddedProvider):  # each process has its own
                worker.capacity.shared = shared

    def set_shared_notes(self, store: SharedNotes) -> None:
        """Where every provider's notes go, now and later: shared with the replicas that
        use the same store (Redis)."""
        self.notes.store = store

    def set_breaker_factory(self, breakers: BreakerFactory) -> None:
        """Breakers for workers built from now on (and existing ones, rebuilt here)."""
        self._breakers = breakers
        for worker in self._workers.values():
            worker.breaker = breakers(worker.config)

    def _build(self, config: WorkerConfig) -> Worker:
        capacity = Capacity(config.name, config.limits, self._buckets, shared=self._shared)
        provider = self._providers.create(
            ProviderContext(
                worker=config,
                http=self._http,
                secrets=self._secrets,
                data_dir=self._data_dir,
                quota=capacity.observe,
                notes=self.notes,
            )
        )
        if config.role == "embed" and not isinstance(provider, EmbeddingProvider):
            raise ConfigError(
                f"worker {config.name!r} has role: embed, but its provider "
                f"({config.provider}) cannot embed text; use an OpenAI-compatible one "
                "(provider: openai, vllm, ollama, openai-compatible), gemini or static"
            )
        if isinstance(provider, EmbeddedProvider):
            capacity.shared = None
            capacity.reconfigure(limits_for(config, provider))
        if isinstance(provider, ProfiledProvider):
            config.use_upstream(provider.upstream_profile())
        return Worker(
            config=config, provider=provider, breaker=self._breakers(config), capacity=capacity
        )

    def load(self, configs: list[WorkerConfig]) -> None:
        """Build the pool from configuration (no I/O: providers start in :meth:`start`)."""
        for config in configs:
            self._workers[config.name] = self._build(config)
        self.version += 1

    async def start(self) -> None:
        await asyncio.gather(*(worker.provider.start() for worker in self._workers.values()))

    async def aclose(self) -> None:
        workers, self._workers = list(self._workers.values()), {}
        self.version += 1
        for worker in workers:
            await worker.provider.aclose()

    # -- lookups ------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Worker]:
        return iter(list(self._workers.values()))

    def __len__(self) -> int:
        return len(self._workers)

    def get(self, name: str) -> Worker | None:
        return self._workers.get(name)

    def names(self) -> list[str]:
        return list(self._workers)

    def configs(self) -> list[WorkerConfig]:
        return [worker.config for worker in self._workers.values()]

    def named_or(self, model: str, default: str | None) -> WorkerConfig | None:
        """The answering worker ``model`` names, else the ``default`` one, else None."""
        named = worker_named(model, self.configs(), self.aliases, "answer")
        if named is None and default is not None and default in self._workers:
            return self._workers[default].config
        return named

    def serving(self) -> list[Worker]:
        """Workers that take new requests: not draining."""
        return [worker for worker in self._workers.values() if not worker.draining]

    # -- changes at run time -------------------------------------------------------------------

    def _check_names(self, config: WorkerConfig) -> None:
        others = [w.config for name, w in self._workers.items() if name != config.name]
        clash = name_clash([*others, config], self.aliases)
        if clash is not None:
            raise NameClashError(clash)

    async def add(
        self,
        config: WorkerConfig,
        *,
        start: bool = True,
        check: Callable[[WorkerConfig], None] | None = None,
    ) -> Worker:
        """``check`` may refuse the new worker (by raising) before anything is built."""
        async with self._lock:
            if config.name in self._workers:
                raise ConfigError(f"worker {config.name!r} already exists")
            self._check_names(config)
            if check is not None:
                check(config)
            worker = self._build(config)
            if start:
                await worker.provider.start()
            self._workers[config.name] = worker
        self._changed(config.name)
        return worker

    async def update(
        self,
        name: str,
        changes: dict[str, Any],
        *,
        check: Callable[[WorkerConfig], None] | None = None,
    ) -> Worker:
        """Apply ``changes`` (validated as a whole new config, which ``check`` may refuse).
        Prices, profile and limits change in place; a change of provider, model, URL or key
        makes a new provider."""
        async with self._lock:
            current = self._workers.get(name)
            if current is None:
                raise KeyError(name)
            merged = current.config.model_dump()
            for key, value in changes.items():
                if isinstance(value, dict) and isinstance(merged.get(key), dict):
                    merged[key] = {**merged[key], **value}
                else:
                    merged[key] = value
            merged["name"] = name
            config = WorkerConfig.model_validate(merged)
            self._check_names(config)
            if check is not None:
                check(config)
            connection = ("provider", "model", "base_url", "api_key_env", "options", "timeouts")
            if any(getattr(config, f) != getattr(current.config, f) for f in connection):
                replacement = self._build(config)
                await replacement.provider.start()
                replacement.draining = current.draining
                self._workers[name] = replacement
                asyncio.get_running_loop().create_task(self._close_when_idle(current))
                updated = replacement
            else:
                config.use_upstream(current.config.upstream)
                current.config = config
                limits = limits_for(config, current.provider)
                if limits != current.capacity.limits:
                    current.capacity.reconfigure(limits)
                updated = current
        self._changed(name)
        return updated

    def drain(self, name: str, draining: bool = True) -> Worker:
        worker = self._workers.get(name)
        if worker is None:
            raise KeyError(name)
        worker.draining = draining
        self._changed(name)
        return worker

    async def remove(self, name: str) -> None:
        async with self._lock:
            worker = self._workers.pop(name, None)
            if worker is None:
                raise KeyError(name)
        self._changed(name)
        await self._close_when_idle(worker)

    async def _close_when_idle(self, worker: Worker, *, limit: float = 600.0) -> None:
        waited = 0.0
        while worker.in_flight > 0 and waited < limit:
            await asyncio.sleep(0.1)
            waited += 0.1
        await worker.provider.aclose()
