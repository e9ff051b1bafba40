"""Breakers shared through Redis: a circuit opened on one replica is open on every replica (with
the same reset time), a probe that closes it closes it everywhere, a replica starting later
starts with it open, and a replica that cannot reach Redis still cuts a failing worker off alone.

(tests/test_replicas.py shows the same through whole ``podium serve`` processes; these drive
two hubs in one process, where every transition can be watched.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from podium.config import BreakerPolicy, WorkerConfig
from podium.state.redis_breakers import SharedBreakers
from tests.shared_servers import REDIS_URL, drop_redis_prefix, needs_redis, unique

POLICY = {"failures": 2, "reset_after": 30.0}


def config(name: str = "alpha", **policy: float) -> WorkerConfig:
    return WorkerConfig.model_validate(
        {
            "name": name,
            "provider": "openai",
            "model": "m",
            "base_url": "http://127.0.0.1:9/v1",
            "breaker": BreakerPolicy.model_validate({**POLICY, **policy}),
        }
    )


async def eventually(check: Callable[[], bool], within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.02)
    return check()


@pytest.fixture
async def hubs() -> AsyncIterator[Callable[[], SharedBreakers]]:
    """``hub()`` starts one more replica's breakers on a prefix of this test's own."""
    prefix = unique("podium_breakers") + ":"
    started: list[SharedBreakers] = []

    def hub() -> SharedBreakers:
        shared = SharedBreakers(REDIS_URL, prefix=prefix)
        started.append(shared)
        return shared

    try:
        yield hub
    finally:
        for shared in started:
            await shared.aclose()
        await drop_redis_prefix(prefix)


async def listening(shared: SharedBreakers) -> None:
    """Start, and wait until the hub is subscribed (a message published before is not heard)."""
    from redis.asyncio import Redis

    probe = Redis.from_url(REDIS_URL)

    async def subscribers() -> int:
        counts = await probe.pubsub_numsub(shared.channel)
        return int(counts[0][1])

    try:
        before = await subscribers()
        await shared.start()
        for _ in range(250):
            if await subscribers() > before:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the hub never subscribed to its channel")
    finally:
        await probe.aclose()


@needs_redis
async def test_a_circuit_opened_on_one_replica_opens_and_closes_on_the_other(
    hubs: Callable[[], SharedBreakers],
) -> None:
    first, second = hubs(), hubs()
    here, there = first.factory(config()), second.factory(config())
    await listening(first)
    await listening(second)
    here.record_failure()
    here.record_failure()  # the second consecutive failure opens it here
    assert here.state == "open"
    assert await eventually(lambda: there.state == "open")
    assert not there.allow()  # the other replica sends nothing to the failing worker

    # half-open on the first replica; its probe succeeds and closes the circuit everywhere
    here._opened_at = time.monotonic() - POLICY["reset_after"]
    assert here.allow()
    here.record_success()
    assert await eventually(lambda: there.state == "closed")
    assert there.allow()
    assert first.errors == second.errors == 0


@needs_redis
async def test_a_replica_started_later_starts_with_the_circuit_open(
    hubs: Callable[[], SharedBreakers],
) -> None:
    first = hubs()
    here = first.factory(config())
    await listening(first)
    here.record_failure()
    here.record_failure()
    await asyncio.sleep(0.6)  # the key is written in the background; time passes
    late = hubs()
    there = late.factory(config())
    other = late.factory(config("beta"))  # a worker nobody opened stays closed
    await late.start()
    assert await eventually(lambda: there.state == "open")
    assert other.state == "closed"
    # it half-opens when the first does: its clock started when the circuit opened, not when
    # this replica heard of it
    assert here._opened_at is not None and there._opened_at is not None
    assert abs(here._opened_at - there._opened_at) < 0.3


@needs_redis
async def test_the_shared_open_state_expires_with_the_reset_time(
    hubs: Callable[[], SharedBreakers],
) -> None:
    first = hubs()
    here = first.factory(config(reset_after=0.3))
    await listening(first)
    here.record_failure()
    here.record_failure()
    await asyncio.sleep(0.6)  # past reset_after: the key is gone
    late = hubs()
    there = late.factory(config(reset_after=0.3))
    await late.start()
    await asyncio.sleep(0.3)
    assert there.state == "closed"


@needs_redis
async def test_malformed_and_unknown_messages_change_nothing(
    hubs: Callable[[], SharedBreakers],
) -> None:
    shared = hubs()
    breaker = shared.factory(config())
    for message in ("open|not-a-time|alpha", "open|1|nobody-here", "???", "", "shut|1|alpha"):
        shared.apply(message)
    assert breaker.state == "closed"


async def test_without_redis_each_replica_still_cuts_a_failing_worker_off_alone() -> None:
    # nothing listens on port 9 (discard): every Redis call fails fast
    shared = SharedBreakers("redis://127.0.0.1:9/0", prefix="podium_down:", timeout=0.1)
    breaker = shared.factory(config())
    await shared.start()
    try:
        breaker.record_failure()
        breaker.record_failure()
        assert breaker.state == "open" and not breaker.allow()
        assert await eventually(lambda: shared.errors >= 2)  # the announcement and the channel
    finally:
        started = time.monotonic()
        await shared.aclose()
        assert time.monotonic() - started < 2.0  # shutting down does not wait for Redis
