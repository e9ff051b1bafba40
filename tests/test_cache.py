"""The response cache (in-process backend): a repeated request is answered without reaching the
upstream, only where its scope, the client's Cache-Control and the TTL allow it, and a hit still
passes admission and is traced at cost 0."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anthropic
import httpx
import openai
import pytest

from podium.app import Podium
from podium.cache.store import MemoryCache
from podium.config import ConfigError, parse_config
from podium.context import RequestContext
from podium.hooks import Hook
from podium.policy.keys import KeyCache, NewKey
from podium.policy.limits import period_of, usd
from podium.store.traces import TraceRecord
from podium.testing.fakes import Behaviour
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import Running, worker

CHAT: dict[str, Any] = {"model": "alpha", "messages": [{"role": "user", "content": "hi there"}]}
ANSWER = "fake answer to: hi there"
CLEARED = {"cleared": ["public", "internal", "confidential", "restricted"]}


class Traces(Hook):
    """Keeps every finished trace, as the trace store would."""

    def __init__(self) -> None:
        self.seen: list[TraceRecord] = []

    async def finish(self, trace: TraceRecord, context: RequestContext) -> None:
        self.seen.append(trace)


@asynccontextmanager
async def cached(
    gateway: Any, fake: FakeOpenAI, **cache: Any
) -> AsyncIterator[tuple[Running, Traces]]:
    settings = {"enabled": True, **cache}
    workers = [worker("alpha", "openai", fake.base_url, profile=CLEARED)]
    async with gateway(workers, cache=settings) as running:
        traces = Traces()
        running.podium.hooks.append(traces)
        yield running, traces


def sdk(running: Running, key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=running.v1, api_key=key, max_retries=0)


async def ask(client: openai.AsyncOpenAI, **extra: Any) -> tuple[str, dict[str, str], Any]:
    raw = await client.chat.completions.with_raw_response.create(**{**CHAT, **extra})
    completion = raw.parse()
    return completion.choices[0].message.content or "", dict(raw.headers), completion


async def settled(running: Running, traces: Traces, count: int) -> list[TraceRecord]:
    await running.podium.gateway.drain_background()
    assert len(traces.seen) == count
    return traces.seen


async def new_key(podium: Podium, owner: str, **spec: Any) -> str:
    return (await new_key_with_id(podium, owner, **spec))[1]


async def new_key_with_id(podium: Podium, owner: str, **spec: Any) -> tuple[str, str]:
    cache = podium.extras["keys"]
    assert isinstance(cache, KeyCache)
    record, key = await cache.store.create(NewKey(owner=owner, **spec))
    cache.invalidate()
    return record.key_id, key


# -- the backend -----------------------------------------------------------------------------------


async def test_memory_backend_expires_and_evicts_the_least_recently_used() -> None:
    now = [0.0]
    memory = MemoryCache(max_entries=2, max_total_bytes=10, clock=lambda: now[0])
    await memory.put("a", "1", ttl=5)
    await memory.put("b", "2", ttl=5)
    assert await memory.get("a") == "1"  # a is now the most recently used
    await memory.put("c", "3", ttl=5)
    assert await memory.get("b") is None and await memory.get("a") == "1"
    await memory.put("d", "x" * 9, ttl=5)  # 1 + 9 bytes fit; "a" (older) goes for the third
    assert len(memory) == 2 and memory.total_bytes == 10
    now[0] = 5.0
    assert await memory.get("d") is None and len(memory) == 1


# -- through the SDK -------------------------------------------------------------------------------


async def test_a_repeated_request_is_answered_from_the_cache(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with cached(gateway, fake_openai) as (running, traces), sdk(running) as client:
        first, first_headers, first_completion = await ask(client)
        second, headers, completion = await ask(client)
        trace_list = await settled(running, traces, 2)
    assert first == second == ANSWER
    assert len(fake_openai.received) == 1
    assert first_headers["x-podium-cache"] == "miss"
    assert headers["x-podium-cache"] == "hit"
    assert headers["x-podium-worker"] == "alpha"
    assert float(headers["x-podium-cost-usd"]) == 0.0
    assert completion.id != first_completion.id
    assert completion.usage.completion_tokens == first_completion.usage.completion_tokens
    miss, hit = trace_list
    assert "cache:miss" in miss.policy_actions and "cache:stored" in miss.policy_actions
    assert miss.cost_usd > 0
    assert "cache:hit" in hit.policy_actions
    assert hit.cost_usd == 0.0 and hit.status == "ok" and hit.worker == "alpha"
    assert hit.output_tokens == miss.output_tokens
    assert [step["role"] for step in hit.steps] == ["cache"]


async def test_prompt_cache_hints_do_not_split_the_response_cache(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    """Breakpoints, cache options and cache keys change what the upstream's prompt cache
    keeps, not the answer: the same question with and without them is one entry."""
    marked = [
        {
            "role": "user",
            "content": [
                {
                    "type": "text",
                    "text": "hi there",
                    "prompt_cache_breakpoint": {"mode": "explicit"},
                }
            ],
        }
    ]
    async with cached(gateway, fake_openai) as (running, _), sdk(running) as client:
        _, first, _ = await ask(client)
        _, second, _ = await ask(
            client,
            messages=marked,
            prompt_cache_key="tenant-7",
            prompt_cache_options={"mode": "explicit"},
        )
    assert first["x-podium-cache"] == "miss"
    assert second["x-podium-cache"] == "hit"
    assert len(fake_openai.received) == 1


async def test_metrics_count_hits_and_misses(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with cached(gateway, fake_openai) as (running, _), sdk(running) as client:
        for _ in range(3):
            await ask(client)
        await running.podium.gateway.drain_background()
        async with httpx.AsyncClient(base_url=running.url) as http:
            exposition = (await http.get("/metrics")).text
    assert 'podium_cache_total{result="hit"} 2' in exposition
    assert 'podium_cache_total{result="miss"} 1' in exposition
    assert 'podium_cache_total{result="stored"} 1' in exposition
    assert 'podium_worker_calls_total{worker="alpha",status="ok"} 1' in exposition


async def test_the_cache_is_off_unless_enabled(gateway: Any, fake_openai: FakeOpenAI) -> None:
    workers = [worker("alpha", "openai", fake_openai.base_url)]
    async with gateway(workers) as running, sdk(running) as client:
        _, headers, _ = await ask(client)
        await ask(client)
    assert len(fake_openai.received) == 2
    assert "x-podium-cache" not in headers


@pytest.mark.parametrize(
    "change",
    [
        {"messages": [{"role": "user", "content": "hi there!"}]},
        {"temperature": 0.5},
        {"max_tokens": 7},
        {"response_format": {"type": "json_object"}},
        {"tools": [{"type": "function", "function": {"name": "look", "parameters": {}}}]},
        {"user": "someone-else"},
    ],
)
async def test_a_different_request_misses(
    gateway: Any, fake_openai: FakeOpenAI, change: dict[str, Any]
) -> None:
    async with cached(gateway, fake_openai) as (running, _), sdk(running) as client:
        await ask(client)
        _, headers, _ = await ask(client, **change)
    assert headers["x-podium-cache"] == "miss"
    assert len(fake_openai.received) == 2


async def test_a_repriced_worker_misses(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with cached(gateway, fake_openai) as (running, _), sdk(running) as client:
        await ask(client)
        await running.podium.pool.update("alpha", {"price": {"input": 3.0, "output": 4.0}})
        _, headers, _ = await ask(client)
        _, again, _ = await ask(client)
    assert (headers["x-podium-cache"], again["x-podium-cache"]) == ("miss", "hit")
    assert len(fake_openai.received) == 2


@pytest.mark.parametrize(
    ("scope", "owners", "upstream_calls"),
    [
        ("key", ("team-a", "team-a"), 2),
        ("owner", ("team-a", "team-a"), 1),
        ("owner", ("team-a", "team-b"), 2),
        ("global", ("team-a", "team-b"), 1),
    ],
)
async def test_the_scope_decides_who_shares_answers(
    gateway: Any, fake_openai: FakeOpenAI, scope: str, owners: tuple[str, str], upstream_calls: int
) -> None:
    async with cached(gateway, fake_openai, scope=scope) as (running, _):
        keys = [await new_key(running.podium, owner) for owner in owners]
        answers = []
        for key in keys:
            async with sdk(running, key) as client:
                answers.append(await ask(client))
    assert [text for text, _, _ in answers] == [ANSWER, ANSWER]
    assert len(fake_openai.received) == upstream_calls
    expected = "hit" if upstream_calls == 1 else "miss"
    assert answers[1][1]["x-podium-cache"] == expected


async def test_a_hit_still_passes_admission(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with cached(gateway, fake_openai) as (running, _):
        key = await new_key(running.podium, "team-a", rpm=1)
        async with sdk(running, key) as client:
            await ask(client)
            with pytest.raises(openai.RateLimitError):
                await ask(client)
        async with sdk(running, "pk-not-a-key") as stranger:
            with pytest.raises(openai.AuthenticationError):
                await ask(stranger)
    assert len(fake_openai.received) == 1


async def test_a_hit_settles_its_budget_reservation_at_zero(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with cached(gateway, fake_openai) as (running, traces):
        key_id, key = await new_key_with_id(running.podium, "team-a", budget_usd=10.0)
        async with sdk(running, key) as client:
            for _ in range(3):
                await ask(client)
        miss = (await settled(running, traces, 3))[0]
        label, _ = period_of("month", time.time())
        spent, held = await running.podium.extras["limits"].usage(key_id, label)
    assert held == 0
    assert usd(spent) == pytest.approx(miss.cost_usd)  # the two hits cost nothing
    assert len(fake_openai.received) == 1


async def test_entries_expire_after_the_ttl(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with cached(gateway, fake_openai, ttl_seconds=0.2) as (running, _), sdk(running) as c:
        await ask(c)
        _, soon, _ = await ask(c)
        await asyncio.sleep(0.3)
        _, later, _ = await ask(c)
    assert (soon["x-podium-cache"], later["x-podium-cache"]) == ("hit", "miss")
    assert len(fake_openai.received) == 2


async def test_cache_control_no_store_and_no_cache(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with cached(gateway, fake_openai) as (running, _), sdk(running) as client:
        await ask(client, extra_headers={"Cache-Control": "no-store"})
        _, plain, _ = await ask(client)  # nothing was stored: a miss, stored now
        _, hit, _ = await ask(client, extra_headers={"Cache-Control": "no-store"})
        _, fresh, _ = await ask(client, extra_headers={"Cache-Control": "no-cache"})
    assert plain["x-podium-cache"] == "miss"
    assert hit["x-podium-cache"] == "hit"  # no-store still reads the cache
    assert fresh["x-podium-cache"] == "miss"  # no-cache goes to the worker
    assert len(fake_openai.received) == 3


async def test_answers_over_max_bytes_are_not_kept(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with cached(gateway, fake_openai, max_bytes=64) as (running, _), sdk(running) as c:
        await ask(c)
        _, headers, _ = await ask(c)
    assert headers["x-podium-cache"] == "miss"
    assert len(fake_openai.received) == 2


async def test_tools_can_be_kept_out_of_the_cache(gateway: Any, fake_openai: FakeOpenAI) -> None:
    tools = [{"type": "function", "function": {"name": "look", "parameters": {}}}]
    async with cached(gateway, fake_openai, tools=False) as (running, _), sdk(running) as c:
        await ask(c, tools=tools)
        _, headers, _ = await ask(c, tools=tools)
    assert "x-podium-cache" not in headers
    assert len(fake_openai.received) == 2


# -- streams ---------------------------------------------------------------------------------------


async def read_stream(client: openai.AsyncOpenAI) -> tuple[str, str | None, Any, str]:
    raw = await client.chat.completions.with_raw_response.create(
        **CHAT, stream=True, stream_options={"include_usage": True}
    )
    text, finish, usage = "", None, None
    async for chunk in raw.parse():
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    return text, finish, usage, raw.headers["x-podium-cache"]


async def test_a_stream_is_kept_and_replayed_as_a_stream(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with cached(gateway, fake_openai) as (running, traces), sdk(running) as client:
        first = await read_stream(client)
        second = await read_stream(client)
        text, plain, _ = await ask(client)  # a stream's answer serves a plain request too
        trace_list = await settled(running, traces, 3)
    assert first[0] == second[0] == text == ANSWER
    assert first[1] == second[1] == "stop"
    assert (first[3], second[3], plain["x-podium-cache"]) == ("miss", "hit", "hit")
    assert second[2] is not None and second[2].completion_tokens == first[2].completion_tokens
    assert len(fake_openai.received) == 1
    assert trace_list[1].cost_usd == 0.0 and trace_list[1].http_status == 200
    assert "cache:hit" in trace_list[1].policy_actions


async def test_a_broken_stream_is_not_kept(gateway: Any) -> None:
    async with (
        FakeOpenAI(Behaviour(error_stream_after=2)) as fake,
        cached(gateway, fake) as (running, _),
        sdk(running) as client,
    ):
        for _ in range(2):
            with pytest.raises(openai.APIError):
                await read_stream(client)
        fake.behaviour.error_stream_after = None
        _, _, _, outcome = await read_stream(client)
    assert outcome == "miss"
    assert len(fake.received) == 3


# -- other wire formats ----------------------------------------------------------------------------


async def test_an_anthropic_client_gets_hits_too(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        cached(gateway, fake_openai) as (running, _),
        anthropic.AsyncAnthropic(base_url=running.url, api_key="x") as client,
    ):
        raws = [
            await client.messages.with_raw_response.create(
                model="alpha", max_tokens=100, messages=[{"role": "user", "content": "hi there"}]
            )
            for _ in range(2)
        ]
        messages = [await raw.parse() for raw in raws]
        stream = await client.messages.create(
            model="alpha",
            max_tokens=100,
            messages=[{"role": "user", "content": "hi there"}],
            stream=True,
        )
        streamed = "".join(
            [
                event.delta.text
                async for event in stream
                if event.type == "content_block_delta" and event.delta.type == "text_delta"
            ]
        )
    assert [m.content[0].text for m in messages] == [ANSWER, ANSWER]  # type: ignore[union-attr]
    assert [raw.headers["x-podium-cache"] for raw in raws] == ["miss", "hit"]
    assert streamed == ANSWER
    assert len(fake_openai.received) == 1


async def test_a_plain_http_client_sees_the_header(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with cached(gateway, fake_openai) as (running, _), httpx.AsyncClient() as http:
        statuses = []
        for _ in range(2):
            response = await http.post(f"{running.v1}/chat/completions", json=CHAT)
            statuses.append((response.status_code, response.headers["x-podium-cache"]))
    assert statuses == [(200, "miss"), (200, "hit")]


# -- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cache", "needle"),
    [
        ({"backend": "redis"}, "cache.url: the redis backend needs cache.url or redis.url"),
        ({"enabled": True, "ttl": 5}, "cache.ttl: Extra inputs are not permitted"),
        ({"scope": "tenant"}, "cache.scope"),
        ({"url": "http://redis:6379"}, "must start with redis://"),
        ({"ttl_seconds": 0}, "cache.ttl_seconds"),
    ],
)
def test_cache_settings_are_checked(cache: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"cache": cache})
    assert needle in str(caught.value)
