"""The response cache in Redis: replicas share one cache, and a Redis that cannot be reached
never refuses a request."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from podium.cache.executor import CachingExecutor
from podium.cache.redis_store import CLEAR_BATCH, RedisCache
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker
from tests.shared_servers import REDIS_URL, drop_redis_prefix, needs_redis, unique

CHAT: dict[str, Any] = {"model": "alpha", "messages": [{"role": "user", "content": "hi there"}]}
ANSWER = "fake answer to: hi there"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = unique("podium-cache-test") + ":"
    yield name
    await drop_redis_prefix(name)


async def ask(base_url: str, *, stream: bool = False) -> tuple[str, str]:
    async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0) as client:
        if not stream:
            raw = await client.chat.completions.with_raw_response.create(**CHAT)
            return raw.parse().choices[0].message.content or "", raw.headers["x-podium-cache"]
        streamed = await client.chat.completions.with_raw_response.create(**CHAT, stream=True)
        text = ""
        async for chunk in streamed.parse():
            text += chunk.choices[0].delta.content or "" if chunk.choices else ""
        return text, streamed.headers["x-podium-cache"]


@needs_redis
@pytest.mark.parametrize("stream", [False, True])
async def test_two_replicas_share_one_cache(
    gateway: Any, fake_openai: FakeOpenAI, prefix: str, stream: bool
) -> None:
    workers = [worker("alpha", "openai", fake_openai.base_url)]
    cache = {"enabled": True, "backend": "redis", "url": REDIS_URL, "prefix": prefix}
    async with gateway(workers, cache=cache) as first, gateway(workers, cache=cache) as second:
        answered = [await ask(first.v1, stream=stream), await ask(second.v1, stream=stream)]
        assert second.podium.extras["cache"].errors == 0
    assert answered == [(ANSWER, "miss"), (ANSWER, "hit")]
    assert len(fake_openai.received) == 1


@needs_redis
async def test_the_redis_backend_can_use_the_redis_section(
    gateway: Any, fake_openai: FakeOpenAI, prefix: str
) -> None:
    workers = [worker("alpha", "openai", fake_openai.base_url)]
    settings = {"cache": {"enabled": True, "backend": "redis", "prefix": prefix}}
    async with gateway(workers, redis={"url": REDIS_URL}, **settings) as running:
        answered = [await ask(running.v1), await ask(running.v1)]
    assert [outcome for _, outcome in answered] == ["miss", "hit"]


async def test_unreachable_redis_is_a_miss_never_a_refusal(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cache = {
        "enabled": True,
        "backend": "redis",
        "url": f"redis://127.0.0.1:{port}/0",
        "timeout": 0.2,
    }
    workers = [worker("alpha", "openai", fake_openai.base_url)]
    async with gateway(workers, cache=cache) as running:
        answered = [await ask(running.v1), await ask(running.v1, stream=True)]
        executor = running.podium.extras["cache"]
        assert isinstance(executor, CachingExecutor)
        assert executor.errors >= 1 and executor.hits == 0
    assert answered == [(ANSWER, "miss"), (ANSWER, "miss")]
    assert len(fake_openai.received) == 2


@needs_redis
async def test_clearing_empties_every_replica_and_only_this_prefix(
    gateway: Any, fake_openai: FakeOpenAI, prefix: str
) -> None:
    workers = [worker("alpha", "openai", fake_openai.base_url)]
    cache = {"enabled": True, "backend": "redis", "url": REDIS_URL, "prefix": prefix}
    # Another deployment whose prefix extends this one's: its names match <prefix>cache:* too.
    other = {**cache, "prefix": prefix + "cache:"}
    async with (
        gateway(workers, cache=cache) as first,
        gateway(workers, cache=cache) as second,
        gateway(workers, cache=other) as neighbour,
    ):
        await ask(first.v1)
        await ask(neighbour.v1)
        async with httpx.AsyncClient(base_url=second.url) as http:
            stats = (await http.get("/admin/cache")).json()
            cleared = await http.delete("/admin/cache")
        after = [await ask(first.v1), await ask(neighbour.v1)]
    assert stats["backend"] == {"kind": "redis", "prefix": prefix}
    assert cleared.status_code == 200
    assert cleared.json() == {
        "cleared": True,
        "backend": "redis",
        "removed": 1,
        "process": None,
        "shared": True,
    }
    assert after == [(ANSWER, "miss"), (ANSWER, "hit")]
    assert len(fake_openai.received) == 3


async def test_clearing_an_unreachable_redis_says_so(gateway: Any, fake_openai: FakeOpenAI) -> None:
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cache = {"enabled": True, "backend": "redis", "url": f"redis://127.0.0.1:{port}/0"}
    workers = [worker("alpha", "openai", fake_openai.base_url)]
    async with (
        gateway(workers, cache=cache) as running,
        httpx.AsyncClient(base_url=running.url) as http,
    ):
        refused = await http.delete("/admin/cache")
    assert refused.status_code == 503
    error = refused.json()["error"]
    assert error["code"] == "cache_unavailable" and "could not be cleared" in error["message"]


@needs_redis
async def test_clearing_walks_every_batch(prefix: str) -> None:
    backend = RedisCache(REDIS_URL, prefix=prefix, timeout=2.0)
    try:
        for index in range(3 * CLEAR_BATCH + 7):
            await backend.put(hashlib.sha256(str(index).encode()).hexdigest(), "x", ttl=60)
        await backend.put("not-a-sha256", "x", ttl=60)  # not an entry of ours: left alone
        assert await backend.clear() == 3 * CLEAR_BATCH + 7
        assert await backend.get("not-a-sha256") == "x"
        assert await backend.clear() == 0
    finally:
        await backend.aclose()
