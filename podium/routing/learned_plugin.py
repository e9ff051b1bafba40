"""Plugin: the learned router, the workflow router, the Conductor and the workflow templates.

Router kinds ``learned``, ``workflow`` and ``conductor`` (configured under
``routing.routers.<name>`` in podium.yaml and named in ``routing.chain``), and the templates
``cascade``, ``plan_solve``, ``solve_verify`` and ``fanout``. ``register_app`` gives the
Conductor the engine to call its planner with, and adds ``POST /admin/router/reload``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from podium.routing.artifacts import ArtifactStore
from podium.routing.config import RoutingConfigError, parse_section
from podium.routing.learned_router import LearnedConfig, LearnedRouter, ModelHandle

if TYPE_CHECKING:
    from podium.app import Podium
    from podium.routing.base import Router
    from podium.routing.features import Embedder
    from podium.routing.registry import RouterParts, RouterRegistry

HANDLES = "learned.handles"


def _handle(config: LearnedConfig, parts: RouterParts) -> ModelHandle:
    """One model handle per artifact source, shared by the routers that read it."""
    handles: dict[str, ModelHandle] = parts.extras.setdefault(HANDLES, {})
    key = config.artifact or "current"
    found = handles.get(key)
    if found is not None:
        return found

    def embedder() -> Embedder | None:
        try:
            return parts.embedder()
        except Exception:  # the model files may be missing: a spec without embeddings still works
            return None

    path = Path(config.artifact).expanduser() if config.artifact else None
    handle = ModelHandle(
        ArtifactStore(parts.data_dir / "routers"), path, embedder, config.reload_seconds
    )
    handles[key] = handle
    return handle


def learned_factory(section: Any, parts: RouterParts) -> Router:
    config = parse_section(section, LearnedConfig, "learned")
    return LearnedRouter(config, _handle(config, parts), templates=parts.templates)


def workflow_factory(section: Any, parts: RouterParts) -> Router:
    from podium.routing.workflow_router import WorkflowRouter, workflow_config

    config = workflow_config(section)
    return WorkflowRouter(config, _handle(config, parts), templates=parts.templates)


def conductor_factory(section: Any, parts: RouterParts) -> Router:
    from podium.routing.conductor import ConductorConfig, ConductorRouter

    config = parse_section(section, ConductorConfig, "conductor")
    if config.planner is not None and config.planner not in parts.worker_names():
        raise RoutingConfigError(
            f"conductor: planner {config.planner!r} is not a configured worker"
        )
    if config.fallback:
        # Built on first use (it may load an artifact), but a name that means nothing is a
        # configuration error now, not a failed fallback on every unusable plan.
        kind, _ = parts.section(config.fallback)
        try:
            parts.registry.factory(kind)
        except RoutingConfigError as error:
            raise RoutingConfigError(f"conductor: fallback: {error}") from None

    def fallback() -> Router | None:
        return parts.router(config.fallback) if config.fallback else None

    return ConductorRouter(config, fallback, parts.config.default_worker)


def register_routers(registry: RouterRegistry) -> None:
    from podium.routing.templates import register_templates

    registry.register("learned", learned_factory)
    registry.register("workflow", workflow_factory)
    registry.register("conductor", conductor_factory)
    register_templates(registry.templates)


def register_app(podium: Podium) -> None:
    from podium.api.admin import admin_route
    from podium.api.http import Request, Response
    from podium.routing.conductor import ConductorRouter

    routing = getattr(podium, "routing", None)
    if routing is None:
        return
    for router in routing.every_router():
        if isinstance(router, ConductorRouter):
            router.bind(podium.engine)

    async def reload(_: Request) -> Response:
        """Load the promoted artifact now (the routers also notice within reload_seconds)."""
        handles: dict[str, ModelHandle] = routing.parts.extras.get(HANDLES, {})
        body: dict[str, Any] = {}
        for key, handle in handles.items():
            loaded = handle.reload(force=True) is not None
            body[key] = {"loaded": loaded, "version": handle.version, "error": handle.error}
        return Response.json({"routers": body})

    admin_route(podium, "POST", "/admin/router/reload", reload)
