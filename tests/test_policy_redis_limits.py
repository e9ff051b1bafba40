"""Closing a finished request on both limit backends: the reservation settled at the real cost
and the token bucket corrected, in one call (one Redis round trip)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from podium.policy.limits import Closing, LimitBackend, MemoryLimits
from podium.policy.redis_limits import RedisLimits
from tests.shared_servers import REDIS_URL, drop_redis_prefix, needs_redis, unique

RESERVE = {"budget": 1000, "hold_seconds": 60.0, "period_seconds": 3600.0}


@asynccontextmanager
async def redis_backend(name: str) -> AsyncIterator[RedisLimits]:
    """Limits in Redis under a prefix of their own, dropped after."""
    prefix = unique(name) + ":"
    backend = RedisLimits(REDIS_URL, prefix=prefix)
    try:
        yield backend
    finally:
        await backend.aclose()
        await drop_redis_prefix(prefix)


@pytest.fixture(params=["memory", pytest.param("redis", marks=needs_redis)])
async def limits(request: pytest.FixtureRequest) -> AsyncIterator[LimitBackend]:
    if request.param == "memory":
        yield MemoryLimits()
        return
    async with redis_backend("podium-test-close") as backend:
        yield backend


async def test_close_settles_the_reservation_and_corrects_the_tokens(limits: LimitBackend) -> None:
    assert (await limits.take_rate("k", rpm=None, tpm=100, tokens=80)).wait == 0
    assert (await limits.reserve("k", "p", amount=600, reservation="r1", **RESERVE)).allowed
    assert await limits.usage("k", "p") == (0, 600)

    await limits.close(
        Closing(
            "k",
            period="p",
            reservation="r1",
            actual=40,
            period_seconds=3600.0,
            tpm=100,
            token_delta=-70,
        )  # it cost 40 of the 600 held, and used 10 of the 80 tokens
    )

    assert await limits.usage("k", "p") == (40, 0)
    assert (await limits.take_rate("k", rpm=None, tpm=100, tokens=80)).wait == 0  # room again


async def test_close_with_only_tokens_leaves_the_budget_alone(limits: LimitBackend) -> None:
    assert (await limits.reserve("k", "p", amount=600, reservation="r1", **RESERVE)).allowed
    assert (await limits.take_rate("k", rpm=None, tpm=100, tokens=80)).wait == 0

    await limits.close(Closing("k", tpm=100, token_delta=-70))

    assert await limits.usage("k", "p") == (0, 600)  # still held: this was not its settlement
    assert (await limits.take_rate("k", rpm=None, tpm=100, tokens=80)).wait == 0


async def test_close_with_nothing_to_do_is_harmless(limits: LimitBackend) -> None:
    await limits.close(Closing("k"))
    assert await limits.usage("k", "p") == (0, 0)


async def test_settle_and_adjust_alone_do_their_half(limits: LimitBackend) -> None:
    assert (await limits.take_rate("k", rpm=None, tpm=100, tokens=80)).wait == 0
    assert (await limits.reserve("k", "p", amount=600, reservation="r1", **RESERVE)).allowed

    await limits.settle("k", "p", reservation="r1", actual=40, period_seconds=3600.0)
    assert await limits.usage("k", "p") == (40, 0)
    assert (await limits.take_rate("k", rpm=None, tpm=100, tokens=80)).wait > 0  # tokens untouched

    await limits.adjust_tokens("k", tpm=100, delta=-70)
    assert (await limits.take_rate("k", rpm=None, tpm=100, tokens=80)).wait == 0


@pytest.fixture
async def redis_limits() -> AsyncIterator[RedisLimits]:
    async with redis_backend("podium-test-slots") as backend:
        yield backend


async def take(
    limits: RedisLimits, holder: str, *, background: bool = False, limit: int = 1
) -> bool:
    return await limits.take_slot(
        "worker/alpha",
        holder,
        limit=limit,
        background_limit=limit if background else None,
        lease=30,
    )


@needs_redis
async def test_background_work_waits_while_an_interactive_caller_on_any_replica_does(
    redis_limits: RedisLimits,
) -> None:
    assert await take(redis_limits, "one-1")
    assert not await take(redis_limits, "two-1")  # turned away, and marked as waiting
    await redis_limits.give_slot("worker/alpha", "one-1")
    # The slot is free, but an interactive caller is waiting for it: not for background work.
    assert not await take(redis_limits, "three-1", background=True)
    assert await take(redis_limits, "two-1")  # its next look takes it, and its mark goes
    await redis_limits.give_slot("worker/alpha", "two-1")
    assert await take(redis_limits, "three-1", background=True)


@needs_redis
async def test_a_waiting_mark_lapses_when_its_caller_stops_looking(
    redis_limits: RedisLimits, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("podium.policy.redis_limits.WAITING_MARK", 0.2)
    assert await take(redis_limits, "one-1")
    assert not await take(redis_limits, "two-1")
    await redis_limits.give_slot("worker/alpha", "one-1")
    assert not await take(redis_limits, "three-1", background=True)
    await asyncio.sleep(0.3)  # the interactive caller went away without a word
    assert await take(redis_limits, "three-1", background=True)
    # A caller that gives up says so: its mark goes at once.
    assert not await take(redis_limits, "four-1")
    await redis_limits.give_slot("worker/alpha", "four-1")
    await redis_limits.give_slot("worker/alpha", "three-1")
    assert await take(redis_limits, "five-1", background=True)
