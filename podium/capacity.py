"""How much of one worker Podium may use: calls in flight at once, requests and tokens per
minute (a worker's ``limits:``), and a rest after the upstream itself said 429.

A call takes room before it is sent and gives it back when its answer ends. With no room, it
waits its turn for at most ``queue_seconds`` (``background_queue_seconds`` for background work:
batches, background responses, the judge), never past the request's deadline, and is then
turned away: the engine tries the next worker the decision allows. Interactive calls are
served before background ones, and background work may hold at most ``background_share`` of
the slots and of each per-minute limit, so a batch never starves the traffic people wait on.

Slots, and the per-minute buckets (the ones the key limits use, :mod:`podium.policy.limits`),
are counted in this process; with ``access.limits.backend: redis`` they are counted in Redis
too, so every replica draws on one quota, as the vendor counts it or the server serves it. A
shared slot is leased: one whose replica stopped without giving it back lapses.

With ``limits.adaptive`` the concurrency is learned from how fast the worker answers
(:mod:`podium.adaptive`) instead of declared; background work may then hold all of it while
no interactive call asks, since a limit can only be learned with the worker at it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from podium.adaptive import AdaptiveLimit
from podium.config import WorkerLimits
from podium.context import Priority
from podium.policy.limits import MemoryLimits, RateTake
from podium.providers.quota import VendorQuota

log = logging.getLogger("podium.capacity")

Sleep = Callable[[float], Awaitable[None]]
SHARED_LEASE = 30.0  # seconds a shared slot outlives a replica that stopped without giving it back
SHARED_POLL = (0.02, 0.25)  # the first and the longest pause between looks for a shared slot
# Seconds without an interactive call after which background work may use the whole of a
# learned limit: the limit can only be learned with the worker at it.
INTERACTIVE_IDLE = 5.0


class RateBuckets(Protocol):
    async def take_rate(
        self, key_id: str, *, rpm: int | None, tpm: int | None, tokens: int
    ) -> RateTake: ...

    async def adjust_tokens(self, key_id: str, *, tpm: int, delta: int) -> None: ...


class SharedSlots(Protocol):
    """A worker's slots counted across replicas (``RedisLimits``, podium/policy/redis_limits).
    An interactive ``holder`` turned away by :meth:`take_slot` is marked as waiting until it
    takes a slot, is given back (:meth:`give_slot`) or stops looking, and background work is
    turned away meanwhile."""

    async def take_slot(
        self,
        worker_key: str,
        holder: str,
        *,
        limit: int,
        background_limit: int | None,
        lease: float,
    ) -> bool: ...

    async def renew_slots(self, worker_key: str, holders: list[str], lease: float) -> None: ...

    async def give_slot(self, worker_key: str, holder: str) -> None: ...


class AtCapacity(Exception):
    """No room on the worker within the wait allowed. ``wait``: seconds until there may be."""

    def __init__(self, worker: str, reason: str, wait: float) -> None:
        super().__init__(f"worker {worker!r} at capacity: {reason}")
        self.worker = worker
        self.reason = reason
        self.wait = wait


class Slot:
    """Room taken on a worker for one call: give it back with :meth:`release` when the answer
    ends, with the tokens it really used (the token bucket was charged an estimate)."""

    __slots__ = (
        "busy",
        "capacity",
        "counted",
        "epoch",
        "holder",
        "priority",
        "released",
        "sent",
        "tokens",
    )

    def __init__(self, capacity: Capacity, priority: Priority, tokens: int, counted: bool) -> None:
        self.capacity = capacity
        self.priority = priority
        self.tokens = tokens
        self.counted = counted  # holds one of the worker's slots
        self.holder: str | None = None  # its name among the replicas' shared slots, if any
        self.released = False
        # For a learned limit: whether the call found the limit reached, the limit's epoch
        # then, and when it was sent.
        self.busy = False
        self.epoch = 0
        self.sent = 0.0

    def release(
        self,
        used_tokens: int | None = None,
        *,
        answer_tokens: int | None = None,
        overloaded: bool = False,
    ) -> None:
        """Give the room back. ``answer_tokens``: the call was answered, with that many
        tokens; ``overloaded``: the upstream said it is overloaded or did not answer in time.
        Either one teaches a learned limit (``limits.adaptive``)."""
        if self.released:
            return
        self.released = True
        self.capacity._give_back(self, used_tokens, answer_tokens, overloaded)


class Capacity:
    def __init__(
        self,
        worker: str,
        limits: WorkerLimits,
        buckets: RateBuckets | None = None,
        *,
        shared: SharedSlots | None = None,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.worker = worker
        self.buckets: RateBuckets = buckets or MemoryLimits(clock)
        self.shared = shared  # the replicas' count of the slots, when they share one
        self.lease = SHARED_LEASE
        self._holders: dict[str, Priority] = {}  # this process's shared slots, to renew
        self._replica = uuid.uuid4().hex[:12]
        self._taken = 0  # shared slots taken so far: each holder's name is unique
        self._renewer: asyncio.Task[None] | None = None
        self._clock = clock
        self._sleep = sleep
        self.resting_until = 0.0  # perf_counter time before which the upstream asked not to call
        self.resting_why = ""
        # What the vendor last said is left of its quota (podium/providers/quota.py), and when.
        self.vendor: VendorQuota | None = None
        self.vendor_seen = 0.0
        self.in_use = 0
        self.background_in_use = 0
        self.refused = 0  # calls turned away, for /metrics
        self.waited = 0  # calls that waited for room, for /metrics
        self._queues: dict[Priority, deque[asyncio.Future[None]]] = {
            "interactive": deque(),
            "background": deque(),
        }
        self._key = f"worker/{worker}"
        self._background_key = f"worker/{worker}/background"
        self._tasks: set[asyncio.Task[None]] = set()  # store updates sent off the call's path
        self._unchecked = False  # the shared store failed: said once, until it answers again
        self.adaptive: AdaptiveLimit | None = None  # the concurrency, when it is learned
        self._interactive_at = -math.inf  # when an interactive call last asked for room
        self.reconfigure(limits)

    def reconfigure(self, limits: WorkerLimits) -> None:
        """New limits, in place: calls in flight keep their room, and callers waiting are
        given any room the change made."""
        self.limits = limits
        concurrency = limits.concurrency
        if limits.adaptive is None:
            self.adaptive = None
        elif self.adaptive is None:
            self.adaptive = AdaptiveLimit(limits.adaptive)
        else:
            self.adaptive.retune(limits.adaptive)
        if self.adaptive is not None:
            concurrency = self.adaptive.limit
        self._set_slots(concurrency)
        # Whether any limit is set: the engine asks nothing of an unlimited worker that is not
        # resting (two attribute reads a call).
        self.limited = bool(concurrency or limits.rpm or limits.tpm)
        self._hand_on()

    def resting_for(self) -> float:
        """Seconds left of the upstream's pause (0.0: none)."""
        return max(0.0, self.resting_until - self._clock()) if self.resting_until else 0.0

    def rest(self, seconds: float, why: str = "the upstream asked for a pause (429)") -> None:
        """The upstream answered 429 and asked for ``seconds`` (or said its quota is used up
        for that long): no call of this process goes to the worker before then (each would
        only be told 429)."""
        until = self._clock() + seconds
        if until > self.resting_until:
            self.resting_until = until
            self.resting_why = why

    def observe(self, quota: VendorQuota) -> None:
        """The vendor's word on what is left of its quota, with an answer: kept for the admin
        API, and a limit with nothing left pauses the worker until it resets, as a 429 would."""
        self.vendor, self.vendor_seen = quota, self._clock()
        exhausted = quota.exhausted_for()
        if exhausted is not None and exhausted > 0:
            self.rest(exhausted, "the vendor says its quota is used up for now")

    def vendor_state(self) -> dict[str, float | int | None]:
        """The vendor's last word on its quota, as the admin API shows it."""
        assert self.vendor is not None
        return {
            "requests_remaining": self.vendor.requests_remaining,
            "tokens_remaining": self.vendor.tokens_remaining,
            "seconds_ago": round(self._clock() - self.vendor_seen, 1),
        }

    def patience(self, priority: Priority) -> float:
        """Seconds a call of ``priority`` may wait for room here."""
        if priority == "interactive":
            return self.limits.queue_seconds
        return self.limits.background_queue_seconds

    async def acquire(
        self,
        priority: Priority,
        tokens: int,
        deadline: float | None = None,
        *,
        wait: bool = True,
        rested: bool = False,
    ) -> Slot | None:
        """Room for one call of about ``tokens`` tokens (prompt and answer), waiting for it as
        long as allowed (not at all unless ``wait``); None when the worker has no limits
        (nothing to give back). Raises :class:`AtCapacity` when there is no room in time.
        ``rested``: the call is a retry that has already waited out the upstream's pause."""
        now = self._clock()
        if priority == "interactive":
            self._interactive_at = now
        give_up = now + self.patience(priority) if wait else now
        if deadline is not None and deadline < give_up:
            give_up = deadline
        try:
            if self.resting_until and not rested:
                await self._rested(now, give_up)
            if not self.limited:
                return None
            counted = self.slots is not None
            busy = await self._take_slot(priority, give_up) if counted else False
            slot = Slot(self, priority, tokens, counted)
            try:
                if counted and self.shared is not None:
                    await self._take_shared(slot, give_up)
                await self._take_rate(slot, give_up)
            except BaseException:
                slot.release()
                raise
            if self.adaptive is not None:
                slot.busy, slot.epoch, slot.sent = busy, self.adaptive.epoch, self._clock()
        except AtCapacity:
            # Turned away for good; a first look that may come back and wait is not counted.
            if wait or not self.patience(priority):
                self.refused += 1
            raise
        return slot

    async def _rested(self, now: float, give_up: float) -> None:
        until = self.resting_until
        if until <= now:
            self.resting_until = 0.0
            return
        if until > give_up:
            raise AtCapacity(self.worker, self.resting_why, until - now)
        self.waited += 1
        await self._sleep(until - now)

    def _room(self, priority: Priority) -> bool:
        if self.slots is None or self.background_slots is None:
            return True  # the limit was lifted while calls waited
        if self.in_use >= self.slots:
            return False
        return priority == "interactive" or self.background_in_use < self._background_limit()

    def _background_limit(self) -> int:
        """The slots background work may hold: its share, or with a learned limit and no
        interactive call for ``INTERACTIVE_IDLE`` seconds, all of them (the first interactive
        call then waits for one background answer at most, and the share holds again)."""
        assert self.slots is not None and self.background_slots is not None
        idle = self.adaptive is not None and self._clock() - self._interactive_at > INTERACTIVE_IDLE
        return self.slots if idle else self.background_slots

    def _occupy(self, priority: Priority) -> None:
        self.in_use += 1
        if priority == "background":
            self.background_in_use += 1

    async def _take_slot(self, priority: Priority, give_up: float) -> bool:
        """One of this process's slots. True when the call found the whole limit reached:
        it took the last free slot, or waited while every slot was held (what teaches a
        learned limit that the limit, not the traffic, is what holds calls back)."""
        queue = self._queues[priority]
        # Interactive calls go before any background one that waits; each kind in turn.
        ahead = queue or (priority == "background" and self._queues["interactive"])
        if not ahead and self._room(priority):
            self._occupy(priority)
            return self.in_use == self.slots
        left = give_up - self._clock()
        if left <= 0:
            raise AtCapacity(self.worker, f"all {self.slots} slots busy", 1.0)
        full = self.slots is not None and self.in_use >= self.slots
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(turn)
        self.waited += 1
        try:
            async with asyncio.timeout(left):
                await turn  # resolved by _hand_on, with the slot already counted as ours
        except BaseException as error:
            if turn.done() and not turn.cancelled():
                self._free(priority)  # handed a slot just as time ran out: give it on
            else:
                turn.cancel()
            if isinstance(error, TimeoutError):
                raise AtCapacity(self.worker, f"all {self.slots} slots busy", 1.0) from None
            raise
        finally:
            if turn in queue:
                queue.remove(turn)
        return full

    def _free(self, priority: Priority) -> None:
        self.in_use -= 1
        if priority == "background":
            self.background_in_use -= 1
        self._hand_on()

    def _hand_on(self) -> None:
        """Give free slots to the callers waiting, interactive ones first."""
        for priority in ("interactive", "background"):
            queue = self._queues[priority]
            while queue and self._room(priority):
                turn = queue.popleft()
                if not turn.done():
                    self._occupy(priority)
                    turn.set_result(None)

    async def _take_shared(self, slot: Slot, give_up: float) -> None:
        """One of the slots the replicas share, looking again now and then until ``give_up``
        (this process's own slot is held meanwhile, so its callers keep their order)."""
        assert self.shared is not None and self.slots is not None
        self._taken += 1
        holder = f"{self._replica}-{self._taken}"
        background = self._background_limit() if slot.priority == "background" else None
        pause, waited = SHARED_POLL[0], False
        try:
            while True:
                try:
                    taken = await self.shared.take_slot(
                        self._key,
                        holder,
                        limit=self.slots,
                        background_limit=background,
                        lease=self.lease,
                    )
                except Exception as error:  # the store is down: this process's count holds
                    self._store_failed(error)
                    return
                self._store_answered()
                if taken:
                    break
                left = give_up - self._clock()
                if left <= 0:
                    raise AtCapacity(
                        self.worker, f"all {self.slots} slots busy across replicas", 1.0
                    )
                if not waited:
                    waited = True
                    self.waited += 1
                await self._sleep(min(pause, left))
                pause = min(pause * 2, SHARED_POLL[1])
        except BaseException:
            if background is None:
                # Turned away (a first look included) or gone: its mark as an interactive
                # caller waiting goes too, so background work on the other replicas is not held
                # up for nobody.
                self._send(self.shared.give_slot(self._key, holder))
            raise
        slot.holder = holder
        self._holders[holder] = slot.priority
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        """Renew this process's shared slots' leases while it holds any."""
        while self._holders:
            await asyncio.sleep(self.lease / 3)
            holders = list(self._holders)
            if holders and self.shared is not None:
                try:
                    await self.shared.renew_slots(self._key, holders, self.lease)
                except Exception as error:
                    self._store_failed(error)

    async def _take_rate(self, slot: Slot, give_up: float) -> None:
        if not self.limits.rpm and not self.limits.tpm:
            return
        for key, key_rpm, key_tpm in self._buckets_for(slot.priority):
            while True:
                try:
                    taken = await self.buckets.take_rate(
                        key, rpm=key_rpm, tpm=key_tpm, tokens=slot.tokens
                    )
                except Exception as error:  # a shared store that is down: the upstream counts
                    self._store_failed(error)
                    return
                self._store_answered()
                if taken.wait <= 0:
                    break
                now = self._clock()
                if now + taken.wait > give_up:
                    requests_short = taken.requests_left is not None and taken.requests_left < 1
                    limit = f"rpm {key_rpm}" if requests_short else f"tpm {key_tpm}"
                    if key != self._key:
                        limit = f"background work's share ({limit})"
                    raise AtCapacity(self.worker, f"{limit} reached", taken.wait)
                self.waited += 1
                await self._sleep(taken.wait)

    def _store_failed(self, error: Exception) -> None:
        if not self._unchecked:
            self._unchecked = True
            log.warning("worker %s: shared limits not checked (%s)", self.worker, error)

    def _store_answered(self) -> None:
        if self._unchecked:
            self._unchecked = False
            log.warning("worker %s: shared limits checked again", self.worker)

    def _give_back(
        self, slot: Slot, used_tokens: int | None, answer_tokens: int | None, overloaded: bool
    ) -> None:
        adaptive = self.adaptive
        if adaptive is not None and slot.counted:
            if overloaded:
                changed = adaptive.overloaded(slot.epoch)
            elif answer_tokens is not None:
                seconds = self._clock() - slot.sent
                changed = adaptive.answered(
                    seconds, answer_tokens, busy=slot.busy, epoch=slot.epoch
                )
            else:
                changed = False
            if changed:
                self._set_slots(adaptive.limit)  # _free below hands on any room it made
        if slot.counted:
            self._free(slot.priority)
        if slot.holder is not None and self.shared is not None:
            self._holders.pop(slot.holder, None)
            self._send(self.shared.give_slot(self._key, slot.holder))
        if self.limits.tpm and used_tokens is not None and used_tokens != slot.tokens:
            for key, _, tpm in self._buckets_for(slot.priority):
                if tpm:
                    self._correct(key, tpm, used_tokens - slot.tokens)

    def _set_slots(self, concurrency: int | None) -> None:
        self.slots = concurrency
        self.background_slots = self._share(concurrency)

    def _share(self, limit: int | None) -> int | None:
        """Background work's part of ``limit``: at least one, so it is never shut out."""
        if limit is None:
            return None
        return max(1, math.floor(limit * self.limits.background_share))

    def _buckets_for(self, priority: Priority) -> list[tuple[str, int | None, int | None]]:
        """The per-minute buckets a call draws on, as (key, rpm, tpm): the worker's, and for
        background work a smaller one too, of its share, so it leaves the rest of each minute
        to interactive calls. That one comes first: when the worker's own bucket then has no
        room, the background bucket stays charged (errs on the side of waiting)."""
        rpm, tpm = self.limits.rpm, self.limits.tpm
        buckets = [(self._key, rpm, tpm)]
        if priority == "background" and self.limits.background_share < 1:
            buckets.insert(0, (self._background_key, self._share(rpm), self._share(tpm)))
        return buckets

    def _correct(self, key: str, tpm: int, delta: int) -> None:
        """Charge the token bucket what the call really used. In this process's buckets that
        is done at once; a shared store is told in a task of its own (release never waits)."""
        if isinstance(self.buckets, MemoryLimits):
            self.buckets.adjust_now(key, tpm, delta)
            return
        self._send(self.buckets.adjust_tokens(key, tpm=tpm, delta=delta))

    def _send(self, update: Coroutine[Any, Any, None]) -> None:
        """Tell the shared store, off the call's path (release never waits)."""
        try:
            task = asyncio.get_running_loop().create_task(update)
        except RuntimeError:
            update.close()
            return  # no loop (shutting down): leases lapse and buckets refill by themselves
        self._tasks.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("worker %s: shared limits not updated (%s)", self.worker, task.exception())
