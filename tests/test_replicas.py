"""Several ``podium serve`` processes sharing PostgreSQL and Redis behave as one gateway: a key's
rate limit and budget hold exactly across them, a worker drained on one is drained on all, a
revoked key is refused everywhere within the key cache's TTL, and circuit breakers open together.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from podium.policy.keys import KeyStore, NewKey
from podium.store.postgres import PostgresStore
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker
from tests.shared_servers import (
    PG_URL,
    REDIS_URL,
    Replica,
    drop_redis_prefix,
    drop_schema,
    needs_postgres,
    needs_redis,
    unique,
)

pytestmark = [needs_postgres, needs_redis]

CACHE_TTL = 0.5
SYNC_INTERVAL = 0.2


def replica_config(upstream: str, workdir: Path, schema: str, prefix: str) -> dict[str, Any]:
    return {
        "data_dir": str(workdir),
        # 1000 USD per million tokens both ways: a request's reservation is cents, so a small
        # budget admits a handful of requests.
        "workers": [
            worker(
                "alpha",
                "openai",
                upstream,
                price={"input": 1000.0, "output": 1000.0},
                retry={"attempts": 0},
                breaker={"failures": 2, "reset_after": 30},
            )
        ],
        "store": {
            "kind": "postgres",
            "url": PG_URL,
            "pg_schema": schema,
            "flush_interval": 0.05,
            "sync_interval": SYNC_INTERVAL,
        },
        "access": {
            "auth": {"required": True, "cache_ttl": CACHE_TTL},
            "limits": {"backend": "redis", "url": REDIS_URL, "prefix": prefix},
        },
        "redis": {"url": REDIS_URL, "prefix": prefix},
    }


class Cluster:
    def __init__(self, replicas: list[Replica], store: PostgresStore, upstream: FakeOpenAI):
        self.replicas = replicas
        self.store = store
        self.keys = KeyStore(store)
        self.upstream = upstream

    async def key(self, **limits: Any) -> tuple[str, str]:
        record, key = await self.keys.create(NewKey(owner="team-a", **limits))
        return record.key_id, key


@pytest.fixture
async def cluster(tmp_path: Path, fake_openai: FakeOpenAI) -> AsyncIterator[Cluster]:
    schema, prefix = unique("podium_replicas"), unique("podium_test") + ":"
    store = PostgresStore(PG_URL, schema=schema, max_size=2)
    await store.open()  # migrate once before the replicas start
    replicas = [
        Replica(
            replica_config(fake_openai.base_url, tmp_path / f"r{n}", schema, prefix),
            tmp_path / f"r{n}",
        )
        for n in range(2)
    ]
    try:
        await asyncio.gather(*(replica.start() for replica in replicas))
        yield Cluster(replicas, store, fake_openai)
    finally:
        await asyncio.gather(*(replica.stop() for replica in replicas))
        await store.close()
        await drop_schema(schema)
        await drop_redis_prefix(prefix)


async def chat(
    session: aiohttp.ClientSession, replica: Replica, key: str, **extra: Any
) -> tuple[int, dict[str, Any]]:
    body = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}], **extra}
    async with session.post(
        f"{replica.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
    ) as response:
        return response.status, await response.json(content_type=None)


async def spread(cluster: Cluster, key: str, count: int, **extra: Any) -> list[int]:
    """``count`` concurrent requests, alternating between the replicas."""
    rotation = itertools.cycle(cluster.replicas)
    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(
            *(chat(session, next(rotation), key, **extra) for _ in range(count))
        )
    return [status for status, _ in results]


async def eventually(check: Callable[[], Awaitable[bool]], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return await check()


async def test_a_rate_limit_holds_exactly_across_replicas(cluster: Cluster) -> None:
    _, key = await cluster.key(rpm=10)
    statuses = await spread(cluster, key, 40)
    # Ten per minute for the key, wherever its requests land (per-replica counters would let
    # twenty through). The bucket refills one request per six seconds: none within this burst.
    assert statuses.count(200) == 10
    assert statuses.count(429) == 30


async def test_a_budget_holds_exactly_across_replicas(cluster: Cluster) -> None:
    # Each request reserves its worst case: (5 estimated input + 10 output tokens) at
    # $1000 per million = $0.015. $0.10 holds six reservations at once, not seven.
    cluster.upstream.behaviour.latency = 1.0  # every reservation is held while the others ask
    key_id, key = await cluster.key(budget_usd=0.10)
    statuses = await spread(cluster, key, 30, max_tokens=10)
    assert statuses.count(200) == 6
    assert statuses.count(402) == 24
    # What was really spent (settled by both replicas) stays within the budget.
    from redis.asyncio import Redis

    # Settlement runs after each answer has gone out, so give the replicas a moment.
    redis = Redis.from_url(REDIS_URL, decode_responses=True)
    spent = 0
    try:
        for _ in range(100):
            keys = [k async for k in redis.scan_iter(match=f"*budget:{{{key_id}}}:*:spent")]
            spent = sum([int(await redis.get(k) or 0) for k in keys])
            if spent > 0:
                break
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
    assert 0 < spent <= 0.10 * 1e9


async def test_a_worker_drained_on_one_replica_is_drained_on_all(cluster: Cluster) -> None:
    first, second = cluster.replicas
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{first.url}/admin/workers/alpha/drain") as response:
            assert response.status == 200

        async def drained_on_second() -> bool:
            async with session.get(f"{second.url}/admin/workers/alpha") as response:
                return bool((await response.json())["health"]["draining"])

        assert await eventually(drained_on_second, within=5.0)
        # ... and undrained on all the same way.
        async with session.post(f"{second.url}/admin/workers/alpha/undrain") as response:
            assert response.status == 200

        async def serving_on_first() -> bool:
            async with session.get(f"{first.url}/admin/workers/alpha") as response:
                return not (await response.json())["health"]["draining"]

        assert await eventually(serving_on_first, within=5.0)
        # A repricing travels too.
        async with session.patch(
            f"{first.url}/admin/workers/alpha", json={"price": {"input": 7.0}}
        ) as response:
            assert response.status == 200

        async def repriced_on_second() -> bool:
            async with session.get(f"{second.url}/admin/workers/alpha") as response:
                return (await response.json())["price"]["input"] == 7.0

        assert await eventually(repriced_on_second, within=5.0)


async def test_a_revoked_key_is_refused_everywhere_within_the_cache_ttl(cluster: Cluster) -> None:
    key_id, key = await cluster.key()
    assert await spread(cluster, key, 4) == [200] * 4
    first, _ = cluster.replicas
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{first.url}/admin/keys/{key_id}/revoke") as response,
    ):
        assert response.status == 200
    await asyncio.sleep(CACHE_TTL + 0.3)
    assert await spread(cluster, key, 4) == [401] * 4


async def test_a_circuit_opened_on_one_replica_opens_on_all(cluster: Cluster) -> None:
    _, key = await cluster.key()
    first, second = cluster.replicas
    cluster.upstream.behaviour.fail(500, times=2)
    async with aiohttp.ClientSession() as session:
        for _ in range(2):  # two failures open the circuit (breaker.failures: 2) on the first
            status, _ = await chat(session, first, key)
            assert status >= 500

        async def open_on_second() -> bool:
            async with session.get(f"{second.url}/admin/workers/alpha") as response:
                return (await response.json())["health"]["circuit"] == "open"

        assert await eventually(open_on_second, within=5.0)
        # The second replica sends nothing to the failing worker now.
        before = len(cluster.upstream.received)
        status, _ = await chat(session, second, key)
        assert status == 503 and len(cluster.upstream.received) == before


async def stored_trace_ids(store: PostgresStore) -> set[str]:
    return {row[0] for row in await store.execute("SELECT trace_id FROM traces")}


async def test_a_replica_killed_mid_stream_breaks_only_its_own_stream(cluster: Cluster) -> None:
    _, key = await cluster.key()
    first, second = cluster.replicas
    cluster.upstream.behaviour.reply = "word " * 400  # 500 chunks ...
    cluster.upstream.behaviour.chunk_delay = 0.02  # ... over about ten seconds
    body = {
        "model": "alpha",
        "stream": True,
        "messages": [{"role": "user", "content": "a long story"}],
    }
    headers = {"Authorization": f"Bearer {key}"}
    received: list[bytes] = []
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{first.url}/v1/chat/completions", json=body, headers=headers
        ) as response:
            assert response.status == 200

            async def read_and_kill() -> None:
                async for line in response.content:
                    received.append(line)
                    if len(received) == 20:
                        await first.stop(signal.SIGKILL)

            with pytest.raises(aiohttp.ClientError):  # the client sees the stream break
                await read_and_kill()
        assert not any(b"[DONE]" in line for line in received)
        cluster.upstream.behaviour.reply = None
        cluster.upstream.behaviour.chunk_delay = 0.0
        # The other replica keeps serving, and every trace it answered reaches the store.
        results = [await chat_with_trace(session, second, key) for _ in range(10)]
    assert [status for status, _ in results] == [200] * 10
    wanted = {trace_id for _, trace_id in results}

    async def all_stored() -> bool:
        return wanted <= await stored_trace_ids(cluster.store)

    assert await eventually(all_stored, within=10.0)


async def chat_with_trace(
    session: aiohttp.ClientSession, replica: Replica, key: str
) -> tuple[int, str | None]:
    body = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}]}
    try:
        async with session.post(
            f"{replica.url}/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            await response.read()
            return response.status, response.headers.get("x-podium-trace-id")
    except aiohttp.ClientError:
        return 0, None  # the replica is down


async def test_a_replica_restarted_under_load_loses_no_trace_and_the_limit_holds(
    cluster: Cluster,
) -> None:
    _, key = await cluster.key(rpm=30)
    first, second = cluster.replicas
    results: list[tuple[int, str | None]] = []
    async with aiohttp.ClientSession() as session:

        async def load(replica: Replica, count: int) -> None:
            for _ in range(count):
                results.append(await chat_with_trace(session, replica, key))

        async def restart() -> None:
            await asyncio.sleep(0.2)
            await first.stop(signal.SIGTERM)  # graceful: flushes its traces, then exits
            await first.start()

        await asyncio.gather(load(first, 30), load(second, 30), restart())
    answered = [trace_id for status, trace_id in results if status == 200]
    assert len(answered) <= 30  # never more than the key's limit, across both replicas
    assert [status for status, _ in results if status not in (0, 200)] == [429] * (
        len([r for r in results if r[0] not in (0, 200)])
    )
    assert len(answered) == min(30, len([r for r in results if r[0] != 0]))

    async def all_stored() -> bool:
        return set(answered) <= await stored_trace_ids(cluster.store)  # type: ignore[arg-type]

    assert await eventually(all_stored, within=10.0)
