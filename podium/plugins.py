"""Plugins: modules that register providers, routers, hooks and routes through named functions.

Built-ins are plugins too, loaded from :data:`BUILTIN_PLUGINS`; third-party packages add
theirs under the ``podium.plugins`` entry-point group. A plugin module defines any of
``register_providers(registry)``, ``register_routers(registry)`` and ``register_app(podium)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from importlib.metadata import entry_points
from types import ModuleType

BUILTIN_PLUGINS: tuple[str, ...] = (
    "podium.providers.openai",
    "podium.providers.openai_responses",
    "podium.providers.anthropic",
    "podium.providers.gemini",
    "podium.providers.local",
    "podium.providers.examples",
    "podium.providers.python_run",
    "podium.providers.static_embeddings",
    "podium.routing.direct",
    "podium.routing.rules",
    "podium.routing.affinity",
    "podium.routing.semantic",
    "podium.routing.learned_plugin",
    "podium.api.models",
    "podium.api.route",
    "podium.api.anthropic",
    "podium.api.responses",
    "podium.api.embeddings",
    "podium.api.openai_batches",
    "podium.api.admin",
    "podium.state.plugin",
    "podium.cache.plugin",
    "podium.policy.plugin",
    "podium.observe.plugin",
    "podium.documents",  # before the content policy: its screens read documents' text
    "podium.policy.content",
    "podium.api.contracts",
)


def load_plugins(
    builtins: Iterable[str] = BUILTIN_PLUGINS, *, third_party: bool = True
) -> list[ModuleType]:
    modules: list[ModuleType] = []
    for name in builtins:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
    if third_party:
        for entry in entry_points(group="podium.plugins"):
            loaded = entry.load()
            if isinstance(loaded, ModuleType):
                modules.append(loaded)
    return modules
