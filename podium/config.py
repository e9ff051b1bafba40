"""One validated configuration, loaded from ``podium.yaml`` and the environment.

Secrets never live here: a worker names the environment variable that holds its key
(``api_key_env``). Every error names the file, the field and why.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from podium.batches.settings import BatchSettings
from podium.cache.settings import CacheSettings
from podium.contracts.settings import ContractsConfig
from podium.costs.config import CostsConfig, check_ascending, reached
from podium.image_tokens import CLAUDE, PRESETS, FlatRule, ImageRule, ImageTokens
from podium.observe.settings import ObserveConfig
from podium.policy.content_settings import ContentPolicySettings
from podium.policy.settings import AccessSettings
from podium.responses.settings import ResponsesSettings
from podium.routing.config import RoutingConfig
from podium.state.settings import RedisSettings
from podium.upstream_profile import UNKNOWN_UPSTREAM, UpstreamProfile

# ``documents``: the worker reads PDFs itself (its layout, tables and figures); the others are
# sent a document's extracted text instead (podium/documents.py). ``citations``: the worker
# cites the documents it reads in Anthropic's format, so a caller that asks for citations is
# sent its plain-text documents as documents too (declare it on Anthropic workers).
Capability = Literal["tools", "json", "vision", "streaming", "documents", "citations"]

DEFAULT_PORT = 8400
DEFAULT_CONFIG_FILE = "podium.yaml"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PriceTier(Strict):
    """The rates of a request whose input passes ``above`` tokens (all of its tokens, as
    Anthropic and Google bill long prompts); unset rates are the base price's."""

    above: int = Field(ge=1)
    input: float | None = Field(None, ge=0)
    output: float | None = Field(None, ge=0)
    cached_input: float | None = Field(None, ge=0)
    cache_write: float | None = Field(None, ge=0)
    cache_write_long: float | None = Field(None, ge=0)


class Price(Strict):
    """USD per one million tokens."""

    input: float = Field(0.0, ge=0)
    output: float = Field(0.0, ge=0)
    cached_input: float | None = Field(None, ge=0)
    # Input written to the upstream's prompt cache, for the standard lifetime (Anthropic's 5
    # minutes, OpenAI's 30) and the long one (an hour; 12 hours). Unset, they are 1.25x and 2x
    # ``input``, Anthropic's rates (OpenAI's standard write is 1.25x too).
    cache_write: float | None = Field(None, ge=0)
    cache_write_long: float | None = Field(None, ge=0)
    # Prompt-cache storage, per 1M tokens per hour: what Gemini bills for an explicit context
    # cache (a ``cachedContents`` resource) while it lives; its tokens x its lifetime in hours
    # x this rate is charged once, to the first answer that used it (the one it was made for).
    cache_storage_per_hour: float = Field(0.0, ge=0)
    # Long-prompt rates (Claude's and Gemini Pro's above 200k input tokens), by threshold.
    tiers: list[PriceTier] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ascending(self) -> Price:
        check_ascending([tier.above for tier in self.tiers])
        return self

    def at(self, input_tokens: int) -> Price:
        """The price of a request of this many input tokens: the highest tier it passes."""
        chosen = reached(self.tiers, input_tokens)
        if chosen is None:
            return self
        rates = chosen.model_dump(exclude={"above"}, exclude_none=True)
        return self.model_copy(update={**rates, "tiers": []})


class DataProfile(Strict):
    """How a worker's vendor handles the data sent to it, and which data classes it may see."""

    vendor: str = "unknown"
    region: str = "unknown"
    retention_days: int | None = Field(None, ge=0)
    trains_on_data: bool = False
    cleared: list[str] = Field(default_factory=lambda: ["public"])
    # Classes this worker may see only once PII is pseudonymised (podium/policy/classify.py).
    pseudonymised: list[str] = Field(default_factory=list)


class Timeouts(Strict):
    """Seconds. ``first_byte`` bounds the wait for the upstream's response head (and, when
    streaming, its first event); ``total`` bounds the whole call."""

    connect: float = Field(5.0, gt=0)
    first_byte: float = Field(60.0, gt=0)
    total: float = Field(600.0, gt=0)


class RetryPolicy(Strict):
    attempts: int = Field(2, ge=0, le=10)  # retries after the first try, on retryable errors
    backoff_base: float = Field(0.25, ge=0)
    backoff_max: float = Field(8.0, ge=0)


class BreakerPolicy(Strict):
    failures: int = Field(5, ge=1)  # consecutive failures that open the circuit
    reset_after: float = Field(30.0, gt=0)  # seconds open before a half-open probe


def _streaming_only() -> list[Capability]:
    return ["streaming"]


class AdaptiveConcurrency(Strict):
    """The calls in flight at once, learned from how fast the worker answers
    (podium/adaptive.py), for a server whose capacity nobody wrote down."""

    min: int = Field(1, ge=1)
    max: int = Field(64, ge=1)
    # How much slower than its best the worker may answer (seconds per answer token) before
    # fewer calls are let in at once.
    tolerance: float = Field(2.0, gt=1, le=10)

    @model_validator(mode="after")
    def _bounds(self) -> AdaptiveConcurrency:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class WorkerLimits(Strict):
    """How much of the worker Podium may use (podium/capacity.py). Unset: no limit."""

    # Calls in flight at once; with the Redis limits backend, across replicas (as rpm and tpm).
    concurrency: int | None = Field(None, ge=1)
    # Instead of ``concurrency``: learn it (``adaptive: {}`` or ``true`` for the defaults).
    adaptive: AdaptiveConcurrency | None = None
    rpm: int | None = Field(None, ge=1)  # requests a minute
    tpm: int | None = Field(None, ge=1)  # tokens a minute (prompt and answer)
    # How long a call waits for room once every other worker it may go to is full too (a full
    # worker is passed over at once while another has room); background work (batches,
    # background responses, the judge) waits longer, since nobody watches it.
    queue_seconds: float = Field(10.0, ge=0, le=600)
    background_queue_seconds: float = Field(300.0, ge=0, le=3600)
    # The most of each limit background work may hold, so it never starves interactive calls.
    background_share: float = Field(0.5, gt=0, le=1)

    @field_validator("adaptive", mode="before")
    @classmethod
    def _adaptive_shorthand(cls, value: object) -> object:
        if value is True:
            return {}
        return None if value is False else value

    @model_validator(mode="after")
    def _one_concurrency(self) -> WorkerLimits:
        if self.concurrency is not None and self.adaptive is not None:
            raise ValueError(
                "set concurrency or adaptive, not both (to learn it instead, set concurrency "
                "to null)"
            )
        return self


# What one PDF page costs, in tokens beyond its text, a worker that reads PDFs itself and has
# no ``document_page_tokens`` of its own: Gemini's documented 258 tokens a page. It is the
# smallest figure a vendor documents (Anthropic bills each page's text and an image of it,
# 1,500-3,000 tokens a page in all; OpenAI also sends an image of every page), so unset, a
# native worker's estimates still count no more than any vendor bills: the context-window fit
# stays a lower bound, and budgets and cost ceilings count pages at least at this.
DEFAULT_DOCUMENT_PAGE_TOKENS = 258


class WorkerConfig(Strict):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    provider: str
    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    aliases: list[str] = Field(default_factory=list)
    price: Price = Field(default_factory=Price)
    context_window: int = Field(8192, gt=0)
    max_output_tokens: int | None = Field(None, gt=0)
    capabilities: list[Capability] = Field(default_factory=_streaming_only)
    # Tokens one PDF page costs this worker beyond the page's text, when it reads PDFs itself
    # (``documents``: vendors bill each page as an image too). None: DEFAULT_DOCUMENT_PAGE_TOKENS.
    document_page_tokens: int | None = Field(None, ge=0)
    # How the worker's upstream counts an image's tokens (podium/image_tokens.py): a preset's
    # name (claude, gpt-4o, gpt-4o-mini, gpt-4.1, gpt-4.1-mini, gpt-4.1-nano, o4-mini, gemini),
    # a number of tokens for every image, or a rule spelled out ({kind: tiles, tile: 448, ...}).
    # None: the rule its provider reports, else Claude's.
    image_tokens: ImageTokens | None = None
    profile: DataProfile = Field(default_factory=DataProfile)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    breaker: BreakerPolicy = Field(default_factory=BreakerPolicy)
    limits: WorkerLimits = Field(default_factory=WorkerLimits)
    quality_prior: float | None = Field(None, ge=0, le=1)
    # "check": the worker only judges or runs what an earlier step wrote (a cascade's check
    # step names the ``examples`` provider, a program's run step the ``python`` one); no
    # router chooses it to answer and no caller can name it. "embed": the worker only embeds
    # text, on POST /v1/embeddings; chat requests never reach it.
    role: Literal["answer", "check", "embed"] = "answer"
    options: dict[str, Any] = Field(default_factory=dict)  # validated by the provider plugin
    # What the worker's provider reports of its upstream (set by the pool).
    _upstream: UpstreamProfile = PrivateAttr(UNKNOWN_UPSTREAM)

    @field_validator("image_tokens", mode="before")
    @classmethod
    def _image_rule_shorthand(cls, value: object) -> object:
        if isinstance(value, str):
            preset = PRESETS.get(value)
            if preset is None:
                raise ValueError(
                    f"unknown image-token preset {value!r}; known: {', '.join(PRESETS)}, a "
                    "number of tokens an image, or a rule (kind: area, tiles, patches or flat)"
                )
            return preset
        if isinstance(value, int) and not isinstance(value, bool):
            return FlatRule(each=value)
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _media_read(self) -> WorkerConfig:
        if self.document_page_tokens is not None and "documents" not in self.capabilities:
            raise ValueError(
                "document_page_tokens: only a worker with the 'documents' capability is sent "
                "PDFs (the others are sent their text); add 'documents' or drop the setting"
            )
        if self.image_tokens is not None and "vision" not in self.capabilities:
            raise ValueError(
                "image_tokens: only a worker with the 'vision' capability is sent images; add "
                "'vision' or drop the setting"
            )
        return self

    @property
    def image_rule(self) -> ImageRule:
        """How this worker is billed for an image: its own ``image_tokens``, else the rule its
        provider reports, else Claude's."""
        own = self.image_tokens
        if own is not None:
            return own
        return self._upstream.image_rule or CLAUDE

    @property
    def upstream(self) -> UpstreamProfile:
        """What the worker's provider reports of its upstream (podium/upstream_profile.py)."""
        return self._upstream

    def use_upstream(self, profile: UpstreamProfile) -> None:
        """Take what the worker's provider reports (kept out of the settings: a change of
        provider must not carry the old one's profile along)."""
        self._upstream = profile

    @property
    def page_image_tokens(self) -> int:
        """Tokens each page of a PDF costs this worker beyond its text: 0 for a worker sent
        documents as text (podium/documents.py's ``for_worker``)."""
        if "documents" not in self.capabilities:
            return 0
        own = self.document_page_tokens
        return DEFAULT_DOCUMENT_PAGE_TOKENS if own is None else own


class CollectorSettings(Strict):
    """The server process's garbage collector (podium/gc_tuning.py)."""

    # Move everything start-up loaded out of the collector's walks (it is still freed by
    # reference counting): full collections then cost what the requests allocate, not the heap.
    freeze_after_start: bool = True
    # CPython's gc.set_threshold: allocations before a young collection, then young
    # collections per middle one, middle per full one. None: CPython's defaults (700, 10, 10).
    # A governed request leaves few objects behind; at 700 the young generation was still
    # collected ~3 times a second at c=1, at 10,000 not once in 48 s (docs/operations.md).
    thresholds: tuple[int, int, int] | None = (10_000, 10, 10)

    @field_validator("thresholds")
    @classmethod
    def _positive(cls, value: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        if value is not None and min(value) < 1:
            raise ValueError("every threshold must be at least 1")
        return value


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    max_body_bytes: int = Field(8 * 1024 * 1024, gt=0)
    workers: int = Field(1, ge=1)
    # Seconds an idle keep-alive connection stays open; connections (plus requests in flight)
    # beyond ``max_connections`` are answered 503 at once, which bounds memory under floods
    # and slow clients (None: no limit). Behind a load balancer, keep_alive should exceed its
    # idle timeout so the balancer closes first.
    keep_alive: int = Field(5, ge=1)
    max_connections: int | None = Field(None, ge=1)
    # Open connections to each worker origin (scheme, host, port), per process; a call beyond
    # it waits for one to come free. Every stream in flight holds one, so this bounds the
    # streams a process relays at once from one upstream (each costs a file descriptor).
    upstream_connections: int = Field(1024, ge=1)
    # The environment variable holding the admin API's key; unset: loopback clients only.
    admin_key_env: str = Field("PODIUM_ADMIN_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # Seconds a request may take to start its answer (routing, retries, fallbacks, a
    # workflow's earlier steps) when the client does not say (podium/deadline.py); None: as
    # long as the workers' own time limits allow.
    request_timeout: float | None = Field(None, gt=0)
    gc: CollectorSettings = Field(default_factory=CollectorSettings)


class StoreConfig(Strict):
    kind: Literal["sqlite", "postgres"] = "sqlite"
    url: str | None = None  # a file path for sqlite, a DSN for postgres
    # PostgreSQL only: the schema Podium's tables live in (created when missing; default: the
    # connection's search_path), and the most connections each server process holds.
    pg_schema: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    pool_size: int = Field(10, ge=1, le=1000)
    # Seconds between a replica's reads of worker-pool changes made through another replica's
    # admin API (drain, add, reprice, remove); 0 turns the polling off.
    sync_interval: float = Field(1.0, ge=0)
    # The trace writer: traces per batch (larger batches share their rollup rows), and the
    # most held in memory (~1.6 KB each without content) before the oldest spill to disk.
    batch_size: int = Field(1024, ge=1)
    flush_interval: float = Field(0.5, gt=0)
    queue_limit: int = Field(10_000, ge=1)
    record_traces: bool = True  # off only to measure the gateway without its recording

    @model_validator(mode="after")
    def _postgres_url(self) -> StoreConfig:
        if self.kind == "postgres" and not self.url:
            raise ValueError("url: kind postgres needs a url (postgresql://user@host:5432/db)")
        return self


class DocumentSettings(Strict):
    """Documents callers attach (podium/documents.py)."""

    # Read a PDF's text layer. Off: PDFs are sent only to workers that declare ``documents``,
    # and the content policy counts them unscanned (``policy.documents_class``).
    extract_text: bool = True
    max_pages: int = Field(100, ge=1)  # Anthropic's limit for a PDF in one request
    # Each PDF is read in a process of its own (podium/pdf_text.py), killed after this long
    # (a PDF built to be slow to parse): the request is refused, naming the document.
    read_timeout_seconds: float = Field(10.0, gt=0)
    reader_memory_mb: int = Field(1024, ge=128)  # the reading process's address space
    # A PDF without text (a scan): its first pages drawn as images for workers that read
    # images but not PDFs (needs the `scans` extra, pypdfium2). 0: never drawn.
    scan_pages: int = Field(10, ge=0, le=100)
    scan_dpi: int = Field(100, ge=36, le=300)
    # What PDFs gave (their text) is remembered by their sha256, up to this much: a PDF sent
    # again (every turn of a conversation about it) is not read again. 0: nothing remembered.
    cache_mb: int = Field(64, ge=0)


class PodiumConfig(Strict):
    data_dir: Path = Path(".podium")
    server: ServerConfig = Field(default_factory=ServerConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    workers: list[WorkerConfig] = Field(default_factory=list)
    default_worker: str | None = None
    aliases: dict[str, str] = Field(default_factory=dict)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    plugins: dict[str, Any] = Field(default_factory=dict)  # per-plugin sections
    access: AccessSettings = Field(default_factory=AccessSettings)  # keys, limits, audit
    policy: ContentPolicySettings = Field(default_factory=ContentPolicySettings)  # data, PII
    observe: ObserveConfig = Field(default_factory=ObserveConfig)  # traces, metrics, dashboard
    costs: CostsConfig = Field(default_factory=CostsConfig)  # price overrides, scenarios
    redis: RedisSettings = Field(default_factory=RedisSettings)  # state shared by replicas
    contracts: ContractsConfig = Field(default_factory=ContractsConfig)  # behaviour contracts
    cache: CacheSettings = Field(default_factory=CacheSettings)  # the response cache
    responses: ResponsesSettings = Field(default_factory=ResponsesSettings)  # stored responses
    batches: BatchSettings = Field(default_factory=BatchSettings)  # message batches
    documents: DocumentSettings = Field(default_factory=DocumentSettings)  # attached PDFs

    @model_validator(mode="after")
    def _names_resolve(self) -> PodiumConfig:
        names = [worker.name for worker in self.workers]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        # These messages start with the field they are about: the check spans fields, so
        # pydantic reports it at the top level.
        if duplicates:
            raise ValueError(f"workers: names must be unique; repeated: {', '.join(duplicates)}")
        known = set(names)
        checkers = {worker.name for worker in self.workers if worker.role == "check"}
        if self.default_worker is not None and self.default_worker not in known:
            raise ValueError(f"default_worker: {self.default_worker!r} is not a configured worker")
        if self.default_worker in checkers:
            raise ValueError(f"default_worker: {self.default_worker!r} only checks (role: check)")
        embedders = {worker.name for worker in self.workers if worker.role == "embed"}
        if self.default_worker in embedders:
            raise ValueError(f"default_worker: {self.default_worker!r} only embeds (role: embed)")
        for alias, target in self.aliases.items():
            if target not in known:
                raise ValueError(f"aliases.{alias}: points at unknown worker {target!r}")
            if target in checkers:
                raise ValueError(f"aliases.{alias}: {target!r} only checks (role: check)")
        for name in self.policy.injection.hardened_workers:
            if name not in known:
                raise ValueError(
                    f"policy.injection.hardened_workers: {name!r} is not a configured worker"
                )
        clash = name_clash(self.workers, self.aliases)
        if clash is not None:
            raise ValueError(clash)
        if self.workers and not any(worker.role == "answer" for worker in self.workers):
            raise ValueError(
                "workers: none can answer (every worker has role: check or role: embed)"
            )
        if self.cache.backend == "redis" and (self.cache.url or self.redis.url) is None:
            raise ValueError("cache.url: the redis backend needs cache.url or redis.url")
        return self

    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()


def name_clash(workers: list[WorkerConfig], aliases: dict[str, str] | None = None) -> str | None:
    """Why a requested model name would mean two workers (an alias that is another worker's
    name, or one alias of two workers), or None. Unchecked, the first match in resolution
    order silently won."""
    means: dict[str, tuple[str, str]] = {}  # model name -> (worker, where it was declared)

    def claim(name: str, worker: str, where: str) -> str | None:
        known = means.setdefault(name, (worker, where))
        if known[0] != worker:
            return f"{where}: {name!r} already means worker {known[0]!r} ({known[1]})"
        return None

    for worker in workers:
        means[worker.name] = (worker.name, "its name")
    for alias, target in (aliases or {}).items():
        if why := claim(alias, target, f"aliases.{alias}"):
            return why
    for worker in workers:
        for alias in worker.aliases:
            if why := claim(alias, worker.name, f"workers.{worker.name}.aliases"):
                return why
    return None


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the source, field and reason."""


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        where = ".".join(str(part) for part in item["loc"])
        lines.append(f"  {where}: {message}" if where else f"  {message}")
    return "\n".join(lines)


def embedded_workers() -> list[WorkerConfig]:
    """The zero-set-up pool: SmolLM2-135M-Instruct running inside Podium, and the static
    MiniLM embedding model Podium ships (for POST /v1/embeddings)."""
    on_premises = DataProfile(
        vendor="podium-local",
        region="on-premises",
        retention_days=0,
        trains_on_data=False,
        cleared=["public", "internal", "confidential", "restricted"],
    )
    return [
        WorkerConfig(
            name="smollm2-135m",
            provider="local",
            model="SmolLM2-135M-Instruct",
            aliases=["smollm2", "local"],
            price=Price(input=0.0, output=0.0),
            context_window=2048,
            capabilities=["streaming", "json"],
            profile=on_premises,
            options={"model": "smollm2-135m"},
        ),
        WorkerConfig(
            name="minilm-static",
            provider="static",
            model="minilm-l6-static256",
            role="embed",
            price=Price(input=0.0, output=0.0),
            context_window=512,
            capabilities=[],
            profile=on_premises,
        ),
    ]


def parse_config(data: dict[str, Any], source: str = "configuration") -> PodiumConfig:
    try:
        config = PodiumConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None
    if not config.workers:
        config.workers = embedded_workers()
    if config.default_worker is None:
        config.default_worker = next(w.name for w in config.workers if w.role == "answer")
    return config


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> PodiumConfig:
    """Read ``path`` (or ``$PODIUM_CONFIG``, or ``./podium.yaml`` when present), then apply
    ``PODIUM_HOST``, ``PODIUM_PORT``, ``PODIUM_SERVER_WORKERS`` and ``PODIUM_DATA_DIR`` from the
    environment."""
    env = dict(os.environ if env is None else env)
    chosen = path or env.get("PODIUM_CONFIG")
    data: dict[str, Any] = {}
    source = "embedded defaults"
    if chosen is None and Path(DEFAULT_CONFIG_FILE).is_file():
        chosen = DEFAULT_CONFIG_FILE
    if chosen is not None:
        file = Path(chosen)
        source = str(file)
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{file}: no such configuration file") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"{file}: not valid YAML: {error}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: the top level must be a mapping of settings")
        data = loaded
    server = dict(data.get("server") or {})
    if "PODIUM_HOST" in env:
        server["host"] = env["PODIUM_HOST"]
    if "PODIUM_PORT" in env:
        server["port"] = env["PODIUM_PORT"]
    if "PODIUM_SERVER_WORKERS" in env:  # set by podium serve --workers for its processes
        server["workers"] = env["PODIUM_SERVER_WORKERS"]
    if server:
        data["server"] = server
    if "PODIUM_DATA_DIR" in env:
        data["data_dir"] = env["PODIUM_DATA_DIR"]
    return parse_config(data, source)
