"""Routers by name, workflow templates by name, and the parts a router is built from.

Built-in routers register themselves like any plugin (``register_routers(registry)`` in a module
listed in :data:`podium.plugins.BUILTIN_PLUGINS`); third-party packages do the same from the
``podium.plugins`` entry-point group. ``podium.yaml`` then names them in ``routing.chain``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from podium.routing.base import Router
from podium.routing.config import RoutingConfig, RoutingConfigError
from podium.workflow import Workflow

if TYPE_CHECKING:
    from podium.config import PodiumConfig
    from podium.hooks import Hook
    from podium.routing.embeddings import Embedder


class TemplateBuilder(Protocol):
    def __call__(self, workers: Sequence[str], options: Mapping[str, Any]) -> Workflow:
        """A workflow over ``workers`` (in the template's order of roles)."""
        ...


def single_template(workers: Sequence[str], options: Mapping[str, Any]) -> Workflow:
    """One call to the first worker; the others are its fallbacks."""
    return Workflow.single(workers[0], fallbacks=list(workers[1:]))


class TemplateRegistry:
    """Workflow templates rules and routes can name (``single``, ``cascade``, ...)."""

    def __init__(self) -> None:
        self._builders: dict[str, TemplateBuilder] = {"single": single_template}

    def register(self, name: str, builder: TemplateBuilder) -> None:
        self._builders[name] = builder

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name: object) -> bool:
        return name in self._builders

    def build(self, name: str, workers: Sequence[str], options: Mapping[str, Any]) -> Workflow:
        builder = self._builders.get(name)
        if builder is None:
            raise RoutingConfigError(
                f"unknown workflow template {name!r} (known: {', '.join(self.names())})"
            )
        workflow = builder(workers, options)
        if not options:  # with options, the template name and workers do not say what it does
            workflow.members = list(workers)
        return workflow


RouterFactory = Callable[[Any, "RouterParts"], Router]


class RouterRegistry:
    def __init__(self) -> None:
        self._factories: dict[str, RouterFactory] = {}
        self.templates = TemplateRegistry()

    def register(self, name: str, factory: RouterFactory) -> None:
        """Add a router kind; a later registration of the same name replaces the earlier one,
        so a plugin can override a built-in."""
        self._factories[name] = factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def factory(self, kind: str) -> RouterFactory:
        found = self._factories.get(kind)
        if found is None:
            raise RoutingConfigError(
                f"unknown router {kind!r} (registered: {', '.join(self.names()) or 'none'})"
            )
        return found


@dataclass
class RouterParts:
    """What a router factory may use: the configuration, other routers by name, templates,
    the shared embedding model, and a place to put gateway hooks (affinity learns from them)."""

    config: PodiumConfig
    registry: RouterRegistry
    data_dir: Path
    hooks: list[Hook] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)  # shared state between a kind's parts
    _embedder: Embedder | None = None
    _built: dict[str, Router] = field(default_factory=dict)
    _building: list[str] = field(default_factory=list)

    @property
    def routing(self) -> RoutingConfig:
        return self.config.routing

    @property
    def templates(self) -> TemplateRegistry:
        return self.registry.templates

    def embedder(self) -> Embedder:
        """The shipped static embedding model, loaded once per Podium on first use."""
        if self._embedder is None:
            from podium.routing.embeddings import load_embedder

            self._embedder = load_embedder()
        return self._embedder

    def section(self, name: str) -> tuple[str, Any]:
        """The kind and configuration section of the router called ``name``."""
        custom = self.routing.routers.get(name)
        if custom is not None:
            return str(custom.get("type", name)), custom
        return name, getattr(self.routing, name, None)

    def router(self, name: str) -> Router:
        """The router called ``name``, built once (rules and routes may delegate to it)."""
        built = self._built.get(name)
        if built is not None:
            return built
        if name in self._building:
            loop = " -> ".join([*self._building[self._building.index(name) :], name])
            raise RoutingConfigError(f"routers refer to each other in a loop: {loop}")
        self._building.append(name)
        try:
            kind, section = self.section(name)
            router = self.registry.factory(kind)(section, self)
            if router.name != name:
                router.name = name  # a second instance of a kind answers to its own name
        finally:
            self._building.pop()
        self._built[name] = router
        return router

    def built(self) -> dict[str, Router]:
        """Every router built so far by name: the chain's and those rules or routes delegate to."""
        return dict(self._built)

    def worker_names(self) -> set[str]:
        return {worker.name for worker in self.config.workers}
