"""The bounded Redis pool the limits and the shared sessions use, against the real server."""

from __future__ import annotations

import asyncio

import pytest

from podium.policy.redis_limits import RedisLimits
from tests.shared_servers import REDIS_URL, drop_redis_prefix, needs_redis, unique


async def connections_named(name: str) -> int:
    from redis.asyncio import Redis

    observer = Redis.from_url(REDIS_URL)
    try:
        clients = await observer.client_list()
    finally:
        await observer.aclose()
    return sum(1 for client in clients if client.get("name") == name)


@needs_redis
async def test_a_burst_waits_for_the_few_connections_instead_of_opening_one_each() -> None:
    from podium.state.redis_client import pooled_redis

    name = unique("podium-test-pool")
    client = pooled_redis(REDIS_URL, timeout=5.0, max_connections=4, queue_timeout=5.0, name=name)
    counter = f"{name}:counter"
    peak = 0

    async def bump() -> None:
        nonlocal peak
        await client.incr(counter)
        peak = max(peak, await connections_named(name))

    try:
        async with asyncio.TaskGroup() as group:  # a failure cancels the rest: no stray sockets
            for _ in range(200):
                group.create_task(bump())
        assert int(await client.get(counter)) == 200
        assert 1 <= peak <= 4  # never more than the pool's bound
    finally:
        await client.delete(counter)
        await client.aclose()
    assert await connections_named(name) == 0  # closing the client closed its pool


@needs_redis
async def test_limits_answer_a_burst_of_512_requests_without_calling_redis_unreachable() -> None:
    prefix = unique("podium-test-burst") + ":"
    # A generous per-call timeout: a CI machine's pause must not count as Redis being down.
    # What is under test is that 512 callers share 8 connections and every one is answered.
    limits = RedisLimits(REDIS_URL, prefix=prefix, timeout=5.0, max_connections=8)
    try:
        async with asyncio.TaskGroup() as group:
            calls = [
                group.create_task(limits.take_rate(f"key{n % 4}", rpm=10_000, tpm=None, tokens=10))
                for n in range(512)
            ]
        assert [call.result().wait for call in calls] == [0.0] * 512
    finally:
        await limits.aclose()
        await drop_redis_prefix(prefix)


def test_cooldown_leaves_redis_alone_for_a_while_after_a_failure() -> None:
    from podium.state.redis_client import Cooldown

    now = [100.0]
    cooldown = Cooldown(1.0, clock=lambda: now[0])
    assert cooldown.resting() is None  # nothing failed yet: ask Redis
    cooldown.failed(ConnectionRefusedError())
    now[0] = 100.4
    assert cooldown.resting() == pytest.approx(0.4)
    assert (cooldown.errors, cooldown.because) == (1, "ConnectionRefusedError")
    now[0] = 101.0
    assert cooldown.resting() is None  # the pause is over: the next call asks again
    cooldown.failed(TimeoutError())
    cooldown.recovered()  # that call succeeded after all
    assert cooldown.resting() is None
    assert cooldown.errors == 2
