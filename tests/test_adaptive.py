"""A concurrency limit learned from how fast the worker answers (``limits.adaptive``): it climbs
while answers keep pace, settles where a queueing server starts to crowd, comes down when the
upstream says it is overloaded, relearns a server that changed speed, and through the gateway
keeps a self-hosted server's own queue short without turning anyone away."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from pydantic import ValidationError

from podium.adaptive import AdaptiveLimit
from podium.capacity import Capacity
from podium.config import AdaptiveConcurrency, WorkerLimits
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker

SECOND_A_TOKEN = 0.01


def learned(**settings: Any) -> AdaptiveLimit:
    return AdaptiveLimit(AdaptiveConcurrency(**settings))


def crowded(parallel: int, seconds: float = SECOND_A_TOKEN) -> Callable[[int], float]:
    """A server that works on ``parallel`` calls at once and queues the rest: with ``limit``
    calls in flight, each takes this long a token."""
    return lambda limit: seconds * max(1.0, limit / parallel)


def serve(adaptive: AdaptiveLimit, speed: Callable[[int], float], answers: int) -> list[int]:
    """The limit as each of ``answers`` answers comes back, every call finding it reached."""
    seen = []
    for _ in range(answers):
        seconds = speed(adaptive.limit) * 10
        adaptive.answered(seconds, 9, busy=True, epoch=adaptive.epoch)
        seen.append(adaptive.limit)
    return seen


def settled(seen: list[int]) -> tuple[int, int]:
    """The range the limit keeps, leaving out the one window in twenty measuring the worker
    uncrowded."""
    ordered = sorted(seen)
    return ordered[len(ordered) // 10], ordered[-1]


def test_it_starts_at_min_and_climbs_by_half_while_answers_keep_pace() -> None:
    adaptive = learned(max=64)
    seen = serve(adaptive, crowded(parallel=1000), 2000)
    assert list(dict.fromkeys(seen))[:12] == [1, 2, 3, 4, 6, 9, 13, 19, 28, 42, 63, 64]
    assert adaptive.lowered == 0
    # Now and then one window at half the limit measures the worker uncrowded (here it is
    # never crowded), and the limit is put back.
    assert set(seen[seen.index(64) :]) == {32, 64}


def test_it_settles_where_a_queueing_server_starts_to_crowd() -> None:
    adaptive = learned()
    # Answers may take up to twice the best (the tolerance): so up to twice the server's slots,
    # and one more, which finds that out.
    assert settled(serve(adaptive, crowded(parallel=4), 3000)[1000:]) == (6, 9)
    assert adaptive.lowered > 0 and not adaptive.climbing


def test_a_lower_tolerance_keeps_the_servers_queue_shorter() -> None:
    adaptive = learned(tolerance=1.25)
    assert settled(serve(adaptive, crowded(parallel=4), 3000)[1000:]) == (4, 6)


def test_it_does_not_climb_while_calls_do_not_reach_the_limit() -> None:
    adaptive = learned()
    for _ in range(100):
        adaptive.answered(0.1, 9, busy=False, epoch=adaptive.epoch)
    assert adaptive.limit == 1 and adaptive.best == pytest.approx(0.01)


def test_it_stays_within_its_bounds() -> None:
    high = learned(min=3, max=5)
    assert set(serve(high, crowded(parallel=1000), 500)) == {3, 4, 5}
    low = learned(min=2, max=8)
    assert min(serve(low, crowded(parallel=1), 500)) == 2


def test_an_overloaded_upstream_halves_the_limit_once_for_the_calls_in_flight() -> None:
    adaptive = learned()
    serve(adaptive, crowded(parallel=1000), 100)
    before, epoch = adaptive.limit, adaptive.epoch
    assert adaptive.overloaded(epoch)
    assert adaptive.limit == before // 2
    # The other calls sent before the cut fail the same way: that says nothing new.
    assert not adaptive.overloaded(epoch)
    assert adaptive.limit == before // 2 and not adaptive.climbing


def test_trouble_during_a_probe_is_not_undone_when_the_probe_ends() -> None:
    adaptive = learned(max=64)
    seen = serve(adaptive, crowded(parallel=1000), 2000)
    probing = seen.index(32)  # the limit halved for one window, to measure the worker
    adaptive = learned(max=64)
    serve(adaptive, crowded(parallel=1000), probing + 1)
    assert adaptive.limit == 32
    assert adaptive.overloaded(adaptive.epoch)  # the upstream says 503 meanwhile
    serve(adaptive, crowded(parallel=1000), 16)  # the next window: no probe left to end
    assert adaptive.limit == 17  # one more from the lowered 16, not put back to 64


def test_answers_to_calls_sent_before_a_change_are_not_counted() -> None:
    adaptive = learned()
    serve(adaptive, crowded(parallel=1000), 10)
    assert adaptive.limit == 2
    for _ in range(50):  # slow answers to calls sent under the old limit
        assert not adaptive.answered(10.0, 9, busy=True, epoch=0)
    assert adaptive.limit == 2 and adaptive.lowered == 0


def test_a_server_that_becomes_slower_or_faster_is_relearned() -> None:
    adaptive = learned()
    serve(adaptive, crowded(parallel=4), 2000)
    # The operator moved the server to slower hardware: every answer takes three times as long.
    slower = serve(adaptive, crowded(parallel=4, seconds=3 * SECOND_A_TOKEN), 3000)
    assert min(slower) == 1  # brought down to min once, where the new speed is the best
    assert settled(slower[-1000:]) == (6, 9)
    assert adaptive.best == pytest.approx(3 * SECOND_A_TOKEN)
    # And to faster: the next window measuring it uncrowded finds it, and the limit settles
    # where it was.
    faster = serve(adaptive, crowded(parallel=4, seconds=SECOND_A_TOKEN), 3000)
    assert adaptive.best == pytest.approx(SECOND_A_TOKEN)
    assert settled(faster[-1000:]) == (6, 9)


def test_new_bounds_keep_what_was_learned_within_them() -> None:
    adaptive = learned()
    serve(adaptive, crowded(parallel=1000), 200)
    assert adaptive.limit > 20
    adaptive.retune(AdaptiveConcurrency(max=16))
    assert adaptive.limit == 16
    adaptive.retune(AdaptiveConcurrency(min=18, max=32))
    assert adaptive.limit == 18


def test_limits_take_adaptive_or_concurrency_but_not_both() -> None:
    assert WorkerLimits.model_validate({"adaptive": True}).adaptive == AdaptiveConcurrency()
    assert WorkerLimits.model_validate({"adaptive": False}).adaptive is None
    with pytest.raises(ValidationError, match="set concurrency or adaptive, not both"):
        WorkerLimits.model_validate({"concurrency": 4, "adaptive": {}})
    with pytest.raises(ValidationError, match=r"min \(8\) is above max \(4\)"):
        AdaptiveConcurrency(min=8, max=4)


async def test_a_capacity_with_a_learned_limit_hands_waiting_callers_the_room_it_learns() -> None:
    now = [0.0]
    room = Capacity("alpha", WorkerLimits(adaptive=AdaptiveConcurrency()), clock=lambda: now[0])
    assert room.limited and room.slots == 1
    first = await room.acquire("interactive", 10)
    waiting = [asyncio.ensure_future(room.acquire("interactive", 10)) for _ in range(2)]
    await asyncio.sleep(0)
    assert room.in_use == 1 and not any(w.done() for w in waiting)
    # Nine quick answers at the limit, each call finding it reached, then the tenth: one more
    # slot, and the two callers waiting are both let in.
    assert first is not None and first.busy
    for _ in range(9):
        room.adaptive.answered(0.1, 9, busy=True, epoch=0)  # type: ignore[union-attr]
    now[0] += 0.1
    first.release(19, answer_tokens=9)
    assert room.slots == 2
    slots = await asyncio.gather(*waiting)
    assert room.in_use == 2 and all(s is not None for s in slots)
    # An overloaded answer brings it down at once; calls in flight keep their room.
    for slot in slots:
        assert slot is not None
        slot.release(overloaded=True)
    assert room.slots == 1 and room.in_use == 0 and room.adaptive.lowered == 1  # type: ignore[union-attr]


async def test_through_the_gateway_a_learned_limit_keeps_the_servers_queue_short(
    gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    """Twelve callers at once on a server that works on two calls at a time: with the limit
    learned, they wait their turn in Podium, where priorities hold, not in the server."""
    fake_openai.behaviour.latency = 0.02
    fake_openai.behaviour.parallel = 2
    limits = {"adaptive": {"max": 16}}
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, limits=limits)]) as served,
        openai.AsyncOpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0) as client,
        httpx.AsyncClient(base_url=served.url) as admin,
    ):

        async def caller() -> int:
            answered = 0
            for _ in range(25):
                reply = await client.chat.completions.create(
                    model="alpha", messages=[{"role": "user", "content": "Hi"}]
                )
                answered += bool(reply.choices[0].message.content)
            return answered

        answers = await asyncio.gather(*(caller() for _ in range(12)))
        health = (await admin.get("/admin/workers/alpha")).json()["health"]
        metrics = (await admin.get("/metrics")).text
    assert sum(answers) == 300  # nobody turned away
    learned_limit = health["adaptive"]["limit"]
    # At most twice the server's two (the tolerance), and the one or two more finding that out.
    assert 2 <= learned_limit <= 6 and health["slots"] == learned_limit
    assert health["adaptive"]["best_ms_per_token"] > 0 and health["adaptive"]["raised"] >= 2
    # Without the limit all twelve would be at the server, ten of them queued there.
    assert fake_openai.most_waiting <= 4
    assert f'podium_worker_slots{{worker="alpha"}} {learned_limit}' in metrics


async def test_streams_and_failures_teach_the_learned_limit(
    gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    limits = {"adaptive": {"max": 8}}
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, limits=limits)]) as served,
        openai.AsyncOpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0) as client,
        httpx.AsyncClient(base_url=served.url) as admin,
    ):
        # One caller at a time at a limit of 1: each call takes the last room, and a window of
        # ten streamed answers at the worker's own speed raises the limit.
        for _ in range(10):
            stream = await client.chat.completions.create(
                model="alpha", messages=[{"role": "user", "content": "Hi"}], stream=True
            )
            assert [chunk async for chunk in stream]
        raised = (await admin.get("/admin/workers/alpha")).json()["health"]
        # The server says it is overloaded: the call is retried, and the limit comes down.
        fake_openai.behaviour.fail(503, "server overloaded")
        reply = await client.chat.completions.create(
            model="alpha", messages=[{"role": "user", "content": "Hi"}]
        )
        assert reply.choices[0].message.content
        lowered = (await admin.get("/admin/workers/alpha")).json()["health"]
    assert raised["slots"] == 2 and raised["adaptive"]["raised"] == 1
    assert lowered["slots"] == 1 and lowered["adaptive"]["lowered"] == 1


async def test_a_429_that_says_when_to_come_back_rests_the_worker_and_keeps_its_limit(
    gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    """A vendor's per-minute quota running out is not too many calls at once: the worker
    rests for the pause it was given, and the learned limit stays. A 429 without a pause
    (a self-hosted server's full queue) lowers it, as a 503 does."""
    limits = {"adaptive": {"max": 8}}
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, limits=limits)]) as served,
        openai.AsyncOpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0) as client,
        httpx.AsyncClient(base_url=served.url) as admin,
    ):

        async def ask() -> None:
            await client.chat.completions.create(
                model="alpha", messages=[{"role": "user", "content": "Hi"}]
            )

        for _ in range(10):
            await ask()
        before = (await admin.get("/admin/workers/alpha")).json()["health"]
        fake_openai.behaviour.fail(429, "Rate limit reached for requests", retry_after=0.05)
        await ask()
        quota = (await admin.get("/admin/workers/alpha")).json()["health"]
        fake_openai.behaviour.fail(429, "Too many requests")
        await ask()
        crowded = (await admin.get("/admin/workers/alpha")).json()["health"]
    assert before["slots"] == 2
    assert quota["slots"] == 2 and quota["adaptive"]["lowered"] == 0
    assert crowded["slots"] == 1 and crowded["adaptive"]["lowered"] == 1


async def test_a_limit_is_switched_to_learned_at_run_time_and_shown_as_learned(
    gateway: Callable[..., Any], fake_openai: FakeOpenAI
) -> None:
    from podium.commands.workers import worker_rows

    limits = {"concurrency": 4}
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url, limits=limits)]) as served,
        httpx.AsyncClient(base_url=served.url) as admin,
    ):
        both = await admin.patch("/admin/workers/alpha", json={"limits": {"adaptive": True}})
        learned_now = await admin.patch(
            "/admin/workers/alpha",
            json={"limits": {"concurrency": None, "adaptive": {"min": 3}}},
        )
        listed = (await admin.get("/admin/workers")).json()["workers"]
    assert both.status_code == 422
    assert "set concurrency or adaptive, not both" in both.json()["error"]["message"]
    assert learned_now.status_code == 200
    health = learned_now.json()["health"]
    assert health["slots"] == 3 and health["adaptive"]["limit"] == 3
    assert health["adaptive"]["best_ms_per_token"] is None  # nothing measured yet
    assert worker_rows(listed)[0][-1] == "0/3 (learned)"


async def test_with_no_interactive_call_background_work_may_use_the_whole_learned_limit() -> None:
    """A limit can only be learned with the worker at it, so background work borrows the
    interactive share while nobody asks; the first interactive call takes it back."""
    now = [0.0]
    limits = WorkerLimits(adaptive=AdaptiveConcurrency(min=4))
    room = Capacity("alpha", limits, clock=lambda: now[0])
    assert room.slots == 4 and room.background_slots == 2
    now[0] += 6  # no interactive call yet: all four slots, the last one found the limit
    batch = [await room.acquire("background", 10) for _ in range(4)]
    assert room.background_in_use == 4 and batch[-1] is not None and batch[-1].busy
    person = asyncio.ensure_future(room.acquire("interactive", 10))
    await asyncio.sleep(0)
    assert not person.done()  # waits for one background answer, first in line
    more_batch = asyncio.ensure_future(room.acquire("background", 10))
    await asyncio.sleep(0)
    assert batch[0] is not None
    batch[0].release()
    assert await person is not None
    # Now the share holds again: background work gets back to its two slots, no more.
    for slot in batch[1:3]:
        assert slot is not None
        slot.release()
    assert await more_batch is not None
    last_batch = asyncio.ensure_future(room.acquire("background", 10))
    await asyncio.sleep(0)
    assert room.in_use == 3 and room.background_in_use == 2 and not last_batch.done()
    batch[3].release()  # type: ignore[union-attr]
    assert await last_batch is not None and room.background_in_use == 2


async def test_a_call_held_back_by_its_share_does_not_raise_the_learned_limit() -> None:
    now = [0.0]
    room = Capacity(
        "alpha", WorkerLimits(adaptive=AdaptiveConcurrency(min=4)), clock=lambda: now[0]
    )
    person = await room.acquire("interactive", 10)  # someone is asking: the share holds
    batch = [await room.acquire("background", 10) for _ in range(2)]
    held = asyncio.ensure_future(room.acquire("background", 10))
    await asyncio.sleep(0)
    assert room.in_use == 3 and not held.done()
    assert batch[0] is not None
    batch[0].release(19, answer_tokens=9)
    slot = await held
    assert slot is not None and not slot.busy  # it waited for its share, not for the limit
    for taken in (person, batch[1], slot):
        assert taken is not None
        taken.release()
