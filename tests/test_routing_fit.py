"""Which workers can take a request: the capabilities it needs and a context window that holds
its prompt; ``podium/auto`` passes over a default that cannot take it."""

from __future__ import annotations

from typing import Any

from podium.config import WorkerConfig
from podium.context import Caller
from podium.routing.base import RouteContext
from podium.routing.direct import DirectRouter
from podium.routing.fit import fewest_tokens, fits, fitting, needs
from podium.types import ChatRequest, ImagePart, Message, TextPart, Tool


def worker(name: str, window: int = 8192, *capabilities: str) -> WorkerConfig:
    return WorkerConfig.model_validate(
        {
            "name": name,
            "provider": "openai",
            "model": name,
            "base_url": "http://127.0.0.1:9/v1",
            "context_window": window,
            "capabilities": ["streaming", *capabilities],
        }
    )


def ask(text: str = "hi", *, image: bool = False, tools: bool = False, **extra: Any) -> ChatRequest:
    content: list[TextPart | ImagePart] = [TextPart(text)]
    if image:
        content.append(ImagePart(data="AAAA", media_type="image/png"))
    return ChatRequest(
        model="podium/auto",
        messages=[Message("user", content)],
        tools=[Tool("lookup", "", {"type": "object"})] if tools else [],
        **extra,
    )


def test_a_request_needs_tools_for_tool_definitions_and_vision_for_images() -> None:
    assert needs(ask()) == frozenset()
    assert needs(ask(tools=True)) == {"tools"}
    assert needs(ask(image=True, tools=True)) == {"tools", "vision"}


def test_a_prompt_is_too_long_only_when_it_surely_is() -> None:
    small = worker("small", 1000)
    assert fits(ask("word " * 1000), small)  # ~1,000 tokens by any count: not surely too long
    assert not fits(ask("x" * 6000), small)  # at least 1,000 tokens however it is cut
    assert fewest_tokens(ask("x" * 6000)) == 1000


def test_fitting_keeps_the_workers_that_can_take_it_or_all_when_none_can() -> None:
    small, large, eye = (
        worker("small", 1000),
        worker("large", 100_000),
        worker("eye", 8192, "vision"),
    )
    assert fitting(ask("x" * 60_000), [small, large, eye]) == [large]
    assert fitting(ask(image=True), [small, large, eye]) == [eye]
    # none reads images and holds this prompt: all stay, and the upstream says what is wrong
    assert fitting(ask("x" * 600_000, image=True), [small, eye]) == [small, eye]


async def test_podium_auto_passes_over_a_default_that_cannot_take_the_request() -> None:
    pool = [worker("small", 1000), worker("large", 100_000), worker("eye", 8192, "vision")]
    router = DirectRouter({}, "small")
    context = RouteContext(caller=Caller(), eligible=pool)
    plain = await router.plan(ask(), context)
    long = await router.plan(ask("x" * 60_000), context)
    seeing = await router.plan(ask(image=True), context)
    hopeless = await router.plan(ask("x" * 600_000, image=True), context)
    assert plain is not None and plain.workflow.workers == ["small"]
    assert long is not None and long.workflow.workers == ["large"]
    assert long.reason == "podium/auto goes to 'large': the default 'small' cannot take it"
    assert seeing is not None and seeing.workflow.workers == ["eye"]
    assert hopeless is not None and hopeless.workflow.workers == ["small"]  # none can: the default
