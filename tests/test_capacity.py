"""A worker's capacity: slots in flight, requests and tokens a minute, the wait for room, the
order interactive and background callers get it in, and a rest after the upstream's 429."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from podium.capacity import AtCapacity, Capacity, Slot
from podium.config import WorkerLimits
from podium.context import Priority


class Clock:
    """A clock the capacity's sleeps move forward, so waits are asserted, not timed."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += seconds
        await asyncio.sleep(0)


def capacity(clock: Clock | None = None, **limits: Any) -> Capacity:
    clock = clock or Clock()
    return Capacity("alpha", WorkerLimits(**limits), clock=clock, sleep=clock.sleep)


async def taken(room: Capacity, priority: Priority = "interactive", tokens: int = 10) -> Slot:
    slot = await room.acquire(priority, tokens)
    assert slot is not None
    return slot


async def test_a_worker_without_limits_gives_no_slot_and_never_waits() -> None:
    room = capacity()
    assert not room.limited
    assert await room.acquire("interactive", 10**6) is None


async def test_past_its_concurrency_a_call_is_turned_away_when_it_may_not_wait() -> None:
    room = capacity(concurrency=2, queue_seconds=0)
    first, _ = await taken(room), await taken(room)
    with pytest.raises(AtCapacity, match="all 2 slots busy") as caught:
        await room.acquire("interactive", 10)
    assert caught.value.worker == "alpha" and room.refused == 1
    # Nor when it is asked not to: the engine first looks for a worker with room.
    patient = capacity(concurrency=1)
    await taken(patient)
    with pytest.raises(AtCapacity):
        await patient.acquire("interactive", 10, wait=False)
    assert patient.refused == 0  # a first look: the call comes back to wait its turn
    first.release()
    assert await room.acquire("interactive", 10) is not None


async def test_a_call_waits_its_turn_within_queue_seconds() -> None:
    room = capacity(concurrency=1, queue_seconds=5)
    first = await taken(room)
    waiting = asyncio.ensure_future(room.acquire("interactive", 10))
    await asyncio.sleep(0.01)
    assert not waiting.done() and room.waited == 1
    first.release()
    second = await asyncio.wait_for(waiting, 1)
    assert second is not None and room.in_use == 1


async def test_a_call_that_waits_too_long_is_turned_away_and_leaves_no_slot_behind() -> None:
    room = capacity(concurrency=1, queue_seconds=0.05)
    first = await taken(room)
    with pytest.raises(AtCapacity):
        await room.acquire("interactive", 10)
    first.release()
    assert room.in_use == 0
    assert await room.acquire("interactive", 10) is not None


async def test_the_deadline_bounds_the_wait() -> None:
    clock = Clock()
    room = capacity(clock, concurrency=1, queue_seconds=60)
    await taken(room)
    with pytest.raises(AtCapacity):
        await room.acquire("interactive", 10, deadline=clock.now - 1)


async def test_interactive_callers_are_served_before_background_ones() -> None:
    room = capacity(concurrency=1, queue_seconds=5, background_share=1.0)
    first = await taken(room)
    order: list[str] = []

    async def wait(priority: Priority, name: str) -> Slot:
        slot = await room.acquire(priority, 10)
        assert slot is not None
        order.append(name)
        return slot

    batch = asyncio.ensure_future(wait("background", "batch"))
    await asyncio.sleep(0)
    person = asyncio.ensure_future(wait("interactive", "person"))
    await asyncio.sleep(0)
    first.release()
    (await person).release()
    await batch
    assert order == ["person", "batch"]


async def test_background_work_holds_at_most_its_share_of_the_slots() -> None:
    room = capacity(concurrency=4, background_share=0.5, background_queue_seconds=0)
    await taken(room, "background")
    await taken(room, "background")
    with pytest.raises(AtCapacity):
        await room.acquire("background", 10)
    # The other half stays for interactive calls.
    await taken(room)
    await taken(room)
    assert room.in_use == 4 and room.background_in_use == 2


async def test_background_work_always_has_one_slot_however_small_its_share() -> None:
    room = capacity(concurrency=1, background_share=0.1)
    assert await room.acquire("background", 10) is not None


async def test_requests_a_minute_wait_for_the_bucket_to_refill_or_are_turned_away() -> None:
    clock = Clock()
    room = capacity(clock, rpm=2, queue_seconds=60)
    await taken(room)
    await taken(room)
    await taken(room)  # waits half a minute for the third request's turn
    assert clock.slept == [30.0]
    hasty = capacity(Clock(), rpm=1)
    await taken(hasty)
    with pytest.raises(AtCapacity, match="rpm 1 reached") as caught:
        await hasty.acquire("interactive", 10)
    assert caught.value.wait == pytest.approx(60.0)


async def test_tokens_a_minute_are_charged_an_estimate_then_what_was_used() -> None:
    clock = Clock()
    room = capacity(clock, tpm=1000, queue_seconds=0)
    slot = await taken(room, tokens=900)
    with pytest.raises(AtCapacity, match="tpm 1000 reached"):
        await room.acquire("interactive", 200)
    slot.release(used_tokens=100)  # the answer was short: 800 tokens come back
    assert await room.acquire("interactive", 200) is not None


async def test_background_work_uses_at_most_its_share_of_each_minute() -> None:
    room = capacity(rpm=4, background_share=0.5, background_queue_seconds=0)
    await taken(room, "background")
    await taken(room, "background")
    with pytest.raises(AtCapacity, match=r"background work's share \(rpm 2\) reached"):
        await room.acquire("background", 10)
    await taken(room)
    await taken(room)


async def test_after_an_upstream_429_calls_rest_until_the_time_it_asked_for() -> None:
    clock = Clock()
    room = capacity(clock)
    room.rest(30)
    with pytest.raises(AtCapacity, match="asked for a pause") as caught:
        await room.acquire("interactive", 10)
    assert caught.value.wait == pytest.approx(30)
    # A retry that has waited the pause out itself is let through.
    assert await room.acquire("interactive", 10, rested=True) is None
    # Background work may wait it out.
    assert await room.acquire("background", 10) is None
    assert clock.slept == [30.0]
    # Once the pause is over, nobody waits.
    assert await room.acquire("interactive", 10) is None and room.resting_until == 0.0


async def test_new_limits_apply_in_place_and_free_the_callers_waiting() -> None:
    room = capacity(concurrency=1, queue_seconds=5)
    await taken(room)
    waiting = asyncio.ensure_future(room.acquire("interactive", 10))
    await asyncio.sleep(0)
    room.reconfigure(WorkerLimits(concurrency=2, queue_seconds=5))
    assert await asyncio.wait_for(waiting, 1) is not None
    assert room.in_use == 2


async def test_a_slot_is_given_back_once() -> None:
    room = capacity(concurrency=1)
    slot = await taken(room)
    slot.release()
    slot.release()
    assert room.in_use == 0


async def test_a_caller_cancelled_while_waiting_takes_no_slot() -> None:
    room = capacity(concurrency=1, queue_seconds=5)
    first = await taken(room)
    waiting = asyncio.ensure_future(room.acquire("interactive", 10))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    first.release()
    assert room.in_use == 0


async def test_a_shared_store_that_fails_does_not_stop_calls() -> None:
    class Down:
        async def take_rate(self, key_id: str, **_: Any) -> Any:
            raise ConnectionError("redis unreachable")

        async def adjust_tokens(self, key_id: str, **_: Any) -> None:
            raise ConnectionError("redis unreachable")

    clock = Clock()
    room = Capacity("alpha", WorkerLimits(rpm=1), Down(), clock=clock, sleep=clock.sleep)
    assert await room.acquire("interactive", 10) is not None
    assert await room.acquire("interactive", 10) is not None


class Shared:
    """The replicas' count of a worker's slots, as RedisLimits keeps it, without the leases:
    an interactive caller turned away is marked as waiting, and background work is turned away
    while one is."""

    def __init__(self) -> None:
        self.holders: dict[str, set[str]] = {}
        self.background: dict[str, set[str]] = {}
        self.waiting: dict[str, set[str]] = {}
        self.down = False
        self.renewed: list[list[str]] = []

    async def take_slot(
        self,
        worker_key: str,
        holder: str,
        *,
        limit: int,
        background_limit: int | None,
        lease: float,
    ) -> bool:
        if self.down:
            raise ConnectionError("redis unreachable")
        held = self.holders.setdefault(worker_key, set())
        background = self.background.setdefault(worker_key, set())
        waiting = self.waiting.setdefault(worker_key, set())
        if background_limit is not None and waiting:
            return False
        if len(held) >= limit:
            if background_limit is None:
                waiting.add(holder)
            return False
        if background_limit is not None:
            if len(background) >= background_limit:
                return False
            background.add(holder)
        waiting.discard(holder)
        held.add(holder)
        return True

    async def renew_slots(self, worker_key: str, holders: list[str], lease: float) -> None:
        self.renewed.append(holders)

    async def give_slot(self, worker_key: str, holder: str) -> None:
        for kept in (self.holders, self.background, self.waiting):
            kept.get(worker_key, set()).discard(holder)


def replica(shared: Shared, **limits: Any) -> Capacity:
    clock = Clock()
    return Capacity("alpha", WorkerLimits(**limits), shared=shared, clock=clock, sleep=clock.sleep)


async def test_replicas_sharing_a_store_share_the_slots() -> None:
    shared = Shared()
    one, two = replica(shared, concurrency=1), replica(shared, concurrency=1, queue_seconds=0)
    held = await taken(one)
    with pytest.raises(AtCapacity, match="all 1 slots busy across replicas"):
        await two.acquire("interactive", 10)
    assert two.in_use == 0  # its own slot was given back with the refusal
    held.release()
    await asyncio.sleep(0)  # the store hears of it off the call's path
    assert await two.acquire("interactive", 10) is not None


async def test_a_replica_waits_for_a_shared_slot_within_its_patience() -> None:
    shared = Shared()
    one = replica(shared, concurrency=1)
    # On the real clock: it looks again every few tens of milliseconds.
    two = Capacity("alpha", WorkerLimits(concurrency=1, queue_seconds=5), shared=shared)
    held = await taken(one)
    waiting = asyncio.ensure_future(two.acquire("interactive", 10))
    await asyncio.sleep(0.01)
    assert not waiting.done() and two.waited == 1
    held.release()
    assert await asyncio.wait_for(waiting, 5) is not None


async def test_an_interactive_caller_on_one_replica_goes_before_background_work_on_another() -> (
    None
):
    shared = Shared()
    held = await taken(replica(shared, concurrency=1))
    # On the real clock: each looks again every few tens of milliseconds.
    people = Capacity("alpha", WorkerLimits(concurrency=1, queue_seconds=5), shared=shared)
    batch = Capacity(
        "alpha", WorkerLimits(concurrency=1, background_queue_seconds=5), shared=shared
    )
    person = asyncio.ensure_future(people.acquire("interactive", 10))
    await asyncio.sleep(0.01)  # it has looked, found the slot held, and is marked as waiting
    job = asyncio.ensure_future(batch.acquire("background", 10))
    await asyncio.sleep(0.05)
    held.release()
    slot = await asyncio.wait_for(person, 5)
    await asyncio.sleep(0.3)  # the batch looked again meanwhile: the slot is the person's
    assert slot is not None and not job.done()
    slot.release()
    assert await asyncio.wait_for(job, 5) is not None


async def test_an_interactive_caller_that_gives_up_no_longer_holds_up_background_work() -> None:
    shared = Shared()
    held = await taken(replica(shared, concurrency=1))
    impatient = Capacity("alpha", WorkerLimits(concurrency=1, queue_seconds=0.05), shared=shared)
    with pytest.raises(AtCapacity):
        await impatient.acquire("interactive", 10)
    await asyncio.sleep(0)  # the store hears of it off the call's path
    assert shared.waiting["worker/alpha"] == set()
    # Nor one that only looked, on its way to another worker with room.
    with pytest.raises(AtCapacity):
        await impatient.acquire("interactive", 10, wait=False)
    await asyncio.sleep(0)
    assert shared.waiting["worker/alpha"] == set()
    held.release()
    await asyncio.sleep(0)
    assert await replica(shared, concurrency=1).acquire("background", 10) is not None


async def test_background_work_holds_its_share_of_the_shared_slots() -> None:
    shared = Shared()
    limits = {"concurrency": 2, "background_queue_seconds": 0}
    one, two = replica(shared, **limits), replica(shared, **limits)
    await taken(one, "background")
    with pytest.raises(AtCapacity, match="across replicas"):
        await two.acquire("background", 10)
    assert await two.acquire("interactive", 10) is not None


async def test_when_the_store_is_down_each_replica_counts_its_own() -> None:
    shared = Shared()
    shared.down = True
    one, two = replica(shared, concurrency=1), replica(shared, concurrency=1)
    assert await one.acquire("interactive", 10) is not None
    assert await two.acquire("interactive", 10) is not None


async def test_shared_slots_are_renewed_while_held_and_no_longer() -> None:
    shared = Shared()
    room = replica(shared, concurrency=2)
    room.lease = 0.06
    held = await taken(room)
    await asyncio.sleep(0.05)
    assert shared.renewed and shared.renewed[-1] == [held.holder]
    held.release()
    await asyncio.sleep(0.05)
    assert room._renewer is not None and room._renewer.done()
