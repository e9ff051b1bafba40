"""``create_app(config)`` builds everything: no module-level state, so tests can build many
gateways side by side in one process."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from podium.api.admin import AdminAuth
from podium.api.http import App, Request, Response
from podium.api.ingress import chat_handler
from podium.api.models import ModelSource
from podium.api.openai import OpenAIIngress
from podium.batches.endpoints import batch_endpoints
from podium.config import PodiumConfig, load_config
from podium.engine import Engine
from podium.executor import WorkflowExecutor
from podium.gateway import Gateway
from podium.gc_tuning import tune_collector
from podium.hooks import Hook
from podium.observe.recorder import TraceRecorder
from podium.plugins import load_plugins
from podium.policy.audit import AuditTrail
from podium.policy.audit_store import build_trail
from podium.policy.secrets import secret_sources
from podium.providers.base import ProviderRegistry
from podium.providers.egress import Egress
from podium.routing.base import Router
from podium.routing.chain import Routing, build_routing
from podium.secrets import SecretSource
from podium.store.factory import create_store
from podium.store.traces import TraceStore
from podium.workers import WorkerPool


@dataclass
class Podium:
    """The running gateway's parts, for handlers, plugins and tests."""

    config: PodiumConfig
    app: App
    http: Egress
    providers: ProviderRegistry
    pool: WorkerPool
    store: TraceStore
    recorder: TraceRecorder
    engine: Engine
    executor: WorkflowExecutor
    gateway: Gateway
    secrets: SecretSource
    plugins: list[ModuleType] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    # The router chain from ``routing.chain`` and what it was built from (podium/routing/chain.py).
    routing: Routing | None = None
    # Who may use /admin/...; None until the admin plugin installs its default (see api/admin.py).
    admin_auth: AdminAuth | None = None
    # Models a plugin adds to GET /v1/models (contracts add ``contract/NAME``): api/models.py.
    model_sources: list[ModelSource] = field(default_factory=list)
    # The tamper-evident log: ``podium.audit.record(actor, action, target, details)`` for every
    # admin action and every request refused, redacted or rerouted (podium/policy/audit.py).
    audit: AuditTrail | None = None

    @property
    def routers(self) -> list[Router]:
        return self.gateway.routers

    @property
    def hooks(self) -> list[Hook]:
        return self.gateway.hooks


def create_podium(
    config: PodiumConfig,
    *,
    secrets: SecretSource | None = None,
    plugins: list[ModuleType] | None = None,
    start_workers: bool = True,
    tune_gc: bool = False,
) -> Podium:
    data_dir = config.resolved_data_dir()
    # Provider keys: the environment, then the encrypted store when a master key is set.
    secrets = secrets or secret_sources(
        config.access.secrets_path(data_dir), config.access.secrets.master_key_env
    )
    modules = plugins if plugins is not None else load_plugins()
    providers = ProviderRegistry()
    for module in modules:
        register = getattr(module, "register_providers", None)
        if register is not None:
            register(providers)
    http = Egress(limit_per_origin=config.server.upstream_connections)
    pool = WorkerPool(providers, http=http, secrets=secrets, data_dir=data_dir)
    pool.aliases = dict(config.aliases)
    pool.load(config.workers)
    store: TraceStore = create_store(config.store, data_dir)
    recorder = TraceRecorder(
        store,
        spill_path=data_dir / "traces-spill.jsonl",
        batch_size=config.store.batch_size,
        flush_interval=config.store.flush_interval,
        queue_limit=config.store.queue_limit,
    )
    engine = Engine(pool)
    executor = WorkflowExecutor(engine)
    routing = build_routing(config, modules, data_dir=data_dir)
    gateway = Gateway(
        pool,
        routing.routers,
        executor,
        hooks=routing.hooks,
        router_timeout=routing.timeout,
        default_worker=config.default_worker,
        record=recorder.record if config.store.record_traces else None,
        request_timeout=config.server.request_timeout,
    )
    app = App()
    podium = Podium(
        config=config,
        app=app,
        http=http,
        providers=providers,
        pool=pool,
        store=store,
        recorder=recorder,
        engine=engine,
        executor=executor,
        gateway=gateway,
        secrets=secrets,
        plugins=modules,
        routing=routing,
        audit=build_trail(config.access, store, data_dir),
    )
    app.state["podium"] = podium
    _routes(podium)
    for module in modules:
        register_app = getattr(module, "register_app", None)
        if register_app is not None:
            register_app(podium)

    async def startup() -> None:
        await store.open()
        recorder.start()
        if start_workers:
            await pool.start()
        if tune_gc:  # last: everything start-up loaded is in the heap by now
            tune_collector(config.server.gc)

    async def shutdown() -> None:
        await gateway.drain_background()
        if podium.audit is not None:
            await podium.audit.aclose()
        await recorder.close()
        await store.close()
        await pool.aclose()
        await http.aclose()

    # The core opens first and closes last (shutdown hooks run in reverse): what plugins run
    # (background responses, feedback, state sync) can still write to the store as they stop.
    app.on_startup.insert(0, startup)
    app.on_shutdown.insert(0, shutdown)
    return podium


def _path(url: str) -> Any:
    from pathlib import Path

    return Path(url.removeprefix("sqlite:///")).expanduser()


def _routes(podium: Podium) -> None:
    app, gateway, config = podium.app, podium.gateway, podium.config
    openai = OpenAIIngress()
    limit = config.server.max_body_bytes
    app.route(
        "POST", "/v1/chat/completions", chat_handler(openai, gateway, max_body_bytes=limit), openai
    )
    batch_endpoints(podium).add(
        "/v1/chat/completions",
        lambda contexts: chat_handler(
            openai, gateway, max_body_bytes=limit, context_factory=contexts
        ),
    )

    async def health(_: Request) -> Response:
        return Response.json({"status": "ok", "workers": len(podium.pool.serving())})

    async def ready(_: Request) -> Response:
        """For a load balancer's readiness check: 503 when no worker can take a request now
        (every answering worker drained, removed or behind an open circuit)."""
        answering = [w for w in podium.pool if w.config.role == "answer"]
        serving = [w for w in answering if not w.draining]
        available = [w for w in serving if w.breaker.state != "open"]
        body: dict[str, Any] = {
            "status": "ready" if available else "unavailable",
            "workers": {
                "answering": len(answering),
                "serving": len(serving),
                "available": len(available),
            },
        }
        if not available:
            body["reason"] = (
                "every serving worker's circuit is open"
                if serving
                else "every worker is draining or has been removed"
            )
        return Response.json(body, status=200 if available else 503)

    app.route("GET", "/health", health, app.fallback_errors)
    app.route("GET", "/ready", ready, app.fallback_errors)


def create_app(config: PodiumConfig, **options: Any) -> App:
    return create_podium(config, **options).app


def app_from_environment() -> App:
    """The ASGI factory ``podium serve`` hands to uvicorn (one per worker process)."""
    return create_app(load_config(os.environ.get("PODIUM_CONFIG")), tune_gc=True)
