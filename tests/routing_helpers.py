"""Shared builders for the routing tests: configs, requests and contexts without a server."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from podium.config import PodiumConfig, parse_config
from podium.context import Caller
from podium.plugins import load_plugins
from podium.routing.base import RouteContext
from podium.routing.chain import Routing, build_routing
from podium.types import ChatRequest, ImagePart, Message, TextPart, Tool

POOL = ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]


def pool_config(
    routing: dict[str, Any] | None = None, tmp: Path | None = None, **worker_fields: Any
) -> PodiumConfig:
    """The three-worker pool behind a dead port; ``worker_fields`` go into every worker."""
    workers = [
        {
            "name": name,
            "provider": "openai",
            "model": f"{name}-model",
            "base_url": "http://127.0.0.1:9",
            "aliases": [f"{name}-alias"],
            **worker_fields,
        }
        for name in POOL
    ]
    data: dict[str, Any] = {"workers": workers, "routing": routing or {}}
    if tmp is not None:
        data["data_dir"] = str(tmp)
    return parse_config(data)


def routing_for(
    routing: dict[str, Any] | None = None,
    modules: list[ModuleType] | None = None,
    **worker_fields: Any,
) -> Routing:
    config = pool_config(routing, **worker_fields)
    return build_routing(config, load_plugins(third_party=False) + (modules or []))


def ask(
    text: str = "hello",
    *,
    model: str = "podium/auto",
    system: str | None = None,
    tools: bool = False,
    image: bool = False,
    metadata: dict[str, str] | None = None,
    user: str | None = None,
    history: list[tuple[str, str]] | None = None,
) -> ChatRequest:
    messages: list[Message] = []
    if system:
        messages.append(Message(role="system", content=[TextPart(system)]))
    for role, said in history or []:
        messages.append(Message(role=role, content=[TextPart(said)]))  # type: ignore[arg-type]
    content: list[Any] = [TextPart(text)]
    if image:
        content.append(ImagePart(url="https://example.invalid/cat.png"))
    messages.append(Message(role="user", content=content))
    return ChatRequest(
        model=model,
        messages=messages,
        tools=[Tool(name="lookup")] if tools else [],
        metadata=metadata or {},
        user=user,
    )


def context(
    config: PodiumConfig,
    *,
    eligible: list[str] | None = None,
    headers: dict[str, str] | None = None,
    data_class: str = "public",
    contract: str | None = None,
    caller: Caller | None = None,
) -> RouteContext:
    workers = [w for w in config.workers if eligible is None or w.name in eligible]
    return RouteContext(
        caller=caller or Caller(),
        eligible=workers,
        headers=headers or {},
        data_class=data_class,
        contract=contract,
    )
