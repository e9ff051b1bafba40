"""Which workers can take a request: the capabilities it needs and a context window that holds
its prompt; ``podium/auto`` passes over a default that cannot take it, and a rule or a route
over a worker that surely cannot answer."""

from __future__ import annotations

from typing import Any

import openai

from podium.config import WorkerConfig
from podium.context import Caller
from podium.routing.base import RouteContext
from podium.routing.direct import DirectRouter
from podium.routing.fit import fewest_tokens, fits, fitting, needs
from podium.testing.openai_fake import FakeOpenAI
from podium.types import ChatRequest, ImagePart, Message, TextPart, Tool
from tests.conftest import worker as conftest_worker


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


async def test_a_rule_or_route_passes_over_a_worker_that_surely_cannot_answer(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    workers = [
        {**conftest_worker("small", "openai", fake_openai.base_url), "context_window": 1000},
        {**conftest_worker("large", "openai", fake_openai.base_url), "context_window": 100_000},
    ]
    routing = {
        "chain": ["rules", "direct"],
        "rules": [
            {"name": "to-small", "match": {"model": ["podium/auto"]}, "worker": "small"},
            {"name": "to-large", "match": {"model": ["podium/auto"]}, "worker": "large"},
        ],
    }
    async with (
        gateway(workers, routing=routing) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="x", max_retries=0) as client,
    ):
        short = await client.chat.completions.with_raw_response.create(
            model="podium/auto", messages=[{"role": "user", "content": "hi"}]
        )
        long = await client.chat.completions.with_raw_response.create(
            model="podium/auto", messages=[{"role": "user", "content": "x" * 60_000}]
        )
        await running.podium.recorder.flush()
        trace = await running.podium.store.get_trace(long.headers["x-podium-trace-id"])
    assert short.headers["x-podium-worker"] == "small"
    assert long.headers["x-podium-worker"] == "large"
    assert trace is not None
    assert "passed over: rule 'to-small': worker 'small' has a 1000-token context window" in (
        trace.reason
    )
